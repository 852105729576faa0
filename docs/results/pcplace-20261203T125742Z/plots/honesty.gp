# made by: make bench-report (tests/bench/report.py)
set title "Reported downtime vs downtime the guest saw\n{/*0.8 made by: make bench-report; points above the dashed line = the tool under-reports}"
set xlabel 'downtime reported by the VMM (ms)'
set ylabel 'guest-observed gap between heartbeats (ms)'
set logscale xy
set grid
set key below
plot 'plots/honesty-minivmm-postcopy-now-old.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-postcopy-now old (reported: downtime\\_ms)", \
     'plots/honesty-minivmm-postcopy-now-new.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-postcopy-now new (reported: downtime\\_ms)", \
     'plots/honesty-minivmm-postcopy-after-precopy-xbzrle-old.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-postcopy-after-precopy-xbzrle old (reported: downtime\\_ms)", \
     'plots/honesty-minivmm-postcopy-after-precopy-xbzrle-new.dat' using 1:2 with points pt 7 ps 1.2 title "minivmm-postcopy-after-precopy-xbzrle new (reported: downtime\\_ms)", x with lines dt 2 lc 'black' title 'gap = reported', x+100 with lines dt 3 lc 'gray' title 'gap = reported + heartbeat period (100 ms)'
