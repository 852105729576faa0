/* Bulk RAM drop (vmm/core/ramdrop.c), on an anonymous mapping like guest
 * RAM: a dropped run reads as zeroes and is not resident (so userfaultfd
 * sees a missing page there), its neighbours keep their bytes, large runs
 * are moved and small ones dropped in place, and bad ranges are refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmm/core/ramdrop.h"

#define PG 4096ull
#define NPG 4096ull /* 16 MiB */

static uint8_t *map_ram(void)
{
	uint8_t *p = mmap(NULL, NPG * PG, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	assert_true(p != MAP_FAILED);
	for (uint64_t i = 0; i < NPG; i++)
		memset(p + i * PG, (int)(i % 250) + 1, PG);
	return p;
}

/* Each test: a fresh RAM mapping and its ramdrop. */
struct fix {
	uint8_t *ram;
	struct ramdrop d;
	char err[160];
};

static int setup(void **state)
{
	static struct fix f;

	f.ram = map_ram();
	ramdrop_init(&f.d, f.ram, NPG * PG);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	ramdrop_free(&f->d);
	munmap(f->ram, NPG * PG);
	return 0;
}

static bool resident(uint8_t *p)
{
	unsigned char v = 0;

	assert_int_equal(mincore(p, PG, &v), 0);
	return v & 1;
}

static void check_page(uint8_t *ram, uint64_t i, bool dropped)
{
	uint8_t want = dropped ? 0 : (uint8_t)(i % 250 + 1);

	if (dropped)
		assert_false(resident(ram + i * PG));
	for (uint64_t b = 0; b < PG; b += 512)
		assert_int_equal(ram[i * PG + b], want);
}

static void test_drop_runs(void **state)
{
	struct fix *f = *state;
	uint8_t *ram = f->ram;
	struct ramdrop *d = &f->d;

	assert_non_null(d->grave);
	/* 1024 pages (moved), 3 pages (in place), the last 64 (moved). */
	assert_int_equal(ramdrop_range(d, 100 * PG, 1024 * PG, NULL, f->err, sizeof(f->err)), 0);
	assert_int_equal(ramdrop_range(d, 2000 * PG, 3 * PG, NULL, f->err, sizeof(f->err)), 0);
	assert_int_equal(ramdrop_range(d, (NPG - 64) * PG, 64 * PG, NULL, f->err, sizeof(f->err)), 0);
	assert_int_equal(d->moves, 2);
	assert_int_equal(d->moved_bytes, (1024 + 64) * PG);
	assert_int_equal(d->dropped_bytes, 3 * PG);
	for (uint64_t i = 0; i < NPG; i++)
		check_page(ram, i, (i >= 100 && i < 1124) || (i >= 2000 && i < 2003) ||
					   i >= NPG - 64);
	/* The range is still mapped and writable: a fresh page. */
	ram[150 * PG] = 7;
	assert_int_equal(ram[150 * PG], 7);
	assert_int_equal(ram[150 * PG + 1], 0);
	ramdrop_free(d);
	assert_null(d->grave);
	check_page(ram, 99, false);
	check_page(ram, 1124, false);
}

static void test_bad_ranges(void **state)
{
	struct fix *f = *state;
	uint8_t *ram = f->ram;
	struct ramdrop *d = &f->d;

	assert_int_equal(ramdrop_range(d, NPG * PG, PG, NULL, f->err, sizeof(f->err)), -EINVAL);
	assert_int_equal(ramdrop_range(d, PG, NPG * PG, NULL, f->err, sizeof(f->err)), -EINVAL);
	assert_int_equal(ramdrop_range(d, 100, PG, NULL, f->err, sizeof(f->err)), -EINVAL);
	assert_int_equal(ramdrop_range(d, UINT64_MAX & ~(PG - 1), 2 * PG, NULL, f->err, sizeof(f->err)),
			 -EINVAL);
	assert_int_equal(d->moves + d->dropped_bytes, 0);
	for (uint64_t i = 0; i < NPG; i += 97)
		check_page(ram, i, false);
}

/* A moved run says so, and its old contents stay readable in the grave
 * (post-copy decodes deltas against them) until that piece is freed; a
 * run dropped in place says it was not moved. */
static void test_grave_keeps(void **state)
{
	struct fix *f = *state;
	uint8_t *ram = f->ram;
	struct ramdrop *d = &f->d;
	bool moved = true;

	assert_int_equal(ramdrop_range(d, 512 * PG, 1024 * PG, &moved, f->err, sizeof(f->err)), 0);
	assert_true(moved);
	assert_int_equal(ramdrop_range(d, 3000 * PG, 2 * PG, &moved, f->err, sizeof(f->err)), 0);
	assert_false(moved);
	for (uint64_t i = 512; i < 1536; i += 7)
		assert_int_equal(d->grave[i * PG + 100], (uint8_t)(i % 250 + 1));
	check_page(ram, 600, true);
	assert_int_equal(ramdrop_free_range(d, 512 * PG, 512 * PG, f->err, sizeof(f->err)), 0);
	assert_int_equal(d->grave[1024 * PG], (uint8_t)(1024 % 250 + 1));
	/* The freed piece holds nothing, and its mapping stays (no hole
	 * another mapping could take): it reads zero. */
	assert_false(resident(d->grave + 600 * PG));
	assert_false(resident(d->grave + 1023 * PG));
	assert_int_equal(d->grave[700 * PG + 5], 0);
	assert_int_equal(ramdrop_free_range(d, NPG * PG, PG, f->err, sizeof(f->err)), -EINVAL);
	assert_int_equal(ramdrop_free_range(d, PG, 100, f->err, sizeof(f->err)), -EINVAL);
	ramdrop_free(d);
	assert_null(d->grave);
}

/* More runs than RAMDROP_MOVES_MAX allows moves: the rest are dropped in
 * place, and all are dropped. */
static void test_move_cap(void **state)
{
	struct fix *f = *state;
	uint8_t *ram = f->ram;
	uint64_t run = RAMDROP_MOVE_MIN / PG, n = 0;
	struct ramdrop *d = &f->d;

	d->moves = RAMDROP_MOVES_MAX - 2;
	for (uint64_t i = 0; i + run <= NPG; i += 2 * run, n++)
		assert_int_equal(ramdrop_range(d, i * PG, run * PG, NULL, f->err, sizeof(f->err)), 0);
	assert_int_equal(d->moved_bytes, 2 * run * PG);
	assert_int_equal(d->dropped_bytes, (n - 2) * run * PG);
	for (uint64_t i = 0; i < NPG; i++)
		check_page(ram, i, (i / run) % 2 == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_drop_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_grave_keeps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_ranges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move_cap, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
