/* Page sender. Pages go out as PAGES frames: a run table, then the
 * contents of the normal runs, written with one sendmsg() straight from
 * guest RAM (one iovec per run of contiguous pages, no copy). A batch
 * holds up to PAGES_MAX_RUNS runs or SEND_BATCH_PAGES pages. 1 MiB keeps
 * the receiver busy while the next batch is scanned; bigger batches made
 * no migration faster and lengthened the guest's stall (the figures:
 * docs/migration.md, "Phases", step 5). */
#include "vmm/core/clock.h"
#include "migrate/ram/ram.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "migrate/ram/bitmap.h"
#include "migrate/ram/xbzrle.h"
#include "migrate/policy/estimator.h"

/* Pages looked at per step: the manual-protect clear granularity (must be
 * a multiple of 64). 32 Ki pages = 128 MiB. */
#define CHUNK_PAGES RAM_SEND_RANGE_MAX
#define STOP_PIECE_PAGES 256u /* 1 MiB */
#define SEND_BATCH_PAGES 256u
_Static_assert(SEND_BATCH_PAGES <= PAGES_MAX_DATA_PAGES, "batch above the stream's limit");

void ram_send_init(struct ram_sender *rs, struct vm *vm, struct stream *s,
		   const volatile int *cancel, struct est_rate *rate)
{
	memset(rs, 0, sizeof(*rs));
	rs->vm = vm;
	rs->s = s;
	rs->npages = vm->ram_size / VM_PAGE_SIZE;
	rs->cancel = cancel;
	rs->rate = rate;
}

int ram_send_set_xbz(struct ram_sender *rs, struct xbz_cache *c, char *err, size_t errlen)
{
	rs->snap = malloc(SEND_BATCH_PAGES * VM_PAGE_SIZE);
	rs->dbuf = malloc(SEND_BATCH_PAGES * VM_PAGE_SIZE);
	if (!rs->snap || !rs->dbuf) {
		ram_send_fini(rs);
		snprintf(err, errlen, "delta encoding buffers: out of memory");
		return -ENOMEM;
	}
	rs->xbz = c;
	return 0;
}

void ram_send_fini(struct ram_sender *rs)
{
	free(rs->snap);
	free(rs->dbuf);
	rs->snap = rs->dbuf = NULL;
	rs->xbz = NULL;
}

int ram_send_flush(struct ram_sender *rs, char *err, size_t errlen)
{
	uint8_t *p = rs->tbl;
	uint64_t len;
	int ret, niov = 1;

	if (!rs->nruns)
		return 0;
	if (rs->cancel && *rs->cancel) {
		snprintf(err, errlen, "cancelled");
		return -ECANCELED;
	}
	len = PAGES_HDR_LEN + (uint64_t)rs->nruns * PAGE_RUN_LEN;
	le_put32(p + STREAM_HDR_LEN, rs->nruns);
	le_put32(p + STREAM_HDR_LEN + 4, 0);
	for (uint32_t i = 0; i < rs->nruns; i++) {
		const struct page_run *r = &rs->runs[i];

		stream_run_encode(p + STREAM_HDR_LEN + PAGES_HDR_LEN + i * PAGE_RUN_LEN, r);
		if (r->kind == PAGE_RUN_NORMAL) {
			rs->iov[niov++] = (struct iovec){
				.iov_base = rs->run_src[i] ? rs->run_src[i] :
					    rs->vm->ram + r->first * VM_PAGE_SIZE,
				.iov_len = r->count * VM_PAGE_SIZE,
			};
			len += r->count * VM_PAGE_SIZE;
		}
	}
	/* Delta entries after all normal contents (docs/migration-stream.md). */
	if (rs->dlen) {
		rs->iov[niov++] = (struct iovec){ .iov_base = rs->dbuf, .iov_len = rs->dlen };
		len += rs->dlen;
	}
	stream_hdr_encode(p, ST_PAGES, (uint32_t)len);
	rs->iov[0] = (struct iovec){ .iov_base = p,
		.iov_len = STREAM_HDR_LEN + PAGES_HDR_LEN + rs->nruns * PAGE_RUN_LEN };
	ret = stream_writev_all(rs->s, rs->iov, niov, err, errlen);
	if (ret)
		return ret;
	if (rs->live_bytes)
		atomic_fetch_add(rs->live_bytes, len + STREAM_HDR_LEN);
	if (rs->rate) {
		uint64_t ns;

		/* Channels share one limit: the account is quick, the sleep
		 * happens outside the lock. */
		if (rs->rate_lock)
			pthread_mutex_lock(rs->rate_lock);
		ns = est_rate_account(rs->rate, len + STREAM_HDR_LEN, clock_now_ns());
		if (rs->rate_lock)
			pthread_mutex_unlock(rs->rate_lock);

		if (ns)
			clock_sleep_ns(ns);
	}
	rs->nruns = rs->data_pages = 0;
	rs->snap_pages = rs->dlen = 0;
	return 0;
}

/* Queues [first, first + count) of one kind, merging with the last run
 * and splitting at the batch limits. */
/* Under --max-bandwidth a batch is at most ~100 ms of the limit, so the
 * limiter's sleeps stay short (cancel and progress are seen between
 * batches) instead of one long pause after each 16 MiB. */
static uint32_t batch_pages(const struct ram_sender *rs)
{
	uint64_t p;

	if (!rs->rate || !rs->rate->rate)
		return SEND_BATCH_PAGES;
	p = rs->rate->rate / 10 / VM_PAGE_SIZE;
	return p < 16 ? 16 : p > SEND_BATCH_PAGES ? SEND_BATCH_PAGES : (uint32_t)p;
}

/* One normal page with the delta cache on: a stable copy of it goes into
 * the cache, and out as a delta against what the cache held for it when
 * that is shorter, else whole (from the copy, not from guest RAM, which
 * may differ by now). */
static int add_page_xbz(struct ram_sender *rs, uint64_t page, char *err, size_t errlen)
{
	struct page_run *last;
	uint8_t *snap;
	uint32_t kind;
	uint64_t t;
	int n, miss, ret;

	if (rs->data_pages >= rs->batch_max || rs->nruns == PAGES_MAX_RUNS) {
		ret = ram_send_flush(rs, err, errlen);
		if (ret)
			return ret;
	}
	snap = rs->snap + (uint64_t)rs->snap_pages * VM_PAGE_SIZE;
	memcpy(snap, rs->vm->ram + page * VM_PAGE_SIZE, VM_PAGE_SIZE);
	t = clock_now_ns();
	n = xbz_cache_put(rs->xbz, page, snap, rs->dbuf + rs->dlen + PAGE_DELTA_HDR, &miss);
	rs->xbz_ns += clock_now_ns() - t;
	rs->xbz_misses += miss;
	if (n >= 0) {
		le_put16(rs->dbuf + rs->dlen, (uint16_t)n);
		rs->dlen += PAGE_DELTA_HDR + (uint32_t)n;
		rs->xbz_pages++;
		rs->xbz_saved += VM_PAGE_SIZE - PAGE_DELTA_HDR - (uint64_t)n;
		kind = PAGE_RUN_DELTA;
	} else {
		rs->snap_pages++;
		kind = PAGE_RUN_NORMAL;
	}
	rs->data_pages++;
	rs->pages_normal++;
	last = rs->nruns ? &rs->runs[rs->nruns - 1] : NULL;
	if (last && last->kind == kind && last->first + last->count == page &&
	    (kind == PAGE_RUN_DELTA ||
	     rs->run_src[rs->nruns - 1] + (uint64_t)last->count * VM_PAGE_SIZE == snap)) {
		last->count++;
		return 0;
	}
	rs->run_src[rs->nruns] = kind == PAGE_RUN_NORMAL ? snap : NULL;
	rs->runs[rs->nruns++] = (struct page_run){ .first = page, .count = 1, .kind = kind };
	return 0;
}

static int add_run(struct ram_sender *rs, uint64_t first, uint64_t count,
		   uint32_t kind, char *err, size_t errlen)
{
	if (rs->xbz && kind == PAGE_RUN_NORMAL) {
		for (uint64_t i = 0; i < count; i++) {
			int ret = add_page_xbz(rs, first + i, err, errlen);

			if (ret)
				return ret;
		}
		return 0;
	}
	if (rs->xbz)
		for (uint64_t i = 0; i < count; i++)
			xbz_cache_forget(rs->xbz, first + i);

	while (count) {
		struct page_run *last = rs->nruns ? &rs->runs[rs->nruns - 1] : NULL;
		uint64_t n = count;
		int ret;

		if (kind == PAGE_RUN_NORMAL) {
			if (rs->data_pages >= rs->batch_max) {
				ret = ram_send_flush(rs, err, errlen);
				if (ret)
					return ret;
				continue;
			}
			if (n > rs->batch_max - rs->data_pages)
				n = rs->batch_max - rs->data_pages;
			rs->data_pages += (uint32_t)n;
		} else if (n > UINT32_MAX) {
			n = UINT32_MAX;
		}
		if (last && last->kind == kind && last->first + last->count == first &&
		    last->count + n <= UINT32_MAX) {
			last->count += (uint32_t)n;
		} else {
			if (rs->nruns == PAGES_MAX_RUNS) {
				if (kind == PAGE_RUN_NORMAL)
					rs->data_pages -= (uint32_t)n;
				ret = ram_send_flush(rs, err, errlen);
				if (ret)
					return ret;
				continue;
			}
			rs->run_src[rs->nruns] = NULL;
			rs->runs[rs->nruns++] = (struct page_run){
				.first = first, .count = (uint32_t)n, .kind = kind };
		}
		if (kind == PAGE_RUN_NORMAL)
			rs->pages_normal += n;
		else
			rs->pages_zero += n;
		first += n;
		count -= n;
	}
	return 0;
}

/* Pages [i, j) of the range, all populated: zero runs as markers, the
 * rest with contents, in pieces, so that a stop (post-copy switch) is
 * seen within a batch or so; sent_bm marks exactly what was queued. */
static int send_populated(struct ram_sender *rs, uint64_t i, uint64_t j, char *err,
			  size_t errlen)
{
	uint8_t *ram = rs->vm->ram;

	while (i < j) {
		uint32_t kind = ram_page_is_zero(ram + i * VM_PAGE_SIZE) ? PAGE_RUN_ZERO :
				PAGE_RUN_NORMAL;
		uint64_t e = i + 1;
		int ret;

		while (e < j && e - i < STOP_PIECE_PAGES &&
		       ram_page_is_zero(ram + e * VM_PAGE_SIZE) == (kind == PAGE_RUN_ZERO))
			e++;
		if (rs->stop && *rs->stop)
			return 1;
		if (rs->tick)
			rs->tick(rs->tick_arg);
		ret = add_run(rs, i, e - i, kind, err, errlen);
		if (ret)
			return ret;
		if (rs->sent_bm)
			/* read meanwhile by the throttle's looks (ram_dirty_debt) */
			bm_set_range_atomic(rs->sent_bm, i, e - i);
		i = e;
	}
	return 0;
}

int ram_send_all_range(struct ram_sender *rs, struct ram_dirty *d, uint64_t base,
		       uint64_t n, char *err, size_t errlen)
{
	const struct resident *res = &d->res;
	uint64_t end = base + n, done = base;
	size_t k;
	int ret;

	if (n > CHUNK_PAGES || base > rs->npages || n > rs->npages - base || base % 64) {
		snprintf(err, errlen, "ram_send_all_range: bad range");
		return -EINVAL;
	}
	rs->batch_max = batch_pages(rs);
	/* Pages populated after d->res was taken are written after logging
	 * went on, so a later round has them: skipping them here is safe. */
	k = resident_find(res, base);
	if (d->init_set && k < res->n && res->r[k].first < end) {
		/* Their KVM bits are the initial ones: clear (write-protect)
		 * them before reading, so a write from now on is seen. */
		uint64_t bits[CHUNK_PAGES / 64] = { 0 };

		for (size_t i = k; i < res->n && res->r[i].first < end; i++) {
			uint64_t a = res->r[i].first > base ? res->r[i].first : base;
			uint64_t b = res->r[i].first + res->r[i].count;

			bm_set_range(bits, a - base, (b < end ? b : end) - a);
		}
		ret = ram_dirty_clear_bits(rs->vm, d, base, n, bits, err, errlen);
		if (ret)
			return ret;
	}
	for (; k < res->n && res->r[k].first < end; k++) {
		uint64_t a = res->r[k].first > base ? res->r[k].first : base;
		uint64_t b = res->r[k].first + res->r[k].count;

		if (b > end)
			b = end;
		if (rs->stop && *rs->stop) /* the rest is not covered (sent_bm) */
			return 0;
		rs->pages_skipped += a - done;
		ret = send_populated(rs, a, b, err, errlen);
		if (ret)
			return ret < 0 ? ret : 0;
		done = b;
	}
	rs->pages_skipped += end - done;
	return 0;
}

int ram_send_all(struct ram_sender *rs, struct ram_dirty *d, char *err,
		 size_t errlen)
{
	int ret;

	for (uint64_t base = 0; base < rs->npages && !(rs->stop && *rs->stop);
	     base += CHUNK_PAGES) {
		uint64_t n = rs->npages - base < CHUNK_PAGES ? rs->npages - base : CHUNK_PAGES;

		ret = ram_send_all_range(rs, d, base, n, err, errlen);
		if (ret)
			return ret;
	}
	return ram_send_flush(rs, err, errlen);
}

int ram_send_dirty_range(struct ram_sender *rs, struct ram_dirty *d, uint64_t base,
			 uint64_t n, char *err, size_t errlen)
{
	uint64_t end = base + n, i;
	int ret;

	if (base > rs->npages || n > rs->npages - base) {
		snprintf(err, errlen, "ram_send_dirty_range: bad range");
		return -EINVAL;
	}
	rs->batch_max = batch_pages(rs);
	i = bm_next_set(d->bm, end, base);
	if (i >= end)
		return 0;
	/* Re-protect before reading: a write from now on is seen by the
	 * next sync. */
	ret = ram_dirty_clear(rs->vm, d, base, n, err, errlen);
	if (ret)
		return ret;
	while (i < end) {
		uint64_t j = bm_next_clear(d->bm, end, i);

		ret = add_run(rs, i, j - i, PAGE_RUN_NORMAL, err, errlen);
		if (ret)
			return ret;
		i = bm_next_set(d->bm, end, j);
	}
	bm_clear_range(d->bm, base, n);
	return 0;
}

int ram_send_page(struct ram_sender *rs, uint64_t page, char *err, size_t errlen)
{
	if (page >= rs->npages) {
		snprintf(err, errlen, "ram_send_page: page %llu out of range",
			 (unsigned long long)page);
		return -EINVAL;
	}
	rs->batch_max = batch_pages(rs);
	return add_run(rs, page, 1, PAGE_RUN_NORMAL, err, errlen);
}

int ram_send_dirty(struct ram_sender *rs, struct ram_dirty *d, char *err,
		   size_t errlen)
{
	int ret;

	/* Stopped between chunks, the pages left stay in d->bm. */
	for (uint64_t base = 0; base < rs->npages && !(rs->stop && *rs->stop);
	     base += CHUNK_PAGES) {
		uint64_t n = base + CHUNK_PAGES < rs->npages ? CHUNK_PAGES : rs->npages - base;

		ret = ram_send_dirty_range(rs, d, base, n, err, errlen);
		if (ret)
			return ret;
	}
	return ram_send_flush(rs, err, errlen);
}
