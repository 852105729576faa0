# made by: make bench-report (tests/bench/report.py)
set title "Reported downtime vs downtime the guest saw\n{/*0.8 made by: make bench-report; points above the dashed line = the tool under-reports}"
set xlabel 'downtime reported by the VMM (ms)'
set ylabel 'guest-observed gap between heartbeats (ms)'
set logscale xy
set grid
set key below
plot 'plots/honesty-minivmm-force.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-force (reported: downtime\\_ms)", \
     'plots/honesty-minivmm-throttle.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-throttle (reported: downtime\\_ms)", \
     'plots/honesty-minivmm-xbzrle.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-xbzrle (reported: downtime\\_ms)", \
     'plots/honesty-minivmm-xbzrle-throttle.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-xbzrle-throttle (reported: downtime\\_ms)", \
     'plots/honesty-qemu-xbzrle.dat' using 1:2 with points pt 7 ps 1.2 title "qemu-xbzrle (reported: query-migrate downtime)", \
     'plots/honesty-qemu-ac.dat' using 1:2 with points pt 7 ps 1.2 title "qemu-ac (reported: query-migrate downtime)", \
     'plots/honesty-qemu-ac-50-25.dat' using 1:2 with points pt 7 ps 1.2 title "qemu-ac-50-25 (reported: query-migrate downtime)", \
     'plots/honesty-qemu-ac-99.dat' using 1:2 with points pt 7 ps 1.2 title "qemu-ac-99 (reported: query-migrate downtime)", \
     'plots/honesty-qemu-xbzrle-ac.dat' using 1:2 with points pt 7 ps 1.2 title "qemu-xbzrle-ac (reported: query-migrate downtime)", x with lines dt 2 lc 'black' title 'gap = reported', x+100 with lines dt 3 lc 'gray' title 'gap = reported + heartbeat period (100 ms)'
