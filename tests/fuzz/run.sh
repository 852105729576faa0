#!/bin/bash
# Runs each fuzz target given (default: build/fuzz/fuzz_*) for FUZZ_S
# seconds (default 60) at nice 19, on build/fuzz/corpus/<target> (grown
# from the seeds in tests/fuzz/corpus/<target>); crashes go to
# build/fuzz/crashes/<target>/. One summary line per target: executions,
# coverage (libFuzzer's cov: edges), corpus size, crashes. Exit 1 on a crash.
set -u
S=${FUZZ_S:-60}
bins=("$@")
[ ${#bins[@]} -eq 0 ] && for b in build/fuzz/fuzz_*; do [[ $b == *.* ]] || bins+=("$b"); done
rc_all=0
for b in "${bins[@]}"; do
	t=$(basename "$b")
	work=build/fuzz/corpus/$t; crashes=build/fuzz/crashes/$t; log=build/fuzz/logs/$t.log
	mkdir -p "$work" "$crashes" build/fuzz/logs
	seeds=tests/fuzz/corpus/$t
	[ -d "$seeds" ] || seeds=
	nice -n 19 "$b" -max_total_time="$S" -timeout=20 -rss_limit_mb=2560 -max_len=1200000 \
		-artifact_prefix="$crashes/" -print_final_stats=1 "$work" $seeds >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	n=$(ls "$work" | wc -l)
	c=$(ls "$crashes" | wc -l)
	printf '%-20s %6s s  execs %-10s cov %-6s ft %-6s corpus %-5s crashes %s  rc %s\n' \
		"$t" "$S" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$n" "$c" "$rc"
	[ $rc -ne 0 ] && { rc_all=1; grep -m3 -E 'ERROR|SUMMARY|deadly' "$log"; }
done
exit $rc_all
