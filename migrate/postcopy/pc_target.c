/* Post-copy, target side: lifecycle, placement, the push receiver and
 * recovery (the fault thread is pc_fault.c). Once the guest runs here,
 * the pages it lacks exist only on the source: a lost link never
 * discards anything, it pauses the guest (vCPUs blocked on a fault keep
 * waiting; on kvm_pvm a signal does not interrupt that wait) until
 * `migrate_recover URI` and the source's `migrate URI` resume it. */
#include "migrate/postcopy/pc_target_int.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "migrate/mig.h"
#include "migrate/postcopy/pc_wire.h"
#include "migrate/postcopy/uffd.h"
#include "migrate/ram/bitmap.h"
#include "migrate/ram/ram.h"
#include "devices/conline.h"
#include "vmm/core/vm.h"

int pc_tgt_create(struct pc_tgt **out, struct vm *vm, struct mig *m, bool delta, char *err,
		  size_t errlen)
{
	struct pc_tgt *pc = calloc(1, sizeof(*pc));
	size_t words = bm_words(vm->ram_size / VM_PAGE_SIZE);

	*out = pc;
	if (!pc) {
		snprintf(err, errlen, "post-copy: out of memory");
		return -ENOMEM;
	}
	pc->vm = vm;
	pc->m = m;
	pc->npages = vm->ram_size / VM_PAGE_SIZE;
	ramdrop_init(&pc->drop, vm->ram, vm->ram_size);
	pc->uffd = -1;
	pc->wake_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&pc->mu, NULL);
	stream_reset(&pc->rp);
	stream_reset(&pc->rp_new);
	stream_reset(&pc->main);
	pc->missing = calloc(words, 8);
	pc->placed = calloc(words, 8);
	pc->requested = calloc(words, 8);
	pc->lat = malloc(PC_MAX_LATENCIES * sizeof(double));
	pc->delta = delta;
	if (delta) {
		pc->kept = calloc(words, 8);
		pc->grave_gone = calloc(bm_words(pc->npages / PC_GRAVE_PIECE_PAGES + 1), 8);
	}
	if (!pc->missing || !pc->placed || !pc->requested || !pc->lat || pc->wake_efd < 0 ||
	    (delta && (!pc->kept || !pc->grave_gone))) {
		snprintf(err, errlen, "post-copy: out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* A connection that presents token in its first frame (type want), or
 * an error; a stranger is the caller's to drop. */
int pc_accept_token(struct transport_listener *lst, int wait_ms, uint32_t want,
		      uint64_t token, struct stream *s, char *err, size_t errlen)
{
	uint8_t pre[STREAM_PREAMBLE_LEN], b[RETURN_PATH_LEN];
	struct transport_conn conn;
	uint32_t len;
	int ret = transport_accept(lst, wait_ms, MIG_IO_TIMEOUT_MS, &conn, err, errlen);

	if (ret)
		return ret;
	stream_attach(s, &conn, MIG_IO_TIMEOUT_MS);
	stream_set_frame_ms(s, MIG_IO_TIMEOUT_MS);
	ret = stream_read_all(s, pre, sizeof(pre), err, errlen);
	if (!ret)
		ret = stream_preamble_decode(pre, err, errlen);
	if (!ret)
		ret = stream_recv_expect(s, want, b, sizeof(b), &len, "source", err, errlen);
	if (!ret && (len < 8 || le_get64(b) != token)) {
		snprintf(err, errlen, "%s with a wrong token", stream_type_name(want));
		ret = -EPERM;
	}
	if (ret)
		stream_close(s);
	else if (want == ST_RETURN_PATH)
		(void)transport_prefer_latency(&s->conn); /* requests: see pc_source.c */
	stream_set_frame_ms(s, 0);
	return ret;
}

int pc_tgt_accept_rp(struct pc_tgt *pc, struct transport_listener *lst, uint64_t token,
		     char *err, size_t errlen)
{
	pc->token = token;
	for (int tries = 0; tries < 8; tries++) {
		int ret = pc_accept_token(lst, MIG_IO_TIMEOUT_MS, ST_RETURN_PATH, token, &pc->rp, err,
				     errlen);

		if (!ret) {
			stream_set_timeout(&pc->rp, MIG_IO_TIMEOUT_MS);
			pc->rp_ok = true;
			return 0;
		}
		if (ret == -ETIMEDOUT || ret == -EINTR)
			return ret;
		fprintf(stderr, "minivmm: dropped a connection on the migration port: %s\n", err);
	}
	snprintf(err, errlen, "no return path connection for post-copy");
	return -ETIMEDOUT;
}

int pc_tgt_missing(struct pc_tgt *pc, struct stream *s, uint32_t len, char *err, size_t errlen)
{
	if (pc->uffd >= 0) {
		snprintf(err, errlen, "protocol error: MISSING after the switch");
		return -EPROTO;
	}
	return pc_missing_recv(s, len, pc->missing, pc->npages, &pc->nmissing, err, errlen);
}

int pc_tgt_arm(struct pc_tgt *pc, bool digest, uint64_t want, char *err, size_t errlen)
{
	uint8_t *ram = pc->vm->ram;
	int ret;

	/* What the target holds of a missing page is stale: dropped, it is
	 * missing for userfaultfd too. In the downtime, so the large runs
	 * are moved aside, not freed (vmm/core/ramdrop.h). */
	for (uint64_t i = bm_next_set(pc->missing, pc->npages, 0); i < pc->npages;) {
		uint64_t e = bm_next_clear(pc->missing, pc->npages, i);
		bool moved;

		ret = ramdrop_range(&pc->drop, i * VM_PAGE_SIZE, (e - i) * VM_PAGE_SIZE, &moved, err,
				    errlen);
		if (ret)
			return ret;
		if (moved && pc->kept) {
			bm_set_range(pc->kept, i, e - i);
			pc->nkept += e - i;
		}
		i = bm_next_set(pc->missing, pc->npages, e);
	}
	pc->digest = digest;
	pc->digest_want = want;
	if (digest) /* the pages already here; the rest add their terms as they land */
		pc->digest_sum = ram_digest_except(ram, pc->npages, pc->missing);
	ret = uffd_open_register(ram, pc->vm->ram_size, &pc->uffd, err, errlen);
	if (!ret)
		ret = pool_start(&pc->fault_thr, 1, pc_fault_main, pc, 0, "pc-fault", err, errlen);
	pc->t_switch = clock_now_ns();
	pthread_mutex_lock(&pc->m->lock);
	pc->m->st.postcopy = true;
	pc->m->st.pc_pages_missing = pc->nmissing;
	pthread_mutex_unlock(&pc->m->lock);
	return ret;
}

static void note_latency(struct pc_tgt *pc, double ms)
{
	if (pc->nlat < PC_MAX_LATENCIES)
		pc->lat[pc->nlat++] = ms;
	if (ms > pc->lat_max)
		pc->lat_max = ms;
	pc->block_ms += ms;
}

/* Books pages [i, i + n) as placed (src their contents, NULL for zero
 * pages; one booked already counts as a duplicate) and frees the threads
 * waiting on them. Returns how many it booked now. */
static uint64_t settle(struct pc_tgt *pc, uint64_t i, uint64_t n, const uint8_t *src,
		       bool requested)
{
	uint64_t now, booked = 0;

	pthread_mutex_lock(&pc->mu);
	/* Under the lock: a fault queued since the copy (it woke that thread
	 * already) then waited 0, not a negative time. */
	now = clock_now_ns();
	for (uint64_t p = i; p < i + n; p++) {
		if (bm_test(pc->placed, p)) {
			pc->dups++;
			continue;
		}
		bm_set(pc->placed, p);
		pc->nplaced++;
		booked++;
		if (requested)
			pc->got_rp++;
		else
			pc->got_push++;
		if (pc->digest)
			pc->digest_sum += ram_digest_term(p, src ? src + (p - i) * VM_PAGE_SIZE : NULL);
	}
	for (int k = 0; k < pc->nw;)
		if (pc->w[k].page >= i && pc->w[k].page < i + n) {
			note_latency(pc, now > pc->w[k].t_ns ? (double)(now - pc->w[k].t_ns) / 1e6 : 0);
			pc->w[k] = pc->w[--pc->nw];
		} else {
			k++;
		}
	pthread_mutex_unlock(&pc->mu);
	return booked;
}

/* One ioctl for [dst, dst + len); a page alone that the kernel asks to
 * try again (EAGAIN, nothing placed: seen while both connections placed)
 * is tried again a few times before that counts as a failure. */
static int fill(struct pc_tgt *pc, uint64_t dst, const uint8_t *src, uint64_t len,
		uint64_t *placed)
{
	int r = 0;

	for (int tries = 0; tries < PC_FILL_TRIES; tries++) {
		r = src ? uffd_copy(pc->uffd, dst, src, len, placed) :
		    uffd_zero(pc->uffd, dst, len, placed);
		if (r != -EAGAIN || *placed || len > VM_PAGE_SIZE)
			break;
		sched_yield();
	}
	return r;
}

int pc_place(struct pc_tgt *pc, uint64_t first, uint64_t count, const uint8_t *data,
	     bool requested, char *err, size_t errlen)
{
	uint8_t *ram = pc->vm->ram;
	uint64_t i = first, end = first + count;
	int ret = 0;
	/* A run failed as a whole: the rest of this call goes page by page. */
	bool alone = false;

	/* A run of missing pages goes in one ioctl; where one of them is
	 * there already (the other connection's copy came first) the kernel
	 * stops the run there, what came before is booked, and the run goes
	 * on from that page, which is booked once whoever placed it. */
	while (i < end) {
		const uint8_t *src = data ? data + (i - first) * VM_PAGE_SIZE : NULL;
		uint64_t dst = (uint64_t)(uintptr_t)(ram + i * VM_PAGE_SIZE), j, placed = 0;
		int r;

		/* Only a missing page may be placed: anything else is the
		 * guest's own now, and the source has no say over it. */
		if (!bm_test(pc->missing, i)) {
			pthread_mutex_lock(&pc->mu);
			pc->dups++;
			pthread_mutex_unlock(&pc->mu);
			i++;
			continue;
		}
		for (j = i + 1; j < end && !alone && bm_test(pc->missing, j); j++)
			;
		r = fill(pc, dst, src, (j - i) * VM_PAGE_SIZE, &placed);
		/* A run may fail where a page would not (one that spans two
		 * mappings: ENOENT; EAGAIN with nothing placed, 3 times in 30
		 * runs of test_postcopy's link cut): page by page from here,
		 * which fails only where the one-page ioctl always did. */
		if (r < 0 && (r != -EAGAIN || !placed) && j - i > 1) {
			alone = true;
			continue;
		}
		if (r < 0 && (r != -EAGAIN || placed < VM_PAGE_SIZE)) {
			snprintf(err, errlen, "%s of pages %llu..%llu: %s", src ? "UFFDIO_COPY" :
				 "UFFDIO_ZEROPAGE", (unsigned long long)i, (unsigned long long)j - 1,
				 strerror(-r));
			ret = r;
			break;
		}
		if (r == 1) {
			/* There already: booked by whoever placed it, or now if
			 * nobody has yet; its contents are these either way (the
			 * source's guest is paused). Booked now, the placement's
			 * own wake may still be to come: wake here. */
			if (settle(pc, i, 1, src, requested))
				(void)uffd_wake(pc->uffd, dst, VM_PAGE_SIZE);
			i++;
			continue;
		}
		settle(pc, i, placed / VM_PAGE_SIZE, src, requested);
		i += placed / VM_PAGE_SIZE;
	}
	/* Also after a failure: what was booked before it may be the last. */
	pc_maybe_done(pc);
	return ret;
}

void pc_maybe_done(struct pc_tgt *pc)
{
	char err[128];
	bool now;
	int ret = 0;

	/* Under the lock: a recovery swaps main under it. PC_DONE and a
	 * stopping VM's ERROR (say_stopped) are the only frames written on
	 * main here, both small. */
	pthread_mutex_lock(&pc->mu);
	now = !pc->done && pc->nplaced == pc->nmissing && stream_is_open(&pc->main);
	if (now) {
		ret = stream_send(&pc->main, ST_PC_DONE, NULL, 0, err, sizeof(err));
		/* Not sent (the link is going): said again after a recovery. */
		pc->done = ret == 0;
	}
	pthread_mutex_unlock(&pc->mu);
	if (ret < 0)
		fprintf(stderr, "minivmm: post-copy: could not tell the source: %s\n", err);
}

void pc_rp_lost(struct pc_tgt *pc, const char *why)
{
	pthread_mutex_lock(&pc->mu);
	pc->rp_ok = false;
	pthread_mutex_unlock(&pc->mu);
	if (!pc->done)
		fprintf(stderr, "minivmm: post-copy: return path lost: %s\n", why);
	/* The receiver notices and pauses the guest. */
	stream_shutdown(&pc->main);
	stream_shutdown(&pc->rp);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

void pc_tgt_publish(struct pc_tgt *pc)
{
	struct stats *st;
	double *c = NULL, p50 = 0, p99 = 0;
	size_t n;

	if (!pc)
		return;
	pthread_mutex_lock(&pc->mu);
	n = pc->nlat;
	if (n && (c = malloc(n * sizeof(double))))
		memcpy(c, pc->lat, n * sizeof(double));
	pthread_mutex_unlock(&pc->mu);
	if (c) {
		qsort(c, n, sizeof(double), cmp_double);
		p50 = c[n / 2];
		p99 = c[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
		free(c);
	}
	pthread_mutex_lock(&pc->mu);
	pthread_mutex_lock(&pc->m->lock);
	st = &pc->m->st;
	st->pc_faults = pc->faults;
	st->pc_refaults = pc->refaults;
	st->pc_pages_requested = pc->got_rp;
	st->pc_pages_pushed = pc->got_push;
	st->pc_pages_delta = pc->got_delta;
	st->pc_fault_p50_ms = p50;
	st->pc_fault_p99_ms = p99;
	st->pc_fault_max_ms = pc->lat_max;
	st->pc_blocktime_ms = pc->block_ms;
	if (pc->vm->console)
		st->guest_console_gap_ms = conline_gap_ms(pc->vm->console);
	st->postcopy_ms = (double)(clock_now_ns() - pc->t_switch) / 1e6;
	pc->m->remaining_pages = pc->nmissing - pc->nplaced;
	pthread_mutex_unlock(&pc->m->lock);
	pthread_mutex_unlock(&pc->mu);
}


