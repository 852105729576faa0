# made by: make bench-report (tests/bench/report.py)
set title "Reported downtime vs downtime the guest saw\n{/*0.8 made by: make bench-report; points above the dashed line = the tool under-reports}"
set xlabel 'downtime reported by the VMM (ms)'
set ylabel 'guest-observed gap between heartbeats (ms)'
set logscale xy
set grid
set key below
plot 'plots/honesty-minivmm-xbzrle-throttle.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-xbzrle-throttle (reported: downtime\\_ms)", \
     'plots/honesty-minivmm-postcopy.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-postcopy (reported: downtime\\_ms)", \
     'plots/honesty-minivmm-postcopy-now.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-postcopy-now (reported: downtime\\_ms)", \
     'plots/honesty-minivmm-postcopy-after-precopy.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-postcopy-after-precopy (reported: downtime\\_ms)", \
     'plots/honesty-minivmm-postcopy-after-precopy-xbzrle.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-postcopy-after-precopy-xbzrle (reported: downtime\\_ms)", \
     'plots/honesty-qemu-postcopy.dat' using 1:2 with points pt 7 ps 1.2 title "qemu-postcopy (reported: query-migrate downtime)", \
     'plots/honesty-qemu-postcopy-xbzrle.dat' using 1:2 with points pt 7 ps 1.2 title "qemu-postcopy-xbzrle (reported: query-migrate downtime)", \
     'plots/honesty-qemu-postcopy-now.dat' using 1:2 with points pt 7 ps 1.2 title "qemu-postcopy-now (reported: query-migrate downtime)", \
     'plots/honesty-qemu-postcopy-preempt.dat' using 1:2 with points pt 7 ps 1.2 title "qemu-postcopy-preempt (reported: query-migrate downtime)", \
     'plots/honesty-qemu-postcopy-preempt-now.dat' using 1:2 with points pt 7 ps 1.2 title "qemu-postcopy-preempt-now (reported: query-migrate downtime)", x with lines dt 2 lc 'black' title 'gap = reported', x+100 with lines dt 3 lc 'gray' title 'gap = reported + heartbeat period (100 ms)'
