/* The dirty ring tracker (vmm/core/dirty_ring.c) against a fake KVM: rings
 * in plain memory, pushes only on a write to a write-protected page (as
 * KVM logs), and a KVM_RESET_DIRTY_RINGS that walks every ring the way
 * Linux 6.16+ does, write-protecting each page again as it goes and, when
 * a signal interrupts it, leaving the last batch it took writable. So the
 * per-vCPU bookkeeping, the overflow test, a failed or interrupted reset
 * and the order of reset and publication are tested without /dev/kvm. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/core/dirty_ring.h"
#include "vmm/core/vcpu.h"
#include "vmm/core/vm.h"

#define NCPU 2
#define MAX_ENTRIES 65536u
#define NPAGES (1u << 17)

struct fake {
	struct vm vm; /* first: the reset hook gets the VM */
	struct vcpu cpu[NCPU];
	struct kvm_dirty_gfn ring[NCPU][MAX_ENTRIES];
	uint64_t pages[NCPU][MAX_ENTRIES];
	uint64_t dirty[NPAGES / 64];
	uint32_t dirty_index[NCPU], reset_index[NCPU];
	bool writable[NPAGES];
	int resets;     /* KVM_RESET_DIRTY_RINGS calls */
	int eintr_at;   /* >= 0: the next call stops (-EINTR) after this many entries */
	int fail;       /* -errno: the next call fails before it walks */
	/* Runs in the next call before its walk: another thread meanwhile. */
	void (*during)(struct fake *f);
};

static uint32_t entries(const struct fake *f) { return f->vm.dring_entries; }

/* A guest write on vCPU cpu: KVM pushes an entry only if the page is
 * write-protected; it pushes on a full ring too (kvm_pvm does). */
static void guest_write(struct fake *f, int cpu, uint64_t pg)
{
	struct kvm_dirty_gfn *e;

	if (f->writable[pg])
		return;
	e = &f->ring[cpu][f->dirty_index[cpu] & (entries(f) - 1)];
	e->slot = 0;
	e->offset = pg;
	__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
	f->dirty_index[cpu]++;
	f->writable[pg] = true;
}

static int fake_reset(struct vm *vm)
{
	struct fake *f = (struct fake *)vm;
	int count = 0;

	f->resets++;
	if (f->fail) {
		int r = f->fail;

		f->fail = 0;
		return r;
	}
	if (f->during) {
		void (*d)(struct fake *) = f->during;

		f->during = NULL;
		d(f);
	}
	for (int c = 0; c < NCPU; c++) {
		int64_t pending = -1; /* taken, not yet write-protected */

		for (;;) {
			struct kvm_dirty_gfn *e = &f->ring[c][f->reset_index[c] & (entries(f) - 1)];

			if (f->eintr_at >= 0 && count == f->eintr_at) {
				f->eintr_at = -1;
				return -EINTR; /* pending stays writable */
			}
			if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_RESET))
				break;
			if (pending >= 0)
				f->writable[pending] = false;
			pending = (int64_t)e->offset;
			__atomic_store_n(&e->flags, 0, __ATOMIC_RELEASE);
			f->reset_index[c]++;
			count++;
		}
		if (pending >= 0)
			f->writable[pending] = false;
	}
	return count;
}

static struct fake *fake_new(uint32_t n)
{
	struct fake *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->vm.dring_entries = n;
	f->vm.nslots = 1;
	f->vm.slots[0] = (struct vm_slot){ .id = 0, .size = (uint64_t)NPAGES * VM_PAGE_SIZE };
	f->vm.vmm_dirty = f->dirty;
	f->vm.vcpus = f->cpu;
	f->vm.ncpus = NCPU;
	f->vm.dring_reset_fn = fake_reset;
	pthread_mutex_init(&f->vm.dring_lock, NULL);
	for (int i = 0; i < NCPU; i++) {
		f->cpu[i].vm = &f->vm;
		f->cpu[i].id = i;
		f->cpu[i].ring = f->ring[i];
		f->cpu[i].ring_pages = f->pages[i];
	}
	f->eintr_at = -1;
	return f;
}

static void fake_free(struct fake *f)
{
	pthread_mutex_destroy(&f->vm.dring_lock);
	free(f);
}

static bool is_dirty(const struct fake *f, uint64_t pg)
{
	return f->dirty[pg / 64] & (1ULL << (pg % 64));
}

/* Our reset index is KVM's, on every ring. */
static void assert_in_step(const struct fake *f)
{
	for (int c = 0; c < NCPU; c++)
		assert_int_equal(f->cpu[c].ring_kr, f->reset_index[c]);
}

/* KVM_RESET_DIRTY_RINGS walks every vCPU's ring: one call per collect,
 * and each ring's reset index still followed. */
static void test_one_reset_per_collect(void **state)
{
	struct fake *f = fake_new(4096);
	char err[128];

	(void)state;
	for (uint64_t p = 0; p < 10; p++)
		guest_write(f, 0, p);
	for (uint64_t p = 100; p < 105; p++)
		guest_write(f, 1, p);
	assert_int_equal(dring_collect(&f->vm, 1, err, sizeof(err)), 15);
	assert_int_equal(f->resets, 1);
	assert_in_step(f);
	assert_int_equal(f->cpu[0].ring_fetch, 10);
	assert_int_equal(f->cpu[1].ring_fetch, 5);
	for (uint64_t p = 0; p < 10; p++)
		assert_true(is_dirty(f, p));
	for (uint64_t p = 100; p < 105; p++)
		assert_true(is_dirty(f, p) && !f->writable[p]);
	assert_false(f->vm.dring_lost);
	/* Nothing new: no call at all. */
	assert_int_equal(dring_collect(&f->vm, 1, err, sizeof(err)), 0);
	assert_int_equal(f->resets, 1);
	fake_free(f);
}

/* A signal stops the reset part way: it is retried for the rest, the
 * bookkeeping ends in step, the pages are dirty, and since the page KVM
 * took last stayed writable (its next write is not logged), the
 * migration no longer trusts the rings, and says why. */
static void test_reset_interrupted(void **state)
{
	struct fake *f = fake_new(4096);
	char err[128];

	(void)state;
	for (uint64_t p = 0; p < 10; p++)
		guest_write(f, 0, p);
	for (uint64_t p = 20; p < 23; p++)
		guest_write(f, 1, p);
	f->eintr_at = 4;
	assert_int_equal(dring_collect(&f->vm, 1, err, sizeof(err)), 13);
	assert_int_equal(f->resets, 2);
	assert_in_step(f);
	for (uint64_t p = 0; p < 10; p++)
		assert_true(is_dirty(f, p));
	assert_true(f->writable[3]); /* what the interrupted walk left */
	assert_true(f->vm.dring_lost);
	assert_int_equal(f->vm.dring_loss, DRING_LOSS_RESET);
	assert_int_equal(f->vm.dring_reset_errors, 1);
	assert_int_equal(f->vm.dring_reset_errno, EINTR);
	/* Nothing KVM's view differs in: later migrations trust the rings. */
	assert_false(f->vm.dring_suspect);
	fake_free(f);
}

/* Any other failure: the collect still gives its pages, the entries wait
 * for the next reset, which brings the bookkeeping back in step. */
static void test_reset_fails(void **state)
{
	struct fake *f = fake_new(4096);
	char err[128] = "";

	(void)state;
	for (uint64_t p = 0; p < 5; p++)
		guest_write(f, 0, p);
	f->fail = -EIO;
	assert_int_equal(dring_collect(&f->vm, 1, err, sizeof(err)), 5);
	assert_non_null(strstr(err, "KVM_RESET_DIRTY_RINGS"));
	for (uint64_t p = 0; p < 5; p++)
		assert_true(is_dirty(f, p));
	assert_true(f->vm.dring_lost);
	assert_int_equal(f->vm.dring_loss, DRING_LOSS_RESET);
	assert_int_equal(f->vm.dring_reset_errno, EIO);
	assert_in_step(f); /* KVM did nothing: nor did we */
	assert_int_equal(f->cpu[0].ring_fetch, 5);
	guest_write(f, 0, 50);
	assert_int_equal(dring_collect(&f->vm, 1, err, sizeof(err)), 1);
	assert_int_equal(f->resets, 2);
	assert_in_step(f);
	assert_int_equal(f->cpu[0].ring_kr, 6);
	assert_false(f->writable[0] || f->writable[50]);
	fake_free(f);
}

/* The same failure on a vCPU's own full exit does not stop the vCPU. */
static void test_full_exit_reset_interrupted(void **state)
{
	struct fake *f = fake_new(4096);
	char err[128];

	(void)state;
	for (uint64_t p = 0; p < 4096 - 64; p++)
		guest_write(f, 0, p);
	f->eintr_at = 0;
	assert_int_equal(dring_full(&f->cpu[0], err, sizeof(err)), 0);
	assert_in_step(f);
	assert_true(is_dirty(f, 0) && is_dirty(f, 4095 - 64));
	assert_true(f->vm.dring_lost);
	fake_free(f);
}

/* A sync takes vmm_dirty and reads pages without the ring lock. Here it
 * does so while the reset runs, and the guest writes the page after
 * that read: a page published before KVM re-protected it would be sent
 * without that write, which nothing logged. */
static void sync_during_reset(struct fake *f)
{
	if (is_dirty(f, 7)) {
		f->dirty[0] &= ~(1ULL << 7); /* taken and read by the sync */
		guest_write(f, 1, 7);        /* still writable: not logged */
	}
}

static void test_publish_after_reset(void **state)
{
	struct fake *f = fake_new(4096);
	char err[128];

	(void)state;
	guest_write(f, 0, 7);
	f->during = sync_during_reset;
	assert_int_equal(dring_collect(&f->vm, 1, err, sizeof(err)), 1);
	assert_true(is_dirty(f, 7));
	assert_false(f->vm.dring_lost);
	fake_free(f);
}

/* The (n+1)-th push is the overflow, not the n-th. A ring found full
 * when a harvest starts stays lost: an (n+1)-th may have overwritten its
 * oldest entry already, and nothing in the ring tells. */
static void test_full_at_start_is_lost(void **state)
{
	struct fake *f = fake_new(4096);
	char err[128];

	(void)state;
	for (uint64_t p = 0; p < 4096; p++)
		guest_write(f, 0, p);
	assert_int_equal(dring_collect(&f->vm, 1, err, sizeof(err)), 4096);
	assert_true(f->vm.dring_lost && f->vm.dring_suspect);
	assert_int_equal(f->vm.dring_loss, DRING_LOSS_FULL);
	assert_in_step(f);
	fake_free(f);
}

struct racer {
	struct fake *f;
	int stop;
};

/* Pushes the ring's n-th entry once the harvest has taken the first (or
 * not at all, if it missed that). */
static void *push_last(void *arg)
{
	struct racer *r = arg;
	struct fake *f = r->f;

	while (!(__atomic_load_n(&f->ring[0][0].flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_RESET))
		if (__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE))
			return NULL;
	guest_write(f, 0, entries(f) - 1);
	return NULL;
}

/* A ring that becomes exactly full while it is harvested is no overflow.
 * The n-th entry has to land while the harvest runs: a 65536-entry ring
 * gives it milliseconds; runs where it came too late do not count. */
static void test_full_while_read_is_exact(void **state)
{
	int raced = 0;

	(void)state;
	for (int run = 0; run < 20 && raced < 3; run++) {
		struct fake *f = fake_new(MAX_ENTRIES);
		struct racer r = { f, 0 };
		pthread_t t;
		char err[128];

		for (uint64_t p = 0; p < MAX_ENTRIES - 1; p++)
			guest_write(f, 0, p);
		assert_int_equal(pthread_create(&t, NULL, push_last, &r), 0);
		dring_collect(&f->vm, 1, err, sizeof(err));
		__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
		pthread_join(t, NULL);
		if (f->cpu[0].ring_fetch == MAX_ENTRIES) {
			raced++;
			assert_false(f->vm.dring_lost);
			assert_in_step(f);
			assert_true(is_dirty(f, MAX_ENTRIES - 1));
		}
		fake_free(f);
	}
	if (!raced)
		fail_msg("the n-th entry never landed during a harvest in 20 runs");
}

/* One reset for two rings, and one of them overflowed meanwhile (KVM
 * pushed an (n+1)-th onto an entry we had taken): the walk stops there
 * on that ring only; each ring's index is read off the ring. */
static void overwrite_ring1(struct fake *f)
{
	struct kvm_dirty_gfn *e = &f->ring[1][f->reset_index[1] & (entries(f) - 1)];

	e->offset = 999;
	__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
}

static void test_overflow_one_of_two(void **state)
{
	struct fake *f = fake_new(4096);
	char err[128];

	(void)state;
	for (uint64_t p = 0; p < 10; p++)
		guest_write(f, 0, p);
	for (uint64_t p = 200; p < 210; p++)
		guest_write(f, 1, p);
	f->during = overwrite_ring1;
	assert_int_equal(dring_collect(&f->vm, 1, err, sizeof(err)), 20);
	assert_int_equal(f->reset_index[0], 10);
	assert_int_equal(f->reset_index[1], 0);
	assert_in_step(f);
	assert_true(f->vm.dring_lost && f->vm.dring_suspect);
	assert_int_equal(f->vm.dring_loss, DRING_LOSS_OVERFLOW);
	fake_free(f);
}

/* A reset failed, leaving entries to reset, and KVM then overflowed onto
 * the oldest of them: KVM's walk stops there, so resetting the rest
 * moves nothing, and the vCPU stopped on a full ring must still get KVM's
 * index moving (the resync), taking the overwriting entry's page. */
static void test_full_exit_stuck_behind_overwrite(void **state)
{
	struct fake *f = fake_new(4096);
	struct kvm_dirty_gfn *e;
	char err[128];

	(void)state;
	for (uint64_t p = 0; p < 10; p++)
		guest_write(f, 0, p);
	f->fail = -EIO;
	dring_collect(&f->vm, 1, err, sizeof(err));
	e = &f->ring[0][0];
	e->offset = 999;
	__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
	assert_int_equal(dring_full(&f->cpu[0], err, sizeof(err)), 0);
	assert_true(f->reset_index[0] > 10);
	assert_in_step(f);
	assert_true(is_dirty(f, 999));
	assert_true(f->vm.dring_lost && f->vm.dring_suspect);
	assert_int_equal(f->vm.dring_resyncs, 1);
	fake_free(f);
}

/* Two rings hold what a failed reset left, and KVM overflowed onto the
 * oldest entry of each. The full vCPU's resync must not pull its cursor
 * back behind entries it marked: KVM's walk takes all of them, and a
 * total that matched our sum would then "prove" the other, stuck ring in
 * step. */
static void overwrite_oldest(struct fake *f, int cpu, uint64_t pg)
{
	struct kvm_dirty_gfn *e = &f->ring[cpu][f->reset_index[cpu] & (entries(f) - 1)];

	e->offset = pg;
	__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
}

static void test_resync_keeps_marked(void **state)
{
	struct fake *f = fake_new(4096);
	char err[128];

	(void)state;
	for (uint64_t p = 0; p < 4096 - 566; p++) /* past the soft limit */
		guest_write(f, 0, p);
	for (uint64_t p = 5000; p < 5010; p++)
		guest_write(f, 1, p);
	f->fail = -EIO;
	dring_collect(&f->vm, 1, err, sizeof(err));
	overwrite_oldest(f, 0, 9000);
	overwrite_oldest(f, 1, 9001);
	assert_int_equal(dring_full(&f->cpu[0], err, sizeof(err)), 0);
	assert_in_step(f);
	assert_true(is_dirty(f, 9000));
	assert_true(f->vm.dring_lost);
	fake_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_reset_per_collect),
		cmocka_unit_test(test_reset_interrupted),
		cmocka_unit_test(test_reset_fails),
		cmocka_unit_test(test_full_exit_reset_interrupted),
		cmocka_unit_test(test_publish_after_reset),
		cmocka_unit_test(test_full_at_start_is_lost),
		cmocka_unit_test(test_full_while_read_is_exact),
		cmocka_unit_test(test_overflow_one_of_two),
		cmocka_unit_test(test_full_exit_stuck_behind_overwrite),
		cmocka_unit_test(test_resync_keeps_marked),
	};

	/* TEST_FILTER=glob runs only the matching tests. */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
