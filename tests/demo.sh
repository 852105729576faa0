#!/bin/bash
# make demo: live-migrate the dirty guest over loopback and show what
# happened: the source's summary, the guest's own verify on the target.
# Needs root (or access to /dev/kvm) and `make` done first.
set -u
cd "$(dirname "$0")/.."
VMM=${MINIVMM:-./minivmm}
GUEST=build/guests/dirty.elf
PORT=${DEMO_PORT:-$((40000 + $$ % 20000))}
DIR=$(mktemp -d /tmp/minivmm-demo.XXXXXX)
TPID=; SPID=
cleanup() {
	[ -n "$SPID" ] && kill "$SPID" 2>/dev/null
	[ -n "$TPID" ] && kill "$TPID" 2>/dev/null
	exec 3>&- 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT
for f in "$VMM" "$GUEST"; do
	[ -e "$f" ] || { echo "demo: $f is missing: run make first" >&2; exit 1; }
done
[ -c /dev/kvm ] || { echo "demo: /dev/kvm is missing" >&2; exit 1; }

echo "== target: $VMM --incoming 127.0.0.1:$PORT"
mkfifo "$DIR/tin"
"$VMM" --incoming "127.0.0.1:$PORT" --stats-json "$DIR/target.json" \
	<"$DIR/tin" >"$DIR/target.out" 2>"$DIR/target.err" &
TPID=$!
exec 3>"$DIR/tin" # the target's serial input
for _ in $(seq 50); do grep -q "waiting for a migration" "$DIR/target.err" && break; sleep 0.1; done

echo "== source: dirty guest, 256 MiB, 2 vCPUs, 32 MiB working set at full speed,"
echo "   migrating after 2 s (downtime limit 30 ms, --verify-ram)"
"$VMM" --kernel "$GUEST" --append "wss=32" --cpus 2 --name "demo-$$" \
	--migrate "127.0.0.1:$PORT" --migrate-after 2.05 --verify-ram \
	--stats-json "$DIR/source.json" >"$DIR/source.out" 2>"$DIR/source.err" </dev/null &
SPID=$!
wait "$SPID"; rc=$?; SPID=
echo "-- last heartbeats on the source:"
grep '^seq=' "$DIR/source.out" | tail -2 | sed 's/^/   /'
echo "-- source says:"
sed 's/^/   /' "$DIR/source.err"
if [ $rc -ne 0 ]; then
	echo "demo: the migration failed (source exit $rc)"; cat "$DIR/target.err"; exit 1
fi
for _ in $(seq 50); do grep -q '^seq=' "$DIR/target.out" && break; sleep 0.1; done
echo "-- first heartbeats on the target:"
grep '^seq=' "$DIR/target.out" | head -2 | sed 's/^/   /'
echo "-- target says:"
sed 's/^/   /' "$DIR/target.err"
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
