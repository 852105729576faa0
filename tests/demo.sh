#!/bin/bash
# make demo: the classic live-migration demonstration on one machine. A
# network namespace holds a bridge (10.77.0.1/24) and two "hosts" (two
# minivmm processes, each with its own tap on the bridge); the net guest
# (10.77.0.2) dirties memory and answers pings; the host pings it every
# 5 ms while it moves from the source to the target. Prints the migration
# summary, pings sent/received/lost, the longest gap between replies, and
# the guest's own memory verify on the target.
# Needs root, /dev/kvm, iproute2 and ping (tests/install-deps.sh), `make`.
set -u
cd "$(dirname "$0")/.."
. tests/net/netns.sh
VMM=${MINIVMM:-./minivmm}
GUEST=build/guests/net.elf
NS=minivmm-demo-$$
PORT=${DEMO_PORT:-$((20000 + $$ % 10000))}
COUNT=${DEMO_PINGS:-1000} # at 5 ms: 5 s, the migration at about 2 s
DIR=$(mktemp -d /tmp/minivmm-demo.XXXXXX)
TPID=; SPID=; PPID_=
cleanup() {
	for p in $PPID_ $SPID $TPID; do kill "$p" 2>/dev/null; done
	exec 3>&- 2>/dev/null
	netns_down "$NS"
	[ -n "${DEMO_KEEP:-}" ] && echo "demo: kept $DIR" >&2 || rm -rf "$DIR"
}
trap cleanup EXIT
for f in "$VMM" "$GUEST"; do
	[ -e "$f" ] || { echo "demo: $f is missing: run make first" >&2; exit 1; }
done
[ -c /dev/kvm ] || { echo "demo: /dev/kvm is missing" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespace, taps)" >&2; exit 1; }
if ! command -v ip >/dev/null || ! command -v ping >/dev/null; then
	tests/install-deps.sh >&2 || exit 1
fi
netns_up "$NS" || { echo "demo: cannot make the network namespace" >&2; exit 1; }
VMM=$(readlink -f "$VMM")

echo "== network: namespace $NS, bridge br0 10.77.0.1/24; guest 10.77.0.2"
echo "== target: minivmm --incoming 127.0.0.1:$PORT --net tap=mvtgt0"
mkfifo "$DIR/tin"
netns_exec "$NS" "$VMM" --incoming "127.0.0.1:$PORT" --net tap=mvtgt0 \
	--stats-json "$DIR/target.json" <"$DIR/tin" >"$DIR/target.out" 2>"$DIR/target.err" &
TPID=$!
exec 3>"$DIR/tin" # the target's serial input
for _ in $(seq 50); do grep -q "waiting for a migration" "$DIR/target.err" && break; sleep 0.1; done

echo "== source: net guest, 256 MiB, 16 MiB working set at full speed, tap mvsrc0 on br0,"
echo "   migrating after 2 s (downtime limit 30 ms, --verify-ram)"
netns_exec "$NS" "$VMM" --kernel "$GUEST" --append "wss=16" --name "demo-$$" \
	--net tap=mvsrc0,bridge=br0 --migrate "127.0.0.1:$PORT" --migrate-after 2 \
	--verify-ram --stats-json "$DIR/source.json" \
	>"$DIR/source.out" 2>"$DIR/source.err" </dev/null &
SPID=$!
for _ in $(seq 100); do grep -q "^net: up" "$DIR/source.out" && break; sleep 0.05; done
echo "-- guest says: $(grep -m1 '^net: up' "$DIR/source.out")"
echo "== pinging the guest every 5 ms ($COUNT pings)"
netns_exec "$NS" ping -D -n -i 0.005 -c "$COUNT" -W 2 10.77.0.2 >"$DIR/ping.out" 2>&1 &
PPID_=$!
wait "$SPID"; rc=$?; SPID=
echo "-- source says:"
sed 's/^/   /' "$DIR/source.err"
if [ $rc -ne 0 ]; then
	echo "demo: the migration failed (source exit $rc)"; cat "$DIR/target.err"; exit 1
fi
wait "$PPID_"; PPID_=
echo "-- target says:"
sed 's/^/   /' "$DIR/target.err"
pings=$(awk -f tests/net/pingstat.awk "$DIR/ping.out")
echo "-- pings through the migration: $pings"
echo "== asking the guest on the target to verify every page (serial 'v')"
printf v >&3
for _ in $(seq 100); do grep -q '^verify:' "$DIR/target.out" && break; sleep 0.1; done
res=$(grep '^verify:' "$DIR/target.out" | head -1)
echo "   guest: ${res:-no verify line}"
printf q >&3 # verify once more and exit
wait "$TPID" 2>/dev/null; TPID=
echo "-- per-round figures (source stats JSON):"
grep '"round":' "$DIR/source.json" | tr -d '{},"' | awk '{
	printf "   round %-3s %7.1f ms  dirty %7s  sent %7s pages  %9s bytes  expected downtime %7.1f ms\n",
		$2, $6, $8, $10, $12, $18 }'
case "$res" in "verify: pass"*) echo "== demo: OK"; exit 0 ;; esac
echo "== demo: FAILED"; exit 1
