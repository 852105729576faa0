/* The target's post-copy receiver, after COMMIT: places the pushed
 * pages from the main connection, finishes once every page is here
 * (digest, figures, userfaultfd off), and on a lost link pauses the
 * guest and waits for `migrate_recover URI`: the source reconnects with
 * RESUME, is told which pages are still lacking, and the fault thread
 * gets a new return path. */
#include "migrate/postcopy/pc_target_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/mig.h"
#include "migrate/postcopy/pc_wire.h"
#include "migrate/postcopy/uffd.h"
#include "migrate/ram/bitmap.h"
#include "migrate/ram/xbzrle.h"
#include "devices/conline.h"
#include "vmm/core/vm.h"

/* How long a recovery waits for the source on the new address. */
#define PC_RECOVER_ACCEPT_MS 30000
/* How long a lost link's pause waits for the vCPUs to park. */
#define PC_PAUSE_WAIT_MS 200

/* With deltas: frees each piece of the grave that [first, first + n)
 * touches once every page whose stale copy it holds is placed. Only this
 * thread decodes against the grave, so nothing reads a piece it frees. */
static int free_done_pieces(struct pc_tgt *pc, uint64_t first, uint64_t n, char *err,
			    size_t errlen)
{
	const uint64_t per = PC_GRAVE_PIECE_PAGES, words = bm_words(pc->npages);

	for (uint64_t k = first / per; k <= (first + n - 1) / per; k++) {
		uint64_t w0 = k * (per / 64), p0 = k * per, left = 0, any = 0;
		int ret = 0;

		if (bm_test(pc->grave_gone, k))
			continue;
		pthread_mutex_lock(&pc->mu);
		for (uint64_t w = w0; w < w0 + per / 64 && w < words; w++) {
			left |= pc->kept[w] & ~pc->placed[w];
			any |= pc->kept[w];
		}
		pthread_mutex_unlock(&pc->mu);
		if (left)
			continue;
		if (any) /* a piece that kept nothing holds nothing */
			ret = ramdrop_free_range(&pc->drop, p0 * VM_PAGE_SIZE,
						 (pc->npages - p0 < per ? pc->npages - p0 : per) *
						 VM_PAGE_SIZE, err, errlen);
		if (ret)
			return ret;
		bm_set(pc->grave_gone, k);
	}
	return 0;
}

/* Places the n pages decoded into dec from page first on, in one run. */
static int place_decoded(struct pc_tgt *pc, uint64_t first, uint64_t n, const uint8_t *dec,
			 char *err, size_t errlen)
{
	uint64_t before = pc->got_push; /* only this thread places pushed pages */
	int ret;

	if (!n)
		return 0;
	ret = pc_place(pc, first, n, dec, false, err, errlen);
	pthread_mutex_lock(&pc->mu);
	pc->got_delta += pc->got_push - before;
	pthread_mutex_unlock(&pc->mu);
	return ret;
}

/* A delta run: each page decoded against its stale copy in the grave
 * into dec (PC_BATCH_PAGES pages; only a kept page may come so; one
 * placed since is left alone, its copy may be freed), then placed in
 * runs. */
static int place_deltas(struct pc_tgt *pc, const struct page_run *r, const uint8_t *area,
			uint64_t area_len, uint64_t *pos, uint8_t *dec, char *err, size_t errlen)
{
	uint64_t run = r->first, n = 0, p;
	char why[256];
	int ret = 0;

	for (p = r->first; p < r->first + r->count; p++) {
		uint8_t *page = dec + n * VM_PAGE_SIZE;
		const uint8_t *enc;
		uint32_t len;
		bool placed;

		ret = xbzrle_entry_next(area, area_len, pos, &enc, &len, err, errlen);
		if (ret)
			goto bad;
		if (!bm_test(pc->kept, p)) {
			snprintf(err, errlen, "bad PAGES: a delta for page %llu, whose stale copy this "
				 "side did not keep", (unsigned long long)p);
			return -EPROTO;
		}
		pthread_mutex_lock(&pc->mu);
		placed = bm_test(pc->placed, p);
		if (placed)
			pc->dups++;
		pthread_mutex_unlock(&pc->mu);
		if (placed) {
			ret = place_decoded(pc, run, n, dec, err, errlen);
			if (ret)
				return ret;
			n = 0;
			continue;
		}
		if (!n)
			run = p;
		memcpy(page, pc->drop.grave + p * VM_PAGE_SIZE, VM_PAGE_SIZE);
		ret = xbzrle_decode(enc, len, page, err, errlen);
		if (ret)
			goto bad;
		n++;
	}
	return place_decoded(pc, run, n, dec, err, errlen);
bad:
	snprintf(why, sizeof(why), "%s", err);
	snprintf(err, errlen, "bad PAGES: page %llu: %.200s", (unsigned long long)p, why);
	return ret;
}

static int recv_pushed(struct pc_tgt *pc, uint8_t *buf, uint8_t *area, uint8_t *page, char *err,
		       size_t errlen)
{
	struct page_run runs[PC_BATCH_PAGES];
	struct stream_hdr h;
	size_t off = 0;
	uint32_t area_len = 0;
	uint64_t pos = 0;
	int n, ret = stream_recv_hdr(&pc->main, &h, err, errlen);

	if (ret)
		return ret;
	if (h.type == ST_ERROR) {
		char text[TEXT_MAX_LEN + 1];

		if (!stream_recv_text(&pc->main, h.len, text, sizeof(text), err, errlen))
			snprintf(err, errlen, "the source gave up: %.200s", text);
		return -ECONNABORTED;
	}
	if (h.type != ST_PAGES) {
		snprintf(err, errlen, "protocol error: %s from the source in post-copy",
			 stream_type_name(h.type));
		return -EPROTO;
	}
	n = pc_pages_recv(&pc->main, h.len, pc->npages, runs, PC_BATCH_PAGES, buf,
			  pc->delta ? area : NULL, &area_len, err, errlen);
	for (int i = 0; i < n && !ret; i++) {
		bool zero = runs[i].kind == PAGE_RUN_ZERO;

		if (runs[i].kind == PAGE_RUN_DELTA) {
			ret = place_deltas(pc, &runs[i], area, area_len, &pos, page, err, errlen);
			continue;
		}
		ret = pc_place(pc, runs[i].first, runs[i].count, zero ? NULL : buf + off, false,
			       err, errlen);
		if (!zero)
			off += runs[i].count * VM_PAGE_SIZE;
	}
	if (n > 0 && !ret && pos != area_len) {
		snprintf(err, errlen, "bad PAGES: %llu bytes after the last delta entry",
			 (unsigned long long)(area_len - pos));
		ret = -EPROTO;
	}
	for (int i = 0; i < n && !ret && pc->delta; i++)
		ret = free_done_pieces(pc, runs[i].first, runs[i].count, err, errlen);
	return n < 0 ? n : ret;
}

static void set_state(struct pc_tgt *pc, enum mig_state s)
{
	pthread_mutex_lock(&pc->m->lock);
	pc->m->state = s;
	pthread_mutex_unlock(&pc->m->lock);
}

static bool quitting(struct pc_tgt *pc)
{
	bool q;

	pthread_mutex_lock(&pc->mu);
	q = pc->quit;
	pthread_mutex_unlock(&pc->mu);
	return q;
}

/* The source's RESUME within PC_RECOVER_ACCEPT_MS, in short waits so
 * that the VM can still be stopped; a stranger (wrong token, garbage) is
 * dropped and the wait goes on. */
static int accept_resume(struct pc_tgt *pc, struct transport_listener *lst, struct stream *s,
			 char *err, size_t errlen)
{
	uint64_t end = clock_now_ns() + (uint64_t)PC_RECOVER_ACCEPT_MS * 1000000u;

	while (clock_now_ns() < end && !quitting(pc)) {
		int ret = pc_accept_token(lst, 200, ST_RESUME, pc->token, s, err, errlen);

		if (!ret || ret == -ENOMEM || ret == -EBADF)
			return ret;
		if (ret != -ETIMEDOUT && ret != -EINTR)
			fprintf(stderr, "minivmm: post-copy: dropped a connection on the recovery "
				"port: %s\n", err);
	}
	snprintf(err, errlen, quitting(pc) ? "the VM is stopping" :
		 "the source did not come within %d s", PC_RECOVER_ACCEPT_MS / 1000);
	return -ETIMEDOUT;
}

/* The source's RESUME on the new main connection, our answer (what is
 * still lacking, then RESUME), its new return path. */
static int resume_handshake(struct pc_tgt *pc, struct transport_listener *lst, char *err,
			    size_t errlen)
{
	size_t words = bm_words(pc->npages);
	uint64_t *left = calloc(words, 8);
	uint8_t b[RESUME_LEN];
	struct stream s, rp;
	int ret;

	stream_reset(&s);
	stream_reset(&rp);
	if (!left)
		return -ENOMEM;
	ret = accept_resume(pc, lst, &s, err, errlen);
	if (ret)
		goto out;
	pthread_mutex_lock(&pc->mu);
	for (size_t w = 0; w < words; w++)
		left[w] = pc->missing[w] & ~pc->placed[w];
	pthread_mutex_unlock(&pc->mu);
	ret = pc_bitmap_send(&s, ST_MISSING, left, pc->npages, err, errlen);
	le_put64(b, pc->token);
	if (ret >= 0)
		ret = stream_send(&s, ST_RESUME, b, sizeof(b), err, errlen);
	if (!ret)
		ret = pc_accept_token(lst, MIG_IO_TIMEOUT_MS, ST_RETURN_PATH, pc->token, &rp, err,
				   errlen);
	if (ret)
		goto out;
	pthread_mutex_lock(&pc->mu);
	atomic_fetch_add(&pc->bytes_closed, pc->main.bytes_in);
	stream_close(&pc->main);
	pc->main = s;
	stream_reset(&s);
	stream_close(&pc->rp_new);
	pc->rp_new = rp;
	stream_reset(&rp);
	pthread_mutex_unlock(&pc->mu);
	{
		uint64_t one = 1;

		if (write(pc->wake_efd, &one, sizeof(one)) < 0)
			ret = -errno;
	}
out:
	stream_close(&s);
	stream_close(&rp);
	free(left);
	return ret;
}

/* The link is lost: the guest pauses (vCPUs blocked on a fault stay
 * blocked), nothing is discarded, and the operator's migrate_recover
 * gives the address the source will come back to. */
static int recover(struct pc_tgt *pc, const char *why)
{
	struct mig *m = pc->m;
	struct transport_listener lst = { .fd = -1 };
	struct transport_addr a;
	char err[512], uri[512];
	int ret, paused, pause_ms;

	stream_shutdown(&pc->rp);
	set_state(pc, MIG_POSTCOPY_PAUSED);
	/* A vCPU blocked on a missing page cannot park until the page comes
	 * (on kvm_pvm a kick does not end that wait): the pause counts at
	 * once and such a vCPU parks when it is released, so there is no
	 * point in waiting the usual 5 s for it. */
	pause_ms = pc->vm->pause_timeout_ms;
	pc->vm->pause_timeout_ms = PC_PAUSE_WAIT_MS;
	paused = vm_pause(pc->vm);
	pc->vm->pause_timeout_ms = pause_ms;
	pthread_mutex_lock(&pc->mu);
	fprintf(stderr, "minivmm: post-copy: the link to the source is lost (%s); the guest is "
		"paused here with %llu of its pages still on the source (it is lost if the "
		"source is gone); `migrate_recover URI` here and `migrate URI` on the source "
		"resume%s\n", why, (unsigned long long)(pc->nmissing - pc->nplaced),
		paused ? " (a vCPU waits on a missing page)" : "");
	pthread_mutex_unlock(&pc->mu);
	pthread_mutex_lock(&m->lock);
	snprintf(m->st.error, sizeof(m->st.error), "post-copy link lost: %s", why);
	pthread_mutex_unlock(&m->lock);
	for (;;) {
		pthread_mutex_lock(&m->lock);
		while (!m->recover_pending && !pc->quit)
			pthread_cond_wait(&m->cond, &m->lock);
		snprintf(uri, sizeof(uri), "%s", m->recover_uri);
		pthread_mutex_unlock(&m->lock);
		if (quitting(pc))
			return -ECANCELED;
		ret = transport_parse(uri, true, &a, err, sizeof(err));
		if (!ret)
			ret = transport_listen(&a, &lst, err, sizeof(err));
		if (!ret) {
			fprintf(stderr, "minivmm: post-copy: waiting for the source on %s\n", uri);
			ret = resume_handshake(pc, &lst, err, sizeof(err));
		}
		transport_listener_close(&lst);
		pthread_mutex_lock(&m->lock);
		m->recover_pending = false;
		if (!ret) {
			m->state = MIG_POSTCOPY;
			m->st.pc_recoveries++;
			m->st.error[0] = 0;
		}
		pthread_mutex_unlock(&m->lock);
		if (!ret)
			break;
		fprintf(stderr, "minivmm: post-copy recovery on %s failed: %s; still paused\n", uri,
			err);
	}
	stream_set_timeout(&pc->main, MIG_IO_TIMEOUT_MS);
	pc_maybe_done(pc); /* every page may have come before the link went */
	vm_resume(pc->vm);
	fprintf(stderr, "minivmm: post-copy resumed on %s; the guest runs again\n", uri);
	return 0;
}

static void finish(struct pc_tgt *pc)
{
	struct mig *m = pc->m;
	char err[256];
	uint64_t one = 1;

	pthread_mutex_lock(&pc->mu);
	pc->quit = true;
	pthread_mutex_unlock(&pc->mu);
	if (write(pc->wake_efd, &one, sizeof(one)) < 0)
		stream_shutdown(&pc->rp);
	pool_join(&pc->fault_thr);
	uffd_close(pc->uffd, pc->vm->ram, pc->vm->ram_size);
	pc->uffd = -1;
	pc_tgt_publish(pc);
	pthread_mutex_lock(&m->lock);
	m->state = MIG_COMPLETED;
	m->st.total_ms = (double)(clock_now_ns() - m->t0_ns) / 1e6;
	m->st.bytes_total = m->in.bytes_in + m->chan_bytes_in + pc->main.bytes_in +
			    pc->rp.bytes_in + atomic_load(&pc->bytes_closed);
	pthread_mutex_unlock(&m->lock);
	if (pc->digest && pc->digest_sum != pc->digest_want)
		fprintf(stderr, "minivmm: RAM digest mismatch after post-copy: source %016llx, "
			"target %016llx\n", (unsigned long long)pc->digest_want,
			(unsigned long long)pc->digest_sum);
	else if (pc->digest)
		fprintf(stderr, "minivmm: RAM digest verified: %016llx\n",
			(unsigned long long)pc->digest_sum);
	fprintf(stderr, "minivmm: post-copy completed: %llu pages in %.0f ms (%llu requested, "
		"%llu pushed; %llu faults waited: p50 %.2f ms, p99 %.2f ms, max %.2f ms, "
		"blocktime %.1f ms)\n", (unsigned long long)m->st.pc_pages_missing,
		m->st.postcopy_ms, (unsigned long long)m->st.pc_pages_requested,
		(unsigned long long)m->st.pc_pages_pushed, (unsigned long long)m->st.pc_faults,
		m->st.pc_fault_p50_ms, m->st.pc_fault_p99_ms, m->st.pc_fault_max_ms,
		m->st.pc_blocktime_ms);
	m->st.result = STATS_COMPLETED;
	if (pc->vm->console) { /* every page is here: the window closes */
		conline_gap_stop(pc->vm->console);
		m->st.guest_console_gap_ms = conline_gap_ms(pc->vm->console);
	}
	if (m->in_stats[0] && stats_write_json(&m->st, m->in_stats, err, sizeof(err)) < 0)
		fprintf(stderr, "minivmm: %s\n", err);
}

/* Frees the stale copies the switch moved aside, at the lowest priority:
 * the guest runs meanwhile and nothing waits for it. */
static void *grave_main(void *arg)
{
	struct pc_tgt *pc = arg;

	mig_thread_nice(19);
	ramdrop_free(&pc->drop);
	return NULL;
}

static void *recv_main(void *arg)
{
	struct pc_tgt *pc = arg;
	uint8_t *buf = aligned_alloc(VM_PAGE_SIZE, PC_BATCH_PAGES * VM_PAGE_SIZE);
	uint8_t *area = pc->delta ? malloc(PC_BATCH_PAGES * VM_PAGE_SIZE) : NULL;
	uint8_t *page = pc->delta ? aligned_alloc(VM_PAGE_SIZE, PC_BATCH_PAGES * VM_PAGE_SIZE)
				  : NULL;
	char err[256];

	if (!buf || (pc->delta && (!area || !page))) {
		/* No receiver: the guest would wait on the push forever. */
		fprintf(stderr, "minivmm: post-copy receiver: out of memory\n");
		free(buf);
		free(area);
		free(page);
		pc_rp_lost(pc, "the receiver has no memory");
		return NULL;
	}
	pc_maybe_done(pc); /* nothing was missing */
	for (;;) {
		int ret = recv_pushed(pc, buf, area, page, err, sizeof(err));
		bool done;

		pthread_mutex_lock(&pc->mu);
		done = pc->done;
		pthread_mutex_unlock(&pc->mu);
		if (done && ret) /* the source closed after PC_DONE */
			break;
		if (ret && (quitting(pc) || recover(pc, err)))
			break;
	}
	if (!quitting(pc))
		finish(pc);
	if (pc->delta) /* every page is here: no base is needed any more */
		(void)grave_main(pc);
	free(buf);
	free(area);
	free(page);
	return NULL;
}

int pc_tgt_run(struct pc_tgt *pc, struct stream *s, char *err, size_t errlen)
{
	int ret;

	pc->main = *s;
	stream_reset(s);
	pc->main.intr_fd = -1;
	pc->main.cancel_fd = -1;
	stream_set_frame_ms(&pc->main, 0);
	pc->t_commit = clock_now_ns();
	set_state(pc, MIG_POSTCOPY);
	ret = pool_start(&pc->recv_thr, 1, recv_main, pc, 0, "pc-recv", err, errlen);
	/* Without the thread, destroy frees the grave; with deltas the
	 * receiver does, as the bases are used up. */
	if (!ret && !pc->delta &&
	    pool_start(&pc->grave_thr, 1, grave_main, pc, 0, "pc-grave", err, errlen))
		pool_join(&pc->grave_thr);
	return ret;
}

/* The VM stops here (guest exit, quit, a signal, an error) before every
 * page came: the source's copy can no longer serve anyone, so it is told
 * (ERROR on main, ahead of the close) instead of being left paused for a
 * recovery that cannot come. Best effort: a lost link says nothing. */
static void say_stopped(struct pc_tgt *pc)
{
	static const char *const why[] = {
		[VM_EXIT_GUEST] = "the guest exited", [VM_EXIT_SIGNAL] = "a signal",
		[VM_EXIT_QUIT] = "quit", [VM_EXIT_ERROR] = "an error",
	};
	enum vm_stop_reason r = pc->vm->stop_reason;
	char text[160];

	snprintf(text, sizeof(text), "the VM stopped on the target during post-copy (%s): "
		 "the pages it still lacked are no use now",
		 r < sizeof(why) / sizeof(why[0]) && why[r] ? why[r] : "stopped");
	pthread_mutex_lock(&pc->mu);
	/* The frame is small and nothing else goes this way but PC_DONE:
	 * the send buffer has room, the stream's own timeout bounds it. */
	if (!pc->done && stream_is_open(&pc->main))
		(void)stream_send_text(&pc->main, ST_ERROR, text);
	pthread_mutex_unlock(&pc->mu);
}

void pc_tgt_destroy(struct pc_tgt *pc)
{
	uint64_t one = 1;

	if (!pc)
		return;
	say_stopped(pc);
	pthread_mutex_lock(&pc->m->lock);
	pthread_mutex_lock(&pc->mu);
	pc->quit = true;
	pthread_mutex_unlock(&pc->mu);
	pthread_cond_broadcast(&pc->m->cond);
	pthread_mutex_unlock(&pc->m->lock);
	if (pc->wake_efd >= 0 && write(pc->wake_efd, &one, sizeof(one)) < 0)
		stream_shutdown(&pc->rp);
	stream_shutdown(&pc->main);
	pool_join(&pc->recv_thr);
	pool_join(&pc->fault_thr);
	pool_join(&pc->grave_thr);
	ramdrop_free(&pc->drop); /* if no thread did */
	/* Closing it releases any thread still waiting on a fault. */
	uffd_close(pc->uffd, pc->vm->ram, pc->vm->ram_size);
	stream_close(&pc->main);
	stream_close(&pc->rp);
	stream_close(&pc->rp_new);
	if (pc->wake_efd >= 0)
		close(pc->wake_efd);
	pthread_mutex_destroy(&pc->mu);
	free(pc->missing);
	free(pc->placed);
	free(pc->requested);
	free(pc->kept);
	free(pc->grave_gone);
	free(pc->lat);
	free(pc);
}
