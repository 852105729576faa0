# minivmm build. `make` builds ./minivmm and the test guests; `make test` runs
# every test (installing libcmocka-dev when missing); `make demo` runs a live
# migration on this machine; `make bench*` are the benchmarks (tests/bench).

CC      ?= gcc
CFLAGS  ?= -O2 -g
BASEFLAGS := -std=gnu11 -Wall -Wextra -Werror -pthread -D_GNU_SOURCE -I. \
             -MMD -MP
LDLIBS  := -pthread

SRCS      := $(sort $(shell find vmm devices migrate -name "*.c"))
LIB_SRCS  := $(filter-out vmm/main.c,$(SRCS))

OBJS      := $(SRCS:%.c=build/obj/%.o)
LIB_OBJS  := $(LIB_SRCS:%.c=build/obj/%.o)

# The test build: every object again with ASan and UBSan.
SAN       := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_OBJS  := $(SRCS:%.c=build/san/%.o)
SAN_LIB   := $(LIB_SRCS:%.c=build/san/%.o)

UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/tests/%)
INTEG_SRCS := $(sort $(wildcard tests/integration/test_*.c))
INTEG_BINS := $(INTEG_SRCS:tests/integration/%.c=build/tests/%)
HARNESS    := tests/harness.c tests/proxy.c

.PHONY: all test unit integration clean demo deps-test
all: minivmm guests

minivmm: $(OBJS)
	$(CC) $(CFLAGS) $(BASEFLAGS) -o $@ $^ $(LDLIBS)

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(BASEFLAGS) -c -o $@ $<

build/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -g $(SAN) $(BASEFLAGS) -c -o $@ $<

build/minivmm-san: $(SAN_OBJS)
	$(CC) -O1 -g $(SAN) $(BASEFLAGS) -o $@ $^ $(LDLIBS)

build/tests/test_%: tests/unit/test_%.c $(SAN_LIB) | deps-test
	@mkdir -p $(dir $@)
	$(CC) -O1 -g $(SAN) $(BASEFLAGS) -o $@ $< $(SAN_LIB) -lcmocka $(LDLIBS)

build/tests/test_%: tests/integration/test_%.c $(HARNESS) tests/harness.h tests/proxy.h | deps-test
	@mkdir -p $(dir $@)
	$(CC) -O1 -g $(SAN) $(BASEFLAGS) -o $@ $< $(HARNESS) -lcmocka $(LDLIBS)

# cmocka is the only test dependency; a clean CI machine gets it from Debian.
deps-test:
	@tests/install-deps.sh

test: deps-test minivmm build/minivmm-san guests $(UNIT_BINS) $(INTEG_BINS) fuzz
	@tests/run.sh $(UNIT_BINS) $(INTEG_BINS) tests/fuzz/smoke.sh tests/faults/smoke.sh

demo: minivmm guests
	@tests/demo.sh

clean:
	rm -rf build minivmm

include guests/guests.mk
-include tests/bench/bench.mk
include tests/fuzz/fuzz.mk
include tests/faults/faults.mk
-include $(OBJS:.o=.d) $(SAN_OBJS:.o=.d)
