# made by: make bench-report (tests/bench/report.py)
set title "Dirty pages per pre-copy round over time\n{/*0.8 made by: make bench-report; from --stats-json round\\_records}"
set xlabel 'time since migrate command (ms)'
set ylabel 'dirty pages at round start (4 KiB pages)'
set grid
set key below
set logscale y
plot 'plots/rounds-converging.dat' using 1:2 with linespoints lw 2 pt 7 title "minivmm, converging: 512M RAM, wss 64 MiB @ max seq, loopback"
