# made by: make bench-report (tests/bench/report.py)
set multiplot layout 2,1 title "Total migration time and data sent vs working set\n{/*0.8 made by: make bench-report; median, bars = min-max}"
set grid
set key outside right top
set logscale y
set ylabel 'total migration time (ms)'
set xlabel ''
plot 'plots/total-vs-wss-minivmm-total_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 1 pt 4 title "minivmm", \
     'plots/total-vs-wss-minivmm-nice-total_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 2 pt 5 title "minivmm-nice"
set ylabel 'data sent (MiB)'
set xlabel 'working set (MiB)'
plot 'plots/total-vs-wss-minivmm-bytes_total.dat' using 1:2:3:4 with yerrorlines lw 2 lc 1 pt 4 title "minivmm", \
     'plots/total-vs-wss-minivmm-nice-bytes_total.dat' using 1:2:3:4 with yerrorlines lw 2 lc 2 pt 5 title "minivmm-nice"
unset multiplot
