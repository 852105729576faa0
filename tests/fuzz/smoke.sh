#!/bin/bash
# make test's short fuzz runs: each target (default build/fuzz/fuzz_*) for
# FUZZ_SMOKE_S seconds (3) on its committed seeds, from an empty scratch
# corpus. A crash, a leak or a timeout fails it. Prints cmocka's summary
# lines so tests/run.sh counts one test per target.
set -u
S=${FUZZ_SMOKE_S:-3}
bins=("$@")
[ ${#bins[@]} -eq 0 ] && for b in build/fuzz/fuzz_*; do [[ $b == *.* ]] || bins+=("$b"); done
[ -x "${bins[0]}" ] || { echo "fuzz: no fuzz targets built (make fuzz)"; echo "[  FAILED  ] 1 test(s)"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
for b in "${bins[@]}"; do
	t=$(basename "$b")
	mkdir -p "$tmp/$t" "$tmp/crash-$t"
	"$b" -max_total_time="$S" -timeout=10 -rss_limit_mb=2560 -max_len=1200000 \
		-artifact_prefix="$tmp/crash-$t/" -print_final_stats=1 \
		"$tmp/$t" tests/fuzz/corpus/"$t" >"$tmp/$t.log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/$t.log" | tail -1)
	if [ $rc -eq 0 ]; then
		echo "[       OK ] $t: ${execs:-?} executions in ${S} s"
		pass=$((pass + 1))
	else
		echo "[  ERROR   ] $t: exit $rc"
		grep -m20 -E 'ERROR|SUMMARY|#[0-9]+ 0x|deadly|Test unit' "$tmp/$t.log"
		for a in "$tmp/crash-$t"/*; do
			[ -f "$a" ] && mkdir -p build/fuzz/crashes/$t && cp "$a" build/fuzz/crashes/$t/ &&
				echo "input kept: build/fuzz/crashes/$t/$(basename "$a")"
		done
		fail=$((fail + 1))
	fi
done
echo "[  PASSED  ] $pass test(s)."
[ $fail -gt 0 ] && echo "[  FAILED  ] $fail test(s), listed above:"
[ $fail -eq 0 ]
