# Benchmarks (tests/bench, docs/benchmarking.md). Included by the top Makefile.
# Nothing here is needed to build or test minivmm; the scripts install
# qemu-system-x86, gnuplot-nox, iproute2 and time from Debian when they are
# missing, and stop before measuring if they cannot.
#
# Every run measures afresh into a folder of its own,
# docs/results/MATRIX-YYYYmmddTHHMMSSZ/ (UTC start time): results.jsonl,
# matrix.conf (the matrix as run), index.md and plots/ (its report, and no
# other page). Results already on disk count as done only with BENCH_RESUME.
#
#   make bench            default matrix (< 30 min), then its report
#   make bench-quick      quick matrix (< 5 min), then its report
#   make bench-migrate    issue 3's measurement matrix, then its report
#   make bench-throughput issue 3's full-page throughput cell alone, then its report
#   make bench-boot       boot time (20 runs) and peak RSS, minivmm vs QEMU
#   make bench-net        issue 9: pings through a migration, minivmm vs QEMU (tests/bench/bench_net.py)
#   make bench-disk       issue 10: the disk streamed through a migration, minivmm vs QEMU's
#                         block migration and drive-mirror to NBD (tests/bench/bench_disk.py)
#   make bench-postcopy   issue 12: post-copy vs pre-copy's best policies and QEMU's post-copy
#   make bench-converge   issue 11: throttle, delta encoding, both, vs QEMU auto-converge and XBZRLE
#   make bench-report BENCH_RESULTS=DIR   re-render DIR's report from DIR/results.jsonl
# Variables: BENCH_CONF=path (make bench) BENCH_OUT=DIR (a new folder instead of
# the stamped one) BENCH_RESUME=DIR (continue an interrupted run in DIR)
# BENCH_REPEATS=N BENCH_CELLS=a,b

BENCH_PY      := python3 tests/bench/bench.py
BENCH_ARGS    := $(if $(BENCH_OUT),--out $(BENCH_OUT)) \
                 $(if $(BENCH_RESUME),--resume $(BENCH_RESUME)) \
                 $(if $(BENCH_REPEATS),--repeats $(BENCH_REPEATS)) \
                 $(if $(BENCH_CELLS),--cells $(BENCH_CELLS))

.PHONY: bench bench-quick bench-migrate bench-throughput bench-boot bench-net bench-disk bench-report bench-ceiling \
        bench-postcopy bench-converge

bench: minivmm guests
	$(BENCH_PY) run $(or $(BENCH_CONF),tests/bench/matrix-default.conf) $(BENCH_ARGS)

bench-quick: minivmm guests
	$(BENCH_PY) run tests/bench/matrix-quick.conf $(BENCH_ARGS)

bench-migrate: minivmm guests
	$(BENCH_PY) run tests/bench/matrix-migrate.conf $(BENCH_ARGS)

bench-throughput: minivmm guests
	$(BENCH_PY) run tests/bench/matrix-throughput.conf $(BENCH_ARGS)

bench-postcopy: minivmm guests
	$(BENCH_PY) run tests/bench/matrix-postcopy.conf $(BENCH_ARGS)

bench-converge: minivmm guests
	$(BENCH_PY) run tests/bench/matrix-converge.conf $(BENCH_ARGS)

bench-boot: minivmm guests
	$(BENCH_PY) boot --runs 20 $(if $(BENCH_OUT),--out $(BENCH_OUT))

bench-net: minivmm guests
	python3 tests/bench/bench_net.py $(if $(BENCH_OUT),--out $(BENCH_OUT)) $(if $(BENCH_REPEATS),--repeats $(BENCH_REPEATS))

bench-disk: minivmm guests
	python3 tests/bench/bench_disk.py $(if $(BENCH_OUT),--out $(BENCH_OUT)) $(if $(BENCH_REPEATS),--repeats $(BENCH_REPEATS))

bench-report:
	python3 tests/bench/report.py $(BENCH_RESULTS)

bench-ceiling:
	$(BENCH_PY) ceiling

# SHA-256 / frame-MAC throughput (issue 13, docs/benchmarks.md "Integrity").
.PHONY: bench-sha256
build/bench/sha256bench: tests/bench/sha256bench.c migrate/auth/sha256.c migrate/auth/sha256_ni.c migrate/auth/hmac.c
	@mkdir -p $(dir $@)
	$(CC) -O2 $(BASEFLAGS) -o $@ $^
bench-sha256: build/bench/sha256bench
	build/bench/sha256bench
