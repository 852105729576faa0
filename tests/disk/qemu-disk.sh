#!/bin/bash
# Reference check of build/guests/disk.elf under QEMU (virtio-blk-pci on a raw
# image), so that the disk guest is known to drive a device that is not ours.
#
#   tests/disk/qemu-disk.sh          (from anywhere; builds the guests)
#
# Runs (each a fresh QEMU, ~5 s boot here because SeaBIOS runs in KVM's emulator):
#   modern        virtio-blk-pci,disable-legacy=on (1af4:1042), random writes
#   transitional  virtio-blk-pci (1af4:1001 with the modern capabilities), seq
#   readonly      the drive read-only: the guest sees VIRTIO_BLK_F_RO, writes nothing
# and checks in each: the `disk: device` line, heartbeats with writes going
# up, `v` (disk verify: pass, blocks > 0 when writing), the image's blocks
# stamped on the host side too, and `q` (verify and exit v=0: QEMU status 1).
# Prints `ok`/`FAIL` per check and a summary; exit 0 only if every check
# passed, 2 if something needed is missing.
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD

die() { echo "qemu-disk: FAIL: $*" >&2; exit 2; }
for c in qemu-system-x86_64 python3 make; do
    command -v $c >/dev/null || die "missing '$c' (apt-get install -y qemu-system-x86 python3)"
done
[ -c /dev/kvm ] || die "/dev/kvm is missing"
make -s -f guests/guests.mk guests || die "building the guests failed"
ELF=$ROOT/build/guests/disk.elf
[ -f "$ELF" ] || die "$ELF was not built"

TMP=$(mktemp -d)
QPID=
cleanup() {
    [ -n "$QPID" ] && kill "$QPID" 2>/dev/null
    exec 3>&- 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

pass=0
fail=0
check() {       # check NAME CMD...
    local name=$1
    shift
    if "$@" >"$TMP/check.out" 2>&1; then
        pass=$((pass + 1)); echo "ok   $name"
    else
        fail=$((fail + 1)); echo "FAIL $name"; sed 's/^/   | /' "$TMP/check.out"
    fi
}

wait_line() {   # wait_line REGEX SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        grep -Eq -- "$1" "$TMP/serial.log" && return 0
        sleep 0.1
    done
    echo "timed out waiting for /$1/"; tail -5 "$TMP/serial.log"; return 1
}

# stamped blocks as the host sees them in the image: magic and block number
stamped_blocks() {
    python3 - "$1" <<'PY'
import struct, sys
n = bad = 0
with open(sys.argv[1], 'rb') as f:
    i = 0
    while True:
        b = f.read(4096)
        if len(b) < 4096:
            break
        magic, blk = struct.unpack_from('<QQ', b)
        if magic == 0x314b5344564d4d56:
            n += 1
            bad += blk != i
        i += 1
print(n, bad)
sys.exit(0 if n > 0 and bad == 0 else 1)
PY
}

# run NAME DEVICE-OPTS DRIVE-OPTS APPEND
run() {
    local name=$1 devopts=$2 driveopts=$3 append=$4
    echo "--- $name: -device virtio-blk-pci${devopts:+,$devopts} -append \"$append\""
    rm -f "$TMP/in" "$TMP/disk.img"
    truncate -s 16M "$TMP/disk.img"
    mkfifo "$TMP/in"
    exec 3<>"$TMP/in"
    timeout 300 qemu-system-x86_64 -enable-kvm -m 64 -display none -serial stdio -no-reboot \
        -device isa-debug-exit,iobase=0xf4,iosize=4 \
        -drive file="$TMP/disk.img",format=raw,if=none,id=d0${driveopts:+,$driveopts} \
        -device virtio-blk-pci,drive=d0${devopts:+,$devopts} \
        -kernel "$ELF" -append "$append" <&3 >"$TMP/serial.log" 2>"$TMP/qemu.err" &
    QPID=$!
    if ! wait_line '^disk: (device|error)' 60 >"$TMP/check.out"; then
        fail=$((fail + 1)); echo "FAIL $name: no disk: device line"; cat "$TMP/check.out" "$TMP/qemu.err" | sed 's/^/   | /'
        kill $QPID 2>/dev/null; wait $QPID 2>/dev/null; QPID=
        exec 3>&-
        return
    fi
    check "$name: device line" grep -Eq '^disk: device pci=.* features=0x1[0-9a-f]{8} capacity=32768 blk_size=512 blocks=4096' "$TMP/serial.log"
    sleep 2
    check "$name: heartbeats seq=1..N" awk '/^seq=/{split($1,a,"="); if (a[2] != ++n) bad=1} END{exit bad || n < 5}' "$TMP/serial.log"
    check "$name: no errors" sh -c "! grep -E '^disk: (warning|error)' $TMP/serial.log"
    printf v >&3
    check "$name: v -> disk verify: pass" wait_line '^disk verify: pass blocks=' 30
    if [[ $driveopts == *readonly* ]]; then
        check "$name: read-only: the guest sees RO and writes nothing" \
            sh -c "grep -q '^disk: device .* read-only$' $TMP/serial.log && grep -q '^disk verify: pass blocks=0 .* writes=0$' $TMP/serial.log"
    else
        check "$name: blocks written" grep -Eq '^disk verify: pass blocks=[1-9][0-9]* ' "$TMP/serial.log"
    fi
    printf q >&3
    wait $QPID
    local rc=$?
    QPID=
    check "$name: q -> verify and exit v=0 (qemu status 1, got $rc)" test $rc = 1
    if [[ $driveopts != *readonly* ]]; then
        check "$name: the host sees stamped blocks at their place" stamped_blocks "$TMP/disk.img"
    fi
    exec 3>&-
    grep -E '^disk (verify|device)' "$TMP/serial.log" | tail -2 | sed 's/^/   > /'
}

run modern "disable-legacy=on" "" "dwrite=200 dpattern=random dfresh=1"
run transitional "" "cache=none" "dwrite=200 dpattern=seq dfresh=1"
run readonly "" "readonly=on" "dwrite=200"

echo "qemu-disk: $pass passed, $fail failed"
[ $fail = 0 ]
