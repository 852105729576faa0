# The migration fault matrix and the soak (tests/faults/faults.py,
# docs/migration.md "Fault matrix"). Root, network namespaces fz-a/fz-b.
#   make bench-faults         every phase x fault (~6 min)
#   make bench-soak           SOAK_N (100) back-and-forth migrations, then
#                             SOAK_ROLLBACKS (20) failed ones of one VM; RSS/fds
SOAK_N ?= 100
SOAK_ROLLBACKS ?= 20
.PHONY: bench-faults bench-soak
bench-faults: minivmm guests
	@tests/faults/install.sh
	python3 tests/faults/faults.py

bench-soak: minivmm guests
	python3 tests/faults/faults.py --soak $(SOAK_N) --rollbacks $(SOAK_ROLLBACKS)
