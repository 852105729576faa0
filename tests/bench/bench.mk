# Benchmarks (tests/bench, docs/benchmarking.md). Included by the top Makefile.
# Nothing here is needed to build or test minivmm; the scripts install
# qemu-system-x86, gnuplot and iproute2 from Debian when they are missing.
#
#   make bench            default matrix (< 30 min), then the report
#   make bench-quick      quick matrix (< 5 min), then the report
#   make bench-migrate    issue 3's measurement matrix, then the report
#   make bench-throughput issue 3's full-page throughput cell alone, then its report
#   make bench-boot       boot time (20 runs) and peak RSS, minivmm vs QEMU
#   make bench-report     docs/results/index.md + plots from the JSON lines
# Variables: BENCH_CONF=path BENCH_RESULTS=file.jsonl BENCH_REPEATS=N BENCH_CELLS=a,b

BENCH_PY      := python3 tests/bench/bench.py
BENCH_ARGS    := $(if $(BENCH_RESULTS),--results $(BENCH_RESULTS)) \
                 $(if $(BENCH_REPEATS),--repeats $(BENCH_REPEATS)) \
                 $(if $(BENCH_CELLS),--cells $(BENCH_CELLS))

.PHONY: bench bench-quick bench-migrate bench-throughput bench-boot bench-report bench-ceiling

bench: minivmm guests
	$(BENCH_PY) run $(or $(BENCH_CONF),tests/bench/matrix-default.conf) $(BENCH_ARGS)
	python3 tests/bench/report.py

bench-quick: minivmm guests
	$(BENCH_PY) run tests/bench/matrix-quick.conf $(BENCH_ARGS)
	python3 tests/bench/report.py

bench-migrate: minivmm guests
	$(BENCH_PY) run tests/bench/matrix-migrate.conf $(BENCH_ARGS)
	python3 tests/bench/report.py

bench-throughput: minivmm guests
	$(BENCH_PY) run tests/bench/matrix-throughput.conf $(BENCH_ARGS)
	python3 tests/bench/report.py docs/results/data/throughput.jsonl

bench-boot: minivmm guests
	$(BENCH_PY) boot --runs 20

bench-report:
	python3 tests/bench/report.py $(BENCH_RESULTS)

bench-ceiling:
	$(BENCH_PY) ceiling
