# libFuzzer targets (docs/fuzzing.md). `make fuzz` builds build/fuzz/fuzz_*
# with clang (installed by tests/fuzz/install.sh when missing);
# `FUZZ_S=N make fuzz-run` runs each for N s on a copy of its corpus
# (tests/fuzz/corpus/<target>/); `make fuzz-smoke` runs each for a few
# seconds and fails on a crash (make test runs it).
FUZZ_CC    ?= clang
FUZZ_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=all -std=gnu11 -Wall -Wextra -Werror \
              -Wno-gnu-variable-sized-type-not-at-end -pthread -D_GNU_SOURCE -I. -MMD -MP
FUZZ_SRCS  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS  := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)
FUZZ_LIB   := $(LIB_SRCS:%.c=build/fuzz/obj/%.o) build/fuzz/obj/tests/fuzz/fakevm.o build/fuzz/obj/tests/fuzz/kvmstub.o \
              build/fuzz/obj/tests/fuzz/peer.o
FUZZ_S     ?= 60

.PHONY: fuzz fuzz-run fuzz-smoke fuzz-deps
fuzz: $(FUZZ_BINS)

fuzz-deps:
	@tests/fuzz/install.sh

build/fuzz/obj/%.o: %.c | fuzz-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB) | fuzz-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB) -pthread

fuzz-run: fuzz
	@FUZZ_S=$(FUZZ_S) tests/fuzz/run.sh $(FUZZ_BINS)

fuzz-smoke: fuzz
	@tests/fuzz/smoke.sh $(FUZZ_BINS)

-include $(FUZZ_LIB:.o=.d)
