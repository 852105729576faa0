#!/bin/bash
# Reference check of build/guests/net.elf under QEMU (virtio-net-pci on a tap).
#
#   tests/net/qemu-net.sh            (as root, from anywhere; builds the guests)
#
# Everything happens in a network namespace of its own (created here, always
# deleted on exit): a bridge br0 with 10.77.0.1/24 and a tap0 on it that QEMU
# uses. No traffic leaves the namespace; the only addresses used are 10.77.0.x.
#
# Runs (each a fresh QEMU, ~5 s boot here because SeaBIOS runs in KVM's emulator):
#   modern        virtio-net-pci,disable-legacy=on (1af4:1041), wss=8 dirtying meanwhile
#   transitional  virtio-net-pci (1af4:1000 with the modern capabilities)
#   mac           transitional device, mac=02:77:00:00:00:02 override
#   bar-*         modern device, the guest re-places its BAR (bar_base=) at
#                 0xe0000000 and at 32 GiB (the path a VMM without firmware takes)
# and checks in each: the `net: up` line, ping -c 20 -i 0.05 (all replies),
# 1472-byte pings, ARP (arping and the neighbour entry's MAC), UDP echo on
# port 7 (several sizes, content compared), the gratuitous ARP at start-up
# and after the monitor's `announce_self` (seen on the wire), the counters
# and heartbeat lines, and in the modern run `v` (verify: pass) and `q`
# (verify and exit v=0). Prints `ok`/`FAIL` per check and a summary; exit 0
# only if every check passed, 2 if something needed is missing.
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD

die() { echo "qemu-net: FAIL: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, tap)"
for c in qemu-system-x86_64 ip ping python3 make; do
    command -v $c >/dev/null || die "missing '$c' (apt-get install -y qemu-system-x86 iproute2 iputils-ping python3)"
done
[ -c /dev/kvm ] || die "/dev/kvm is missing"
[ -c /dev/net/tun ] || die "/dev/net/tun is missing"
HAVE_ARPING=0
command -v arping >/dev/null && HAVE_ARPING=1

make -s -f guests/guests.mk guests || die "building the guests failed"
ELF=$ROOT/build/guests/net.elf
[ -f "$ELF" ] || die "$ELF was not built"

NS=${QEMU_NET_NS:-mvnet-$$}   # QEMU_NET_NS: a name of your own
TMP=$(mktemp -d)
QPID=
SPID=
cleanup() {
    [ -n "$QPID" ] && kill "$QPID" 2>/dev/null
    [ -n "$SPID" ] && kill "$SPID" 2>/dev/null
    exec 3>&- 2>/dev/null
    wait 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

nsx() { ip netns exec "$NS" "$@"; }
# background: `ip netns exec` forks, so the real pid comes from a pid file
nsx_bg() {      # nsx_bg PIDFILE CMD...
    local pf=$1
    shift
    ip netns exec "$NS" sh -c 'echo $$ >"$0"; exec "$@"' "$pf" "$@"
}
bg_pid() {      # bg_pid PIDFILE -> prints the pid once it is written
    local i
    for ((i = 0; i < 50; i++)); do
        [ -s "$1" ] && { cat "$1"; return; }
        sleep 0.1
    done
}

ip netns add "$NS" || die "ip netns add failed"
nsx sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1
nsx ip link set lo up || die "netns setup"
nsx ip link add br0 type bridge || die "cannot create a bridge"
nsx ip addr add 10.77.0.1/24 dev br0 || die "netns setup"
nsx ip tuntap add dev tap0 mode tap || die "cannot create tap0"
nsx ip link set tap0 master br0 || die "netns setup"
nsx ip link set tap0 up && nsx ip link set br0 up || die "netns setup"

pass=0
fail=0
check() {       # check NAME COMMAND...
    local name=$1
    shift
    if "$@" >"$TMP/check.out" 2>&1; then
        pass=$((pass + 1))
        echo "ok   $name"
    else
        fail=$((fail + 1))
        echo "FAIL $name"
        sed 's/^/   | /' "$TMP/check.out" | tail -6
    fi
}

# ARP sniffer on br0: one line per gratuitous ARP from 10.77.0.2
sniff_start() {
    rm -f "$TMP/sniff.pid"
    # in a subshell that exits normally: no "Terminated" job notice
    (nsx_bg "$TMP/sniff.pid" timeout 300 python3 - "$TMP/garp.log" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(("br0", 0))
out = open(sys.argv[1], "a", buffering=1)
while True:
    f = s.recv(2048)
    if len(f) < 42:
        continue
    a = f[14:]
    spa, tpa = socket.inet_ntoa(a[14:18]), socket.inet_ntoa(a[24:28])
    if spa == "10.77.0.2" and tpa == spa:
        out.write("garp op=%d sha=%s dst=%s\n" % (int.from_bytes(a[6:8], "big"), a[8:14].hex(":"), f[0:6].hex(":")))
EOF
    true) 2>/dev/null &
    SPID=$(bg_pid "$TMP/sniff.pid")
}

udp_echo() {    # sizes... ; every datagram must come back unchanged
    nsx python3 - "$@" <<'EOF'
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
bad = 0
for n in map(int, sys.argv[1:]):
    data = os.urandom(n)
    for attempt in range(3):
        s.sendto(data, ("10.77.0.2", 7))
        try:
            got, peer = s.recvfrom(4096)
        except socket.timeout:
            continue
        break
    else:
        print("no echo for %d bytes" % n); bad += 1; continue
    if got != data or peer[0] != "10.77.0.2" or peer[1] != 7:
        print("bad echo for %d bytes from %s" % (n, peer)); bad += 1
print("udp echo: %d sizes, %d bad" % (len(sys.argv) - 1, bad))
sys.exit(1 if bad else 0)
EOF
}

monitor() {     # HMP command over the monitor socket
    python3 - "$TMP/mon.sock" "$1" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(2)
time.sleep(0.2)
try: s.recv(4096)
except Exception: pass
s.sendall((sys.argv[2] + "\n").encode())
time.sleep(0.5)
s.close()
EOF
}

wait_line() {   # wait_line REGEX SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        grep -Eq -- "$1" "$TMP/serial.log" && return 0
        sleep 0.1
    done
    echo "timed out waiting for /$1/"; tail -5 "$TMP/serial.log"; return 1
}

count_garp() { grep -c "sha=$1" "$TMP/garp.log" 2>/dev/null || true; }

# run NAME DEVICE-OPTS APPEND
run() {
    local name=$1 devopts=$2 append=$3
    echo "--- $name: -device virtio-net-pci${devopts:+,$devopts} -append \"$append\""
    : >"$TMP/garp.log"
    sniff_start
    rm -f "$TMP/in"
    mkfifo "$TMP/in"
    exec 3<>"$TMP/in"
    nsx ip neigh flush dev br0 2>/dev/null
    rm -f "$TMP/qemu.pid"
    nsx_bg "$TMP/qemu.pid" timeout 300 qemu-system-x86_64 -enable-kvm -m 64 -display none -serial stdio -no-reboot \
        -device isa-debug-exit,iobase=0xf4,iosize=4 \
        -device virtio-net-pci,netdev=n0${devopts:+,$devopts} \
        -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
        -monitor unix:"$TMP/mon.sock",server,nowait \
        -kernel "$ELF" -append "$append" <&3 >"$TMP/serial.log" 2>"$TMP/qemu.err" &
    QJOB=$!
    QPID=$(bg_pid "$TMP/qemu.pid")
    if ! wait_line '^net: (up|error)' 60 >"$TMP/check.out"; then
        fail=$((fail + 1)); echo "FAIL $name: no net: up line"; cat "$TMP/check.out" "$TMP/qemu.err" | sed 's/^/   | /'
        kill $QPID 2>/dev/null; wait $QJOB 2>/dev/null; QPID=
        kill $SPID 2>/dev/null; wait 2>/dev/null; SPID=
        exec 3>&-
        return
    fi
    local mac
    mac=$(sed -n 's/^net: up ip=10\.77\.0\.2 mac=\([0-9a-f:]*\)$/\1/p' "$TMP/serial.log" | head -1)
    check "$name: net: up ip=10.77.0.2 mac=$mac" test -n "$mac"
    check "$name: boot line" grep -Eq '^net: boot cpus=1 mem_mb=64 .* ip=10\.77\.0\.2/24 stats_ms=1000( |$)' "$TMP/serial.log"
    check "$name: device line" grep -Eq '^net: device pci=.* features=0x1[0-9a-f]{8} rxq=[0-9]+ txq=[0-9]+' "$TMP/serial.log"
    check "$name: ping -c 20 -i 0.05, all replies" nsx ping -n -q -c 20 -i 0.05 -W 1 -w 15 10.77.0.2
    check "$name: ping -s 1472 (full-size frames)" nsx ping -n -q -c 5 -i 0.1 -s 1472 -W 1 -w 10 10.77.0.2
    check "$name: neighbour entry has the guest's MAC" sh -c "ip netns exec $NS ip neigh show 10.77.0.2 dev br0 | grep -qi 'lladdr $mac'"
    if [ $HAVE_ARPING = 1 ]; then
        check "$name: arping" nsx arping -q -c 3 -w 5 -I br0 10.77.0.2
    fi
    check "$name: UDP echo port 7 (1..1472 bytes)" udp_echo 1 2 3 64 511 1000 1472
    check "$name: gratuitous ARP at start-up on the wire" sh -c "[ \$(grep -c 'sha=$mac dst=ff:ff:ff:ff:ff:ff' $TMP/garp.log) -ge 1 ]"
    local before
    before=$(count_garp "$mac")
    monitor announce_self
    sleep 1
    check "$name: announce_self -> net: garp reason=announce" grep -q '^net: garp reason=announce$' "$TMP/serial.log"
    check "$name: announce_self -> gratuitous ARP on the wire" sh -c "[ \$(grep -c 'sha=$mac' $TMP/garp.log) -gt $before ]"
    sleep 1.2
    check "$name: counters line" sh -c "grep -E '^net: rx=[0-9]+ tx=[0-9]+ arp=[0-9]+ icmp=[0-9]+ udp=[0-9]+ drop=[0-9]+ garp=[0-9]+ err=0$' $TMP/serial.log | tail -1 | grep -Eq 'icmp=(2[5-9]|[3-9][0-9])'"
    check "$name: heartbeats seq=1..N" awk '/^seq=/{split($1,a,"="); if (a[2] != ++n) bad=1} END{exit bad || n < 5}' "$TMP/serial.log"
    check "$name: no warnings or errors" sh -c "! grep -E '^net: (warning|error)' $TMP/serial.log"
    if [[ $append == *wss=* ]]; then
        printf v >&3
        check "$name: v -> verify: pass" wait_line '^verify: pass pages=' 10
        printf q >&3
        wait $QJOB
        local rc=$?
        QPID=
        check "$name: q -> verify and exit v=0 (qemu status 1, got $rc)" test $rc = 1
    else
        printf x >&3
        wait $QJOB
        local rc=$?
        QPID=
        check "$name: x -> exit v=0 (qemu status 1, got $rc)" test $rc = 1
    fi
    exec 3>&-
    kill $SPID 2>/dev/null; wait 2>/dev/null; SPID=
    grep -E '^net: (device|up|rx=)' "$TMP/serial.log" | tail -3 | sed 's/^/   > /'
}

run modern disable-legacy=on "ip=10.77.0.2/24 wss=8 rate=2000 period_ms=200"
run transitional "" "ip=10.77.0.2/24"
run mac "" "ip=10.77.0.2/24 mac=02:77:00:00:00:02"
check "mac: the mac= override is used" grep -q '^net: up ip=10.77.0.2 mac=02:77:00:00:00:02$' "$TMP/serial.log"
# the guest places the BARs itself (as with a VMM without firmware), below and above 4 GiB
run bar-e0000000 disable-legacy=on "ip=10.77.0.2/24 bar_base=0xe0000000"
check "bar-e0000000: BAR placed by the guest" grep -Eq '^net: device .* common=0xe0000000 ' "$TMP/serial.log"
run bar-above-4g disable-legacy=on "ip=10.77.0.2/24 bar_base=0x800000000"
check "bar-above-4g: 64-bit BAR at 32 GiB" grep -Eq '^net: device .* common=0x800000000 ' "$TMP/serial.log"

echo
echo "qemu-net: $pass passed, $fail failed"
[ $fail = 0 ] && echo "qemu-net: PASS" || echo "qemu-net: FAIL"
[ $fail = 0 ]
