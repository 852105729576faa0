#!/bin/sh
# Integrity cost A/B (issue 13; docs/benchmarks.md, "Integrity"): one
# 512 MiB guest (384 MiB filled, 64 MiB working set dirtied at full speed)
# migrated over loopback TCP, 2 data channels, interleaved: keyless, keyed
# with integrity on (every frame MAC'd), keyed with integrity off (PAGES
# untagged). Prints one line per run from the source's stats JSON.
#   [GUEST="wss=0 fill=384"] tests/bench/integrity_ab.sh [RUNS] [PORT]
set -eu
RUNS=${1:-3}
PORT=${2:-4471}
D=$(mktemp -d /tmp/integrity_ab.XXXXXX)
trap 'rm -rf "$D"' EXIT
./minivmm --gen-key "$D/k" 2>/dev/null
export MINIVMM_KEY_DIR="$D/none" # no default key
one() { # label, source extra args, target extra args
	./minivmm --incoming 127.0.0.1:$PORT $3 --stats-json "$D/t.json" >/dev/null 2>"$D/t.err" &
	T=$!
	sleep 0.5
	./minivmm --kernel build/guests/dirty.elf --mem 512M --append "${GUEST:-wss=64 fill=384}" \
		--migrate 127.0.0.1:$PORT --migrate-after 4 --stats-json "$D/s.json" $2 \
		</dev/null >/dev/null 2>"$D/s.err" || { cat "$D/s.err"; kill $T; exit 1; }
	sleep 0.3
	kill $T 2>/dev/null || true
	wait $T 2>/dev/null || true
	python3 - "$1" "$D/s.json" <<'PY' | tee -a "$D/runs"
import json, sys
s = json.load(open(sys.argv[2]))
print("%-14s total %6.0f ms  downtime %5.1f ms  rounds %2d  sent %6.1f MB  %6.0f MB/s" % (
    sys.argv[1], s["total_ms"], s["downtime_ms"], s["rounds"], s["bytes_total"] / 1e6,
    s["throughput_Bps"] / 1e6))
PY
}
for i in $(seq "$RUNS"); do
	one keyless "" ""
	one integrity-on "--migrate-key $D/k" "--migrate-key $D/k"
	one integrity-off "--migrate-key $D/k --migrate-integrity off" "--migrate-key $D/k"
done
python3 - "$D/runs" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], []).append((float(f[2]), float(f[5]), float(f[-2])))
for k, v in rows.items():
    t, d, r = zip(*v)
    print("median %-14s total %6.0f ms [%.0f-%.0f]  downtime %5.1f ms  %5.0f MB/s [%.0f-%.0f]  (%d runs)" % (
        k, statistics.median(t), min(t), max(t), statistics.median(d), statistics.median(r),
        min(r), max(r), len(v)))
PY
