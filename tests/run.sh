#!/bin/bash
# Runs every test binary given on the command line (cmocka programs), then
# python's bench tests, and closes with one summary line.
# /dev/kvm must exist: our machines have it, so its absence is a failure.
set -u
if [ ! -c /dev/kvm ]; then
	echo "tests: /dev/kvm is missing: the KVM tests cannot run (FAIL)" >&2
	exit 1
fi
# A hung binary fails the run instead of stalling it (TEST_TIMEOUT s each).
# No test skips: these machines have /dev/kvm and root, and a test that
# lacks what it needs fails loudly; a test that neither passed nor failed
# is counted as a failure.
limit=${TEST_TIMEOUT:-300}
pass=0; fail=0; failed=()
for t in "$@"; do
	echo "=== $t"
	out=$(timeout -k 10 "$limit" "$t" 2>&1); rc=$?
	echo "$out"
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		echo "*** $t: TIMED OUT after ${limit} s (killed) ***"
	fi
	p=$(echo "$out" | sed -n 's/.*\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	f=$(echo "$out" | sed -n 's/.*\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	n=$(echo "$out" | sed -n 's/.*\[==========\] \([0-9]*\) test(s) run.*/\1/p' | tail -1)
	pass=$((pass + ${p:-0}))
	fail=$((fail + ${f:-0}))
	# Every test that ran must have passed or failed: anything else
	# (a cmocka skip among them) did not test what it claims.
	other=$(( ${n:-0} - ${p:-0} - ${f:-0} ))
	if [ "$other" -gt 0 ]; then
		fail=$((fail + other))
		failed+=("$t(did not run all its tests)")
	fi
	if [ $rc -ne 0 ]; then
		failed+=("$t")
		# a crash before cmocka's summary still counts as a failure
		[ -z "$f" ] && fail=$((fail + 1))
	fi
done
if [ -f tests/bench/test_bench.py ]; then
	echo "=== tests/bench/test_bench.py"
	out=$(python3 tests/bench/test_bench.py 2>&1); rc=$?
	echo "$out"
	p=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1/p' | tail -1)
	f=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\2/p' | tail -1)
	pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
	if [ $rc -ne 0 ]; then failed+=("tests/bench/test_bench.py"); [ -z "$f" ] && fail=$((fail + 1)); fi
fi
echo
[ ${#failed[@]} -gt 0 ] && echo "failing: ${failed[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ ${#failed[@]} -eq 0 ]
