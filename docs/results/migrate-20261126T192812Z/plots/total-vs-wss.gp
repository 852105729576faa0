# made by: make bench-report (tests/bench/report.py)
set multiplot layout 2,1 title "Total migration time and data sent vs working set\n{/*0.8 made by: make bench-report; median, bars = min-max}"
set grid
set key outside right top
set logscale y
set ylabel 'total migration time (ms)'
set xlabel ''
plot 'plots/total-vs-wss-minivmm_mem2048M-total_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 1 pt 4 title "minivmm mem=2048M", \
     'plots/total-vs-wss-minivmm_mem512M-total_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 2 pt 5 title "minivmm mem=512M", \
     'plots/total-vs-wss-qemu_mem2048M-total_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 3 pt 6 title "qemu mem=2048M", \
     'plots/total-vs-wss-qemu_mem512M-total_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 4 pt 7 title "qemu mem=512M", \
     'plots/total-vs-wss-qemu-multifd_mem2048M-total_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 5 pt 8 title "qemu-multifd mem=2048M", \
     'plots/total-vs-wss-qemu-multifd_mem512M-total_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 6 pt 9 title "qemu-multifd mem=512M", \
     'plots/total-vs-wss-qemu-xbzrle_mem2048M-total_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 7 pt 10 title "qemu-xbzrle mem=2048M", \
     'plots/total-vs-wss-qemu-xbzrle_mem512M-total_ms.dat' using 1:2:3:4 with yerrorlines lw 2 lc 8 pt 11 title "qemu-xbzrle mem=512M"
set ylabel 'data sent (MiB)'
set xlabel 'working set (MiB)'
plot 'plots/total-vs-wss-minivmm_mem2048M-bytes_total.dat' using 1:2:3:4 with yerrorlines lw 2 lc 1 pt 4 title "minivmm mem=2048M", \
     'plots/total-vs-wss-minivmm_mem512M-bytes_total.dat' using 1:2:3:4 with yerrorlines lw 2 lc 2 pt 5 title "minivmm mem=512M", \
     'plots/total-vs-wss-qemu_mem2048M-bytes_total.dat' using 1:2:3:4 with yerrorlines lw 2 lc 3 pt 6 title "qemu mem=2048M", \
     'plots/total-vs-wss-qemu_mem512M-bytes_total.dat' using 1:2:3:4 with yerrorlines lw 2 lc 4 pt 7 title "qemu mem=512M", \
     'plots/total-vs-wss-qemu-multifd_mem2048M-bytes_total.dat' using 1:2:3:4 with yerrorlines lw 2 lc 5 pt 8 title "qemu-multifd mem=2048M", \
     'plots/total-vs-wss-qemu-multifd_mem512M-bytes_total.dat' using 1:2:3:4 with yerrorlines lw 2 lc 6 pt 9 title "qemu-multifd mem=512M", \
     'plots/total-vs-wss-qemu-xbzrle_mem2048M-bytes_total.dat' using 1:2:3:4 with yerrorlines lw 2 lc 7 pt 10 title "qemu-xbzrle mem=2048M", \
     'plots/total-vs-wss-qemu-xbzrle_mem512M-bytes_total.dat' using 1:2:3:4 with yerrorlines lw 2 lc 8 pt 11 title "qemu-xbzrle mem=512M"
unset multiplot
