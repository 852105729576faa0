#!/bin/sh
# make test's fast cases of the fault matrix (faults.py --fast), with the
# summary lines tests/run.sh counts.
exec python3 tests/faults/faults.py --fast --cmocka
