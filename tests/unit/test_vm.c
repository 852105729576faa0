/* Guest memory layout and access: slots around the 32-bit hole, bounds
 * of guest-physical translation, and VMM writes landing in the dirty map
 * that migration ORs into each round. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/core/clock.h"
#include "vmm/core/vm.h"

static void test_layout(void **state)
{
	struct vm_slot s[VM_MAX_SLOTS];
	int n;

	(void)state;
	assert_int_equal(vm_layout_slots(256ULL << 20, s, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(s[0].size, 256ULL << 20);
	assert_int_equal(vm_layout_slots(VM_LOW_MEM_END, s, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(vm_layout_slots(5ULL << 30, s, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(s[0].gpa, 0);
	assert_int_equal(s[0].size, VM_LOW_MEM_END);
	assert_int_equal(s[1].gpa, VM_HIGH_MEM_START);
	assert_int_equal(s[1].ram_offset, VM_LOW_MEM_END);
	assert_int_equal(s[1].size, (5ULL << 30) - VM_LOW_MEM_END);
	assert_int_equal(vm_layout_slots(1 << 20, s, &n), -EINVAL);
	assert_int_equal(vm_layout_slots((256ULL << 20) + 1, s, &n), -EINVAL);
	assert_int_equal(vm_layout_slots(VM_MAX_MEM + VM_PAGE_SIZE, s, &n), -EINVAL);
}

/* A VM object with a fake RAM buffer: translation and dirty marking need
 * no /dev/kvm. */
static void fake_vm(struct vm *vm, uint8_t *ram, uint64_t *dirty, uint64_t size)
{
	memset(vm, 0, sizeof(*vm));
	vm->ram = ram;
	vm->ram_size = size;
	vm->vmm_dirty = dirty;
	assert_int_equal(vm_layout_slots(size, vm->slots, &vm->nslots), 0);
}

static void test_gpa_translation(void **state)
{
	static uint8_t ram[16 << 20];
	static uint64_t dirty[(16 << 20) / 4096 / 64];
	struct vm vm;

	(void)state;
	fake_vm(&vm, ram, dirty, sizeof(ram));
	assert_ptr_equal(vm_gpa_to_hva(&vm, 0, 1), ram);
	assert_ptr_equal(vm_gpa_to_hva(&vm, sizeof(ram) - 8, 8), ram + sizeof(ram) - 8);
	assert_null(vm_gpa_to_hva(&vm, sizeof(ram) - 8, 9));
	assert_null(vm_gpa_to_hva(&vm, sizeof(ram), 1));
	assert_null(vm_gpa_to_hva(&vm, 0xfee00000, 4));       /* the LAPIC, not RAM */
	assert_null(vm_gpa_to_hva(&vm, 4096, UINT64_MAX));     /* length overflow */
	assert_null(vm_gpa_to_hva(&vm, UINT64_MAX - 1, 4));
}

static void test_vmm_writes_are_dirty(void **state)
{
	static uint8_t ram[16 << 20];
	static uint64_t dirty[(16 << 20) / 4096 / 64];
	struct vm vm;
	uint8_t buf[8192];

	(void)state;
	memset(dirty, 0, sizeof(dirty));
	fake_vm(&vm, ram, dirty, sizeof(ram));
	memset(buf, 0xab, sizeof(buf));
	/* 8 KiB starting mid-page touches three pages: 2, 3 and 4. */
	assert_int_equal(vm_write_guest(&vm, 2 * 4096 + 100, buf, sizeof(buf)), 0);
	assert_int_equal(ram[2 * 4096 + 100], 0xab);
	assert_int_equal(dirty[0], (1ULL << 2) | (1ULL << 3) | (1ULL << 4));
	/* Outside RAM: refused, nothing written, nothing marked. */
	assert_int_equal(vm_write_guest(&vm, sizeof(ram) - 4, buf, 8), -EFAULT);
	assert_int_equal(dirty[0], (1ULL << 2) | (1ULL << 3) | (1ULL << 4));
	vm_mark_dirty(&vm, sizeof(ram) - 1, 4096); /* clamped to RAM */
	assert_int_equal(dirty[sizeof(dirty) / 8 - 1], 1ULL << 63);
}

/* A vCPU that never parks (one long emulated instruction): vm_pause gives
 * up at its deadline with the pause still counted, and vm_resume undoes
 * it; with every vCPU parked it returns at once. */
static void test_pause_deadline(void **state)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	uint64_t t0;

	(void)state;
	assert_non_null(vm);
	pthread_mutex_init(&vm->lock, NULL);
	vm_cond_init(vm);
	vm->threads = 1;
	vm->pause_timeout_ms = 50;
	t0 = clock_now_ns();
	assert_int_equal(vm_pause(vm), -ETIMEDOUT);
	assert_true(clock_ms_since(t0) >= 49);
	assert_true(clock_ms_since(t0) < 5000);
	assert_int_equal(vm->pause_count, 1);
	vm_resume(vm);
	assert_int_equal(vm->pause_count, 0);
	vm->parked = 1;
	assert_int_equal(vm_pause(vm), 0);
	vm_resume(vm);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pause_deadline),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_gpa_translation),
		cmocka_unit_test(test_vmm_writes_are_dirty),
	};
	return cmocka_run_group_tests_name("vm", tests, NULL, NULL);
}
