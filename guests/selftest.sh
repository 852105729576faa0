#!/bin/bash
# Self-test of the test guests on QEMU and/or minivmm.
#   guests/selftest.sh [qemu|minivmm|both]      (from the repository root)
# Builds the guests, runs each scenario, checks exit status and output lines.
# QEMU scenarios take 4-8 s each (SeaBIOS runs in KVM's emulator here).
set -u
cd "$(dirname "$0")/.." || exit 2
which_vmm=${1:-both}
make -s -f guests/guests.mk guests || exit 2

pass=0
fail=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# run VMM ELF CPUS "APPEND" INPUT-SCRIPT -> output in $log, status in $rc
run() {
    local vmm=$1 elf=build/guests/$2.elf cpus=$3 app=$4 input=${5:-}
    if [ "$vmm" = qemu ]; then
        (eval "$input") | timeout 120 qemu-system-x86_64 -enable-kvm -m 256 -smp "$cpus" \
            -display none -serial stdio -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 \
            -kernel "$elf" -append "$app" >"$log" 2>/dev/null
        rc=${PIPESTATUS[1]}
    else
        (eval "$input") | timeout 120 ./minivmm --kernel "$elf" --cpus "$cpus" --append "$app" \
            >"$log" 2>/dev/null
        rc=${PIPESTATUS[1]}
    fi
}

# check NAME EXPECTED-RC REGEX... (every regex must match some line)
check() {
    local name=$1 want=$2 ok=1
    shift 2
    [ "$rc" = "$want" ] || ok=0
    for re in "$@"; do
        grep -Eq -- "$re" "$log" || { ok=0; echo "   missing: $re"; }
    done
    if [ $ok = 1 ]; then
        pass=$((pass + 1))
        echo "ok   $name"
    else
        fail=$((fail + 1))
        echo "FAIL $name (rc=$rc, want $want)"
        sed 's/^/   | /' "$log" | tail -8
    fi
}

# heartbeats must be 1..N without gaps
seq_ok() {
    awk '/^seq=/{split($1,a,"="); if (a[2] != ++n) bad=1} END{exit bad || n == 0}' "$log"
}

scenarios() {
    local v=$1 wait=0.5
    [ $v = qemu ] && wait=7
    run $v hello 1 "foo=1"
    check "$v hello" 1 '^hello: boot cpus=1 mem_mb=256 hz=1000 exit=debug$' \
        '^hello: warning: unknown parameter foo=1 ignored$' '^hello: hello from a minivmm test guest$'
    run $v hello 1 "exit=poweroff"
    check "$v hello poweroff" 0 '^hello: hello from a minivmm test guest$'
    run $v counter 1 "count=5 period_ms=50"
    check "$v counter" 1 '^counter: boot cpus=1 .*period_ms=50 count=5$' '^seq=5 t_ms=[0-9]+$'
    seq_ok || { fail=$((fail + 1)); echo "FAIL $v counter: seq gap"; }
    run $v counter 1 "" "sleep $wait; printf x"
    check "$v counter x" 1 '^seq=1 t_ms='
    for p in seq random hotcold; do
        for r in max 1000; do
            run $v dirty 1 "wss=16 rate=$r pattern=$p count=5 verify=1"
            check "$v dirty $p rate=$r" 1 "^dirty: boot cpus=1 .*wss=16 rate=$r pattern=$p" \
                '^seq=5 t_ms=[0-9]+ rate=[0-9]+ gen=[0-9]+ stall_us=[0-9]+$' '^verify: pass pages=4096$'
        done
    done
    run $v dirty 1 "wss=0 count=3 verify=1"
    check "$v dirty wss=0" 1 '^seq=3 t_ms=[0-9]+ rate=0 gen=0 stall_us=[0-9]+$' '^verify: pass pages=0$'
    run $v dirty 2 "wss=16 fill=16 count=5 verify_every=2 verify=1"
    check "$v dirty smp fill" 1 '^dirty: boot cpus=2 ' '^fill: done mb=16$' '^verify: pass pages=4096$'
    run $v dirty 2 "wss=8 rate=2000 pattern=random count=5 verify=1"
    check "$v dirty smp rate" 1 '^dirty: boot cpus=2 ' 'rate=(19|20|21)[0-9][0-9] ' '^verify: pass pages=2048$'
    run $v dirty 2 "wss=4 corrupt=7" "sleep $wait; printf v; sleep 0.5; printf q"
    check "$v dirty corrupt" 3 '^verify: pass pages=1024$' '^verify: FAIL pages=1024 bad=1 first_bad=7$'
}

case $which_vmm in
qemu | both) scenarios qemu ;;
esac
case $which_vmm in
minivmm | both)
    if [ -x ./minivmm ]; then scenarios minivmm; else echo "skip minivmm: ./minivmm not built"; fi
    ;;
esac
echo "selftest: $pass ok, $fail failed"
[ $fail = 0 ]
