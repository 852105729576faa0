# minivmm test guests: freestanding Multiboot v1 images (64-bit code inside,
# ELF32 container so QEMU's multiboot loader accepts them).
#
# Included by the top-level Makefile (`include guests/guests.mk`) or used on
# its own from the repository root: `make -f guests/guests.mk guests`.
# All paths are relative to the repository root. Every variable is prefixed
# GUEST_ so that nothing leaks into the host build.

GUEST_STANDALONE := $(if $(filter 1,$(words $(MAKEFILE_LIST))),1,)
GUEST_SAVED_GOAL := $(.DEFAULT_GOAL)

GUEST_CC      ?= gcc
GUEST_LD      ?= ld
GUEST_OBJCOPY ?= objcopy
GUEST_OUT     := build/guests

GUEST_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror \
	-ffreestanding -fno-pic -fno-pie -nostdlib -fno-stack-protector \
	-mno-red-zone -mgeneral-regs-only -mno-sse -mno-mmx -mcmodel=small \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -fno-builtin \
	-fno-tree-loop-distribute-patterns -fcf-protection=none \
	-m64 -Iguests -MMD -MP
GUEST_ASFLAGS := -m64 -Iguests/rt -MMD -MP
GUEST_LDFLAGS := -m elf_x86_64 -nostdlib -static -z max-page-size=0x1000 \
	-z noexecstack --no-warn-rwx-segments -T guests/rt/link.ld

GUEST_NAMES := hello counter dirty net disk
GUEST_ELFS  := $(patsubst %,$(GUEST_OUT)/%.elf,$(GUEST_NAMES))
GUEST_RT_OBJS := $(GUEST_OUT)/rt/boot.o $(GUEST_OUT)/rt/rt.o
# shared by the guests that dirty memory
GUEST_DIRTYING_OBJ := $(GUEST_OUT)/dirtying.o
# shared by the guests that drive a virtio-pci device
GUEST_VPCI_OBJ := $(GUEST_OUT)/vpci.o
GUEST_OBJS := $(GUEST_RT_OBJS) $(GUEST_DIRTYING_OBJ) $(GUEST_VPCI_OBJ) $(patsubst %,$(GUEST_OUT)/%.o,$(GUEST_NAMES))
GUEST_DEPS := $(GUEST_OBJS:.o=.d)

.PHONY: guests guests-clean
guests: $(GUEST_ELFS)

$(GUEST_OUT)/rt/boot.o: $(GUEST_OUT)/%.o: guests/%.S
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_ASFLAGS) -c $< -o $@

$(filter-out $(GUEST_OUT)/rt/boot.o,$(GUEST_OBJS)): $(GUEST_OUT)/%.o: guests/%.c
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c $< -o $@

# link as ELF64, then re-wrap as ELF32 (all addresses are below 4 GiB)
$(GUEST_OUT)/%.elf64: $(GUEST_OUT)/%.o $(GUEST_RT_OBJS) guests/rt/link.ld
	$(GUEST_LD) $(GUEST_LDFLAGS) -o $@ $(GUEST_RT_OBJS) $(filter-out $< $(GUEST_RT_OBJS),$(filter %.o,$^)) $<

$(GUEST_OUT)/dirty.elf64 $(GUEST_OUT)/net.elf64: $(GUEST_DIRTYING_OBJ)
$(GUEST_OUT)/net.elf64 $(GUEST_OUT)/disk.elf64: $(GUEST_VPCI_OBJ)

$(GUEST_ELFS): $(GUEST_OUT)/%.elf: $(GUEST_OUT)/%.elf64
	$(GUEST_OBJCOPY) -O elf32-i386 $< $@

.PRECIOUS: $(GUEST_OUT)/%.elf64

guests-clean:
	rm -rf $(GUEST_OUT)

-include $(GUEST_DEPS)

# Do not steal the including Makefile's default goal.
ifeq ($(GUEST_STANDALONE),1)
.DEFAULT_GOAL := guests
else
.DEFAULT_GOAL := $(GUEST_SAVED_GOAL)
endif
