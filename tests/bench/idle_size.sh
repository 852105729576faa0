#!/bin/bash
# Idle-guest migration cost by RAM size (issue 11, item 4): one line per
# run with the per-phase figures of the source's stats JSON, and the
# median of each column per size. Loopback, default settings, the target
# started with the same --mem (so it builds its VM before the source
# connects). Untouched guest RAM is never backed: 64G runs on a small host.
# Usage: tests/bench/idle_size.sh [-n RUNS] [-b MINIVMM] [-g GUEST] [-x "ARGS"] [SIZES...]
#        (defaults: 5 runs, ./minivmm, build/guests/counter.elf, 2G 16G 64G;
#        -x: more options for both sides, e.g. "--dirty-tracking ring")
# Columns: total/setup/downtime as in docs/stats-json.md; r0 = round 0's
# duration; mid = round 0's end to the pause (PING, the dirty syncs, any
# later round); sync = the largest round sync_ms; tgt = the target's total.
set -u
cd "$(dirname "$0")/../.." || exit 1
runs=5 bin=./minivmm guest=build/guests/counter.elf extra=""
while getopts n:b:g:x: o; do
  case $o in n) runs=$OPTARG ;; b) bin=$OPTARG ;; g) guest=$OPTARG ;; x) extra=$OPTARG ;;
  *) exit 2 ;; esac
done
shift $((OPTIND - 1))
sizes=("$@"); [ ${#sizes[@]} -eq 0 ] && sizes=(2G 16G 64G)
port=$((42000 + RANDOM % 2000))
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf "%-5s %7s %7s %7s %7s %7s %6s %7s %7s\n" mem total setup r0 mid down rounds sync tgt
for mem in "${sizes[@]}"; do
  : >"$tmp/rows"
  for ((r = 0; r < runs; r++)); do
    port=$((port + 1))
    rm -f "$tmp/s.json" "$tmp/t.json"
    # shellcheck disable=SC2086 # $extra is a list of options
    "$bin" --incoming 127.0.0.1:$port --mem "$mem" --stats-json "$tmp/t.json" $extra \
      >"$tmp/t.log" 2>&1 &
    tp=$!
    sleep 1
    # shellcheck disable=SC2086
    "$bin" --kernel "$guest" --mem "$mem" --migrate 127.0.0.1:$port --migrate-after 1 \
      --stats-json "$tmp/s.json" $extra >"$tmp/s.log" 2>&1
    sleep 0.3
    kill $tp 2>/dev/null; wait $tp 2>/dev/null
    python3 - "$tmp/s.json" "$tmp/t.json" "$mem" <<'PY' | tee -a "$tmp/rows"
import json, sys
d = json.load(open(sys.argv[1]))
try:
    t = json.load(open(sys.argv[2]))["total_ms"]
except Exception:
    t = float("nan")
r0 = d["round_records"][0]
mid = d["total_ms"] - d["setup_ms"] - r0["duration_ms"] - d["downtime_ms"]
sync = max(r["sync_ms"] for r in d["round_records"])
print("%-5s %7.1f %7.1f %7.1f %7.1f %7.1f %6d %7.2f %7.1f" % (sys.argv[3], d["total_ms"],
      d["setup_ms"], r0["duration_ms"], mid, d["downtime_ms"], d["rounds"], sync, t))
PY
  done
  python3 - "$tmp/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
if rows:
    cols = list(zip(*[[float(x) for x in r[1:]] for r in rows]))
    med = [statistics.median(c) for c in cols]
    print("%-5s %7.1f %7.1f %7.1f %7.1f %7.1f %6d %7.2f %7.1f   (median of %d)" % (
        rows[0][0], *med[:5], int(med[5]), med[6], med[7], len(rows)))
PY
done
