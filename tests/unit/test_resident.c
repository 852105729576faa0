/* The populated-page scan round 0 and the initially-set dirty sync rely
 * on (vmm/core/resident.c): on a fresh anonymous mapping with chosen
 * pages written, both methods, PAGEMAP_SCAN and
 * mincore, give exactly those pages as merged ranges, across the mincore
 * chunk and the PAGEMAP_SCAN output vector, and on a mapping whose dense
 * first GiB makes the scan switch to mincore; and the range-list helpers
 * (find, append order, union) used to grow the trusted set. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "vmm/core/resident.h"

#define PG 4096ULL
#define NPAGES (1ULL << 16) /* 256 MiB: past one 32 Ki-page mincore chunk */

static uint8_t *map_fresh(void)
{
	void *p = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

/* Pages 0-2, 100, 32767-32768 (across the mincore chunk), 600 single
 * pages 2 apart from 40000 (more ranges than one PAGEMAP_SCAN call
 * returns), the last page. */
static void touch(uint8_t *m)
{
	for (uint64_t p = 0; p < 3; p++)
		m[p * PG] = 1;
	m[100 * PG + 17] = 1;
	m[32767 * PG] = 1;
	m[32768 * PG] = 1;
	for (uint64_t i = 0; i < 600; i++)
		m[(40000 + 2 * i) * PG] = 1;
	m[(NPAGES - 1) * PG + PG - 1] = 1;
}

static void check_ranges(const struct resident *rs)
{
	assert_int_equal(rs->n, 3 + 600 + 1);
	assert_int_equal(rs->r[0].first, 0);
	assert_int_equal(rs->r[0].count, 3);
	assert_int_equal(rs->r[1].first, 100);
	assert_int_equal(rs->r[1].count, 1);
	assert_int_equal(rs->r[2].first, 32767);
	assert_int_equal(rs->r[2].count, 2);
	for (uint64_t i = 0; i < 600; i++) {
		assert_int_equal(rs->r[3 + i].first, 40000 + 2 * i);
		assert_int_equal(rs->r[3 + i].count, 1);
	}
	assert_int_equal(rs->r[603].first, NPAGES - 1);
	assert_int_equal(rs->r[603].count, 1);
	assert_int_equal(resident_pages(rs), 3 + 1 + 2 + 600 + 1);
}

static void scan_with(enum resident_method method)
{
	uint8_t *m = map_fresh();
	struct resident rs;
	char err[128];

	touch(m);
	resident_init(&rs, method);
	assert_int_equal(resident_scan(&rs, m, 0, NPAGES, err, sizeof(err)), 0);
	check_ranges(&rs);
	if (method == RESIDENT_MINCORE)
		assert_true(rs.used_mincore);
	else
		printf("resident: AUTO scanned with %s\n",
		       rs.used_mincore ? "mincore (no PAGEMAP_SCAN)" : "PAGEMAP_SCAN");
	resident_free(&rs);
	assert_int_equal(munmap(m, NPAGES * PG), 0);
}

static void test_scan_auto(void **st)
{
	(void)st;
	scan_with(RESIDENT_AUTO);
}

static void test_scan_mincore(void **st)
{
	(void)st;
	scan_with(RESIDENT_MINCORE);
}

/* In pieces, in order: the same list as one scan; a piece starting
 * before the end of what is held is refused; an untouched mapping is an
 * empty list. */
static void test_scan_in_pieces(void **st)
{
	uint8_t *m = map_fresh();
	struct resident rs;
	char err[128];

	(void)st;
	touch(m);
	resident_init(&rs, RESIDENT_AUTO);
	assert_int_equal(resident_scan(&rs, m, 0, 2, err, sizeof(err)), 0);
	assert_int_equal(rs.n, 1);
	assert_int_equal(rs.r[0].count, 2);
	/* Page 2 continues the range that ended at page 2. */
	assert_int_equal(resident_scan(&rs, m, 2, 40000, err, sizeof(err)), 0);
	assert_int_equal(resident_scan(&rs, m, 40002, NPAGES - 40002, err, sizeof(err)),
			 0);
	/* 40000 itself was in the second piece. */
	check_ranges(&rs);
	assert_int_equal(resident_scan(&rs, m, 50, 10, err, sizeof(err)), -EINVAL);
	resident_free(&rs);
	assert_int_equal(munmap(m, NPAGES * PG), 0);

	m = map_fresh();
	resident_init(&rs, RESIDENT_AUTO);
	assert_int_equal(resident_scan(&rs, m, 0, NPAGES, err, sizeof(err)), 0);
	assert_int_equal(rs.n, 0);
	resident_free(&rs);
	assert_int_equal(munmap(m, NPAGES * PG), 0);
}

/* A quarter of the first GiB populated: the next GiB is scanned with
 * mincore (cheaper on dense RAM), and the ranges are the same. */
static void test_scan_dense_then_sparse(void **st)
{
	uint64_t np = (2ULL << 18) + 1, dense = 1ULL << 18;
	uint8_t *m = mmap(NULL, np * PG, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct resident a, b;
	char err[128];

	(void)st;
	assert_true(m != MAP_FAILED);
	for (uint64_t p = 0; p < dense; p += 4)
		m[p * PG] = 1;
	m[300000 * PG] = m[300001 * PG] = 1;
	m[(np - 1) * PG] = 1;
	resident_init(&a, RESIDENT_AUTO);
	resident_init(&b, RESIDENT_MINCORE);
	assert_int_equal(resident_scan(&a, m, 0, np, err, sizeof(err)), 0);
	assert_int_equal(resident_scan(&b, m, 0, np, err, sizeof(err)), 0);
	assert_true(a.used_mincore);
	assert_int_equal(a.n, dense / 4 + 2);
	assert_int_equal(b.n, a.n);
	assert_memory_equal(a.r, b.r, a.n * sizeof(a.r[0]));
	assert_int_equal(a.r[dense / 4].first, 300000);
	assert_int_equal(a.r[dense / 4].count, 2);
	assert_int_equal(a.r[dense / 4 + 1].first, np - 1);
	resident_free(&a);
	resident_free(&b);
	assert_int_equal(munmap(m, np * PG), 0);
}

static void test_find_append_union(void **st)
{
	struct resident a, b, u;

	(void)st;
	resident_init(&a, RESIDENT_AUTO);
	resident_init(&b, RESIDENT_AUTO);
	resident_init(&u, RESIDENT_AUTO);
	assert_int_equal(resident_append(&a, 10, 5), 0);  /* [10,15) */
	assert_int_equal(resident_append(&a, 15, 5), 0);  /* merged: [10,20) */
	assert_int_equal(resident_append(&a, 30, 10), 0); /* [30,40) */
	assert_int_equal(resident_append(&a, 50, 0), 0);  /* nothing */
	assert_int_equal(a.n, 2);
	assert_int_equal(a.r[0].count, 10);
	assert_int_equal(resident_find(&a, 0), 0);
	assert_int_equal(resident_find(&a, 19), 0);
	assert_int_equal(resident_find(&a, 20), 1);
	assert_int_equal(resident_find(&a, 39), 1);
	assert_int_equal(resident_find(&a, 40), 2);

	/* Overlapping [18,25), adjacent [40,41), inside [32,33), apart [60,61). */
	assert_int_equal(resident_append(&b, 18, 7), 0);
	assert_int_equal(resident_append(&b, 32, 1), 0);
	assert_int_equal(resident_append(&b, 40, 1), 0);
	assert_int_equal(resident_append(&b, 60, 1), 0);
	assert_int_equal(resident_union(&u, &a, &b), 0);
	assert_int_equal(u.n, 3);
	assert_int_equal(u.r[0].first, 10);
	assert_int_equal(u.r[0].count, 15);
	assert_int_equal(u.r[1].first, 30);
	assert_int_equal(u.r[1].count, 11);
	assert_int_equal(u.r[2].first, 60);
	assert_int_equal(u.r[2].count, 1);
	assert_int_equal(resident_pages(&u), 27);
	resident_free(&a);
	resident_free(&b);
	resident_free(&u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scan_auto),
		cmocka_unit_test(test_scan_mincore),
		cmocka_unit_test(test_scan_in_pieces),
		cmocka_unit_test(test_scan_dense_then_sparse),
		cmocka_unit_test(test_find_append_union),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
