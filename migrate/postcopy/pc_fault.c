/* The target's fault thread: every fault on guest RAM (a vCPU through
 * KVM, or a VMM thread touching a virtqueue or the console) arrives
 * here. A page the source never had to send (not in MISSING) is zeroed
 * at once; a missing one is asked for on the return path, whose replies
 * this thread also places, so a request never waits behind the bulk
 * push on the main connection. It takes no lock a faulting thread could
 * hold (only pc->mu, which no thread holds across guest memory access). */
#include "migrate/postcopy/pc_target_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/postcopy/pc_wire.h"
#include "migrate/postcopy/uffd.h"
#include "migrate/ram/bitmap.h"
#include "vmm/core/clock.h"
#include "vmm/core/vm.h"

static int request(struct pc_tgt *pc, uint64_t page, char *err, size_t errlen)
{
	uint8_t b[PAGE_REQ_LEN];

	le_put64(b, page);
	le_put32(b + 8, 1);
	return stream_send(&pc->rp, ST_PAGE_REQ, b, sizeof(b), err, errlen);
}

/* Whether thread tid already waits on page (a fault the kernel retried:
 * it re-delivers one while the thread has a signal pending). */
static bool waiting(const struct pc_tgt *pc, uint64_t page, uint32_t tid)
{
	for (int i = 0; i < pc->nw; i++)
		if (pc->w[i].page == page && pc->w[i].tid == tid)
			return true;
	return false;
}

static int on_fault(struct pc_tgt *pc, uint64_t addr, uint32_t tid, char *err, size_t errlen)
{
	uint64_t off = addr - (uint64_t)(uintptr_t)pc->vm->ram, page = off / VM_PAGE_SIZE;
	bool ask = false;

	if (addr < (uint64_t)(uintptr_t)pc->vm->ram || page >= pc->npages)
		return 0;
	pthread_mutex_lock(&pc->mu);
	if (!bm_test(pc->missing, page)) {
		/* Never sent because the source never had it: zero. */
		pc->zero_faults++;
		pthread_mutex_unlock(&pc->mu);
		if (uffd_zero(pc->uffd, addr, VM_PAGE_SIZE, NULL) == 1)
			uffd_wake(pc->uffd, addr, VM_PAGE_SIZE);
		return 0;
	}
	if (bm_test(pc->placed, page)) {
		pthread_mutex_unlock(&pc->mu);
		return uffd_wake(pc->uffd, addr, VM_PAGE_SIZE) < 0 ? 0 : 0;
	}
	if (waiting(pc, page, tid)) {
		pc->refaults++;
	} else {
		if (pc->nw < PC_MAX_WAITERS)
			pc->w[pc->nw++] = (struct pc_waiter){ .page = page, .tid = tid,
							      .t_ns = clock_now_ns() };
		pc->faults++;
	}
	if (pc->rp_ok && !bm_test(pc->requested, page)) {
		bm_set(pc->requested, page);
		pc->req_pages++;
		ask = true;
	}
	pthread_mutex_unlock(&pc->mu);
	return ask ? request(pc, page, err, errlen) : 0;
}

/* A reply on the return path: pages (placed), or the source's ERROR for
 * a request it refused. */
static int on_reply(struct pc_tgt *pc, uint8_t *buf, char *err, size_t errlen)
{
	struct page_run runs[PC_BATCH_PAGES];
	struct stream_hdr h;
	int n, ret = stream_recv_hdr(&pc->rp, &h, err, errlen);
	size_t off = 0;

	if (ret)
		return ret;
	if (h.type == ST_ERROR) {
		char text[TEXT_MAX_LEN + 1];

		ret = stream_recv_text(&pc->rp, h.len, text, sizeof(text), err, errlen);
		if (!ret)
			fprintf(stderr, "minivmm: post-copy: the source refused a request: %s\n", text);
		return ret;
	}
	if (h.type != ST_PAGES) {
		snprintf(err, errlen, "protocol error: %s on the return path",
			 stream_type_name(h.type));
		return -EPROTO;
	}
	n = pc_pages_recv(&pc->rp, h.len, pc->npages, runs, PC_BATCH_PAGES, buf, NULL, NULL, err,
			  errlen);
	for (int i = 0; i < n && !ret; i++) {
		bool zero = runs[i].kind == PAGE_RUN_ZERO;

		ret = pc_place(pc, runs[i].first, runs[i].count, zero ? NULL : buf + off, true,
			       err, errlen);
		if (!zero)
			off += runs[i].count * VM_PAGE_SIZE;
	}
	return n < 0 ? n : ret;
}

/* A recovered return path: the pages still awaited are asked again. */
static int take_new_rp(struct pc_tgt *pc, char *err, size_t errlen)
{
	uint64_t pages[PC_MAX_WAITERS];
	int n = 0, ret = 0;

	pthread_mutex_lock(&pc->mu);
	if (!stream_is_open(&pc->rp_new)) {
		pthread_mutex_unlock(&pc->mu);
		return 0;
	}
	atomic_fetch_add(&pc->bytes_closed, pc->rp.bytes_in);
	stream_close(&pc->rp);
	pc->rp = pc->rp_new;
	stream_reset(&pc->rp_new);
	pc->rp_ok = true;
	memset(pc->requested, 0, bm_words(pc->npages) * 8);
	for (int i = 0; i < pc->nw; i++)
		if (!bm_test(pc->requested, pc->w[i].page)) {
			bm_set(pc->requested, pc->w[i].page);
			pages[n++] = pc->w[i].page;
		}
	pthread_mutex_unlock(&pc->mu);
	for (int i = 0; i < n && !ret; i++)
		ret = request(pc, pages[i], err, errlen);
	return ret;
}

void *pc_fault_main(void *arg)
{
	struct pc_tgt *pc = arg;
	uint8_t *buf = aligned_alloc(VM_PAGE_SIZE, PC_BATCH_PAGES * VM_PAGE_SIZE);
	char err[256];

	if (!buf) {
		pc_rp_lost(pc, "fault thread: out of memory");
		return NULL;
	}
	/* Before any request: which stale copies the push may send deltas
	 * against (the source sends whole pages until it knows). */
	if (pc->nkept && pc_bitmap_send(&pc->rp, ST_PC_KEPT, pc->kept, pc->npages, err,
					sizeof(err)) < 0)
		pc_rp_lost(pc, err);
	for (;;) {
		struct pollfd p[3] = { { .fd = pc->uffd, .events = POLLIN },
				       { .fd = pc->wake_efd, .events = POLLIN },
				       { .fd = pc->rp_ok ? pc->rp.conn.fd : -1, .events = POLLIN } };
		int ret = 0;

		if (poll(p, 3, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents) {
			uint64_t v;

			if (read(pc->wake_efd, &v, sizeof(v)) < 0) {
				/* spurious */
			}
			pthread_mutex_lock(&pc->mu);
			if (pc->quit) {
				pthread_mutex_unlock(&pc->mu);
				break;
			}
			pthread_mutex_unlock(&pc->mu);
			ret = take_new_rp(pc, err, sizeof(err));
		}
		while (!ret && p[0].revents) {
			uint64_t addr;
			uint32_t tid;
			int r = uffd_read_fault(pc->uffd, &addr, &tid);

			if (r <= 0)
				break;
			ret = on_fault(pc, addr, tid, err, sizeof(err));
		}
		if (!ret && pc->rp_ok && p[2].revents)
			ret = on_reply(pc, buf, err, sizeof(err));
		if (ret && pc->rp_ok)
			pc_rp_lost(pc, err);
	}
	free(buf);
	return NULL;
}
