/* The hot-page windows' answer (migrate/ram/hotwin.c): pages written in
 * both windows and still to send, lowest first, within the caller's max;
 * nothing when the windows were not taken (a ring VM, a failure). The
 * windows themselves need KVM: test_postcopy checks them on a guest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "migrate/ram/bitmap.h"
#include "migrate/ram/hotwin.h"
#include "vmm/core/vm.h"

#define NPG 300u /* not a multiple of 64: the last word is partial */

struct fix {
	struct ram_hotwin h;
	struct ram_dirty d;
	uint64_t bm[8];
};

static void fix_init(struct fix *f)
{
	memset(f, 0, sizeof(*f));
	f->h.first = calloc(8, sizeof(uint64_t));
	f->h.seen = calloc(8, sizeof(uint64_t));
	assert_non_null(f->h.first);
	assert_non_null(f->h.seen);
	f->d.npages = NPG;
	f->h.d = &f->d; /* armed */
}

static void test_both_windows_and_dirty(void **state)
{
	struct fix f;
	uint64_t pages[16];
	/* 3: both windows, dirty. 70: second window only. 130: first only.
	 * 200: both, already sent (not in bm). 299: both, dirty, last page. */
	static const uint64_t first[] = { 3, 130, 200, 299 }, second[] = { 3, 70, 200, 299 },
			      dirty[] = { 3, 70, 130, 299 };

	(void)state;
	fix_init(&f);
	for (size_t i = 0; i < 4; i++) {
		bm_set(f.h.first, first[i]);
		bm_set(f.h.seen, second[i]);
		bm_set(f.bm, dirty[i]);
	}
	assert_int_equal(ram_hotwin_pages(&f.h, f.bm, pages, 16), 2);
	assert_int_equal(pages[0], 3);
	assert_int_equal(pages[1], 299);
	/* The caller's room bounds it. */
	assert_int_equal(ram_hotwin_pages(&f.h, f.bm, pages, 1), 1);
	assert_int_equal(pages[0], 3);
	assert_int_equal(ram_hotwin_pages(&f.h, f.bm, pages, 0), 0);
	ram_hotwin_free(&f.h);
	assert_null(f.h.first);
	assert_null(f.h.d);
	assert_int_equal(ram_hotwin_pages(&f.h, f.bm, pages, 16), 0);
}

/* A walk that went from page 99 to 100 during the windows, and one that
 * went from 63 to 64 (across a word): 100 and 64 follow the pages
 * written in both windows. 150 was written in the second window only,
 * with nothing below it in the first: a page once a lap, not sent. */
static void test_walk_moved_on(void **state)
{
	struct fix f;
	uint64_t pages[16];

	(void)state;
	fix_init(&f);
	bm_set(f.h.first, 99);
	bm_set(f.h.first, 63);
	bm_set(f.h.first, 7);
	bm_set(f.h.seen, 7);     /* both windows */
	bm_set(f.h.seen, 100);
	bm_set(f.h.seen, 64);
	bm_set(f.h.seen, 150);
	for (uint64_t p = 0; p < NPG; p++)
		bm_set(f.bm, p);
	assert_int_equal(ram_hotwin_pages(&f.h, f.bm, pages, 16), 3);
	assert_int_equal(pages[0], 7);
	assert_int_equal(pages[1], 64);
	assert_int_equal(pages[2], 100);
	/* Already sent (not in bm): not again. */
	bm_clear(f.bm, 100);
	assert_int_equal(ram_hotwin_pages(&f.h, f.bm, pages, 16), 2);
	ram_hotwin_free(&f.h);
}

static void test_many_in_one_word(void **state)
{
	struct fix f;
	uint64_t pages[64];

	(void)state;
	fix_init(&f);
	f.h.first[1] = f.h.seen[1] = f.bm[1] = ~0ULL;
	assert_int_equal(ram_hotwin_pages(&f.h, f.bm, pages, 10), 10);
	for (int i = 0; i < 10; i++)
		assert_int_equal(pages[i], 64 + i);
	ram_hotwin_free(&f.h);
}

/* A ring VM has no per-slot log to look at: the windows are not taken,
 * nothing is asked of KVM, and d->bm is untouched. */
static void test_ring_not_taken(void **state)
{
	struct ram_hotwin h = { 0 };
	struct ram_dirty d = { 0 };
	struct vm vm;
	uint64_t bm[8] = { 5 }, pages[4];
	char err[128] = "";

	(void)state;
	memset(&vm, 0, sizeof(vm));
	d.npages = NPG;
	d.bm = bm;
	d.ring = true;
	assert_int_equal(ram_hotwin_take(&h, &vm, &d, NULL, 100, err, sizeof(err)), 0);
	assert_null(h.d);
	assert_null(d.written);
	assert_int_equal(bm[0], 5);
	assert_int_equal(ram_hotwin_pages(&h, bm, pages, 4), 0);
	ram_hotwin_free(&h);
}

/* A VM without slots (no KVM needed): the window's sync still runs, and
 * what it finds (here a page the VMM wrote) joins d->bm, so the windows
 * never lose a page; while armed, d's syncs fill the second window;
 * free stops that. */
static void test_window_sync_joins_bm(void **state)
{
	struct ram_hotwin h = { 0 };
	struct ram_dirty d = { 0 };
	struct vm vm;
	uint64_t bm[8] = { 1ULL << 9 }, sent[8], vmm_dirty[8] = { 0 }, pages[4];
	char err[128] = "";

	(void)state;
	memset(&vm, 0, sizeof(vm));
	memset(sent, 0xff, sizeof(sent));
	vm.vmm_dirty = vmm_dirty;
	vmm_dirty[2] = 1ULL << 3; /* page 131 */
	d.npages = NPG;
	d.bm = bm;
	assert_int_equal(ram_hotwin_take(&h, &vm, &d, sent, 100, err, sizeof(err)), 0);
	assert_ptr_equal(h.d, &d);
	assert_ptr_equal(d.written, h.seen);
	assert_true(bm_test(bm, 9));
	assert_true(bm_test(bm, 131));
	assert_int_equal(vmm_dirty[2], 0);
	/* The VMM's own writes are not the guest's: no slot log, no page. */
	assert_int_equal(ram_hotwin_pages(&h, bm, pages, 4), 0);
	ram_hotwin_free(&h);
	assert_null(d.written);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_both_windows_and_dirty),
		cmocka_unit_test(test_walk_moved_on),
		cmocka_unit_test(test_many_in_one_word),
		cmocka_unit_test(test_ring_not_taken),
		cmocka_unit_test(test_window_sync_joins_bm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
