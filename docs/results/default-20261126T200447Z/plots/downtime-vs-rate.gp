# made by: make bench-report (tests/bench/report.py)
set multiplot layout 2,1 title "Downtime (source pause to guest running on target) and guest-observed gap vs dirty rate\n{/*0.8 made by: make bench-report; median, bars = min-max}"
set grid
set key outside right top
set logscale x
set logscale y
set ylabel 'downtime, ours (ms)'
set xlabel ''
plot 'plots/downtime-vs-rate-minivmm-downtime_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 1 pt 4 title "minivmm", \
     'plots/downtime-vs-rate-qemu-downtime_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 2 pt 5 title "qemu", \
     'plots/downtime-vs-rate-qemu-tuned-downtime_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 3 pt 6 title "qemu-tuned"
set ylabel 'guest-observed gap (ms)'
set xlabel 'guest dirty rate (pages/s; max placed at its measured rate)'
plot 'plots/downtime-vs-rate-minivmm-gap_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 1 pt 4 title "minivmm", \
     'plots/downtime-vs-rate-qemu-gap_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 2 pt 5 title "qemu", \
     'plots/downtime-vs-rate-qemu-tuned-gap_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 3 pt 6 title "qemu-tuned"
unset multiplot
