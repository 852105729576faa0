#!/bin/bash
# Dirty tracking, bitmap vs ring: per-sync cost (round records' sync_ms)
# and guest stall, idle and dirtying, at several RAM sizes. One migration
# per cell over loopback; prints one line per cell.
# Usage: tests/bench/ring_vs_bitmap.sh [SIZES...]   (default: 2G 16G 64G)
set -u
cd "$(dirname "$0")/../.."
sizes=("$@"); [ ${#sizes[@]} -eq 0 ] && sizes=(2G 16G 64G)
port=$((40000 + RANDOM % 2000))
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf "%-5s %-6s %-6s %6s %9s %9s %9s %9s %8s\n" mem load track rounds sync_avg sync_max total_ms down_ms stall_ms
for mem in "${sizes[@]}"; do
  for load in idle wss64; do
    app="wss=0"; [ $load = wss64 ] && app="wss=64"
    for track in bitmap ring; do
      port=$((port + 1))
      ./minivmm --incoming 127.0.0.1:$port --mem "$mem" --dirty-tracking $track >"$tmp/t.log" 2>&1 &
      tp=$!
      sleep 1
      ./minivmm --kernel build/guests/dirty.elf --mem "$mem" --append "$app" --dirty-tracking $track \
        --migrate 127.0.0.1:$port --migrate-after 2 --max-bandwidth 200M \
        --stats-json "$tmp/s.json" >"$tmp/s.log" 2>&1
      kill $tp 2>/dev/null; wait $tp 2>/dev/null
      python3 - "$tmp/s.json" "$mem" $load $track <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
syncs = [r["sync_ms"] for r in d["round_records"][1:]] or [0]
print("%-5s %-6s %-6s %6d %9.2f %9.2f %9.1f %9.1f %8.1f" % (sys.argv[2], sys.argv[3], sys.argv[4],
      d["rounds"], sum(syncs) / len(syncs), max(syncs), d["total_ms"], d["downtime_ms"],
      d["guest_stall_max_ms"]))
PY
    done
  done
done
