/* Page receiver: reads the run table of a PAGES frame, checks every run
 * against guest RAM (stream_pages_decode), then reads the contents with
 * readv straight into guest RAM. Nothing touches RAM before the whole
 * table has been checked.
 *
 * Prefault helpers: the target's guest RAM is fresh, and on a host that
 * takes freed memory back the first write to a fresh page (kernel zeroing,
 * plus the host backing the page) can cost more than receiving it
 * (docs/migration.md, "Throughput"). A readv that faults pages in one by one does that work
 * serially; helper threads populate the frame's runs (MADV_POPULATE_WRITE,
 * 2 MiB slices, from the back while readv fills from the front) so the
 * first touches happen in parallel with the copy. Only pages the frame
 * announced are populated, so nothing the source skipped becomes
 * resident. Populating never changes a present page: a helper racing
 * readv or a zero run's MADV_DONTNEED leaves either the received data or
 * zeros, both right. */
#include "migrate/ram/ram.h"
#include "migrate/ram/xbzrle.h"
#include "vmm/core/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels say EINVAL */
#endif

#define PF_SLICE_PAGES 512u /* 2 MiB: a helper's unit of work */
#define PF_MAX_SLICES (PAGES_MAX_DATA_PAGES / PF_SLICE_PAGES + PAGES_MAX_RUNS)

struct pf_slice {
	uint64_t first, count;
};

struct ram_prefault {
	struct vm *vm;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool quit, broken;
	uint32_t nslices, next;     /* the current frame's work, taken in order */
	struct pf_slice sl[PF_MAX_SLICES];
	struct pool workers;
};

static void *pf_main(void *arg)
{
	struct ram_prefault *pf = arg;

	for (;;) {
		struct pf_slice w;

		pthread_mutex_lock(&pf->mu);
		while (!pf->quit && pf->next >= pf->nslices)
			pthread_cond_wait(&pf->cv, &pf->mu);
		if (pf->quit) {
			pthread_mutex_unlock(&pf->mu);
			return NULL;
		}
		w = pf->sl[pf->next++];
		pthread_mutex_unlock(&pf->mu);
		/* Best effort: on failure (old kernel, memory pressure) readv
		 * faults the pages in itself, as without helpers. */
		if (madvise(pf->vm->ram + w.first * VM_PAGE_SIZE, w.count * VM_PAGE_SIZE,
			    MADV_POPULATE_WRITE) < 0 && errno == EINVAL) {
			pthread_mutex_lock(&pf->mu);
			pf->broken = true;
			pthread_mutex_unlock(&pf->mu);
		}
	}
}

int ram_prefault_start(struct ram_prefault **out, struct vm *vm, int nthreads,
		       char *err, size_t errlen)
{
	struct ram_prefault *pf;
	int ret;

	*out = NULL;
	if (nthreads <= 0)
		return 0;
	pf = calloc(1, sizeof(*pf));
	if (!pf) {
		snprintf(err, errlen, "calloc(prefault): out of memory");
		return -ENOMEM;
	}
	pf->vm = vm;
	pthread_mutex_init(&pf->mu, NULL);
	pthread_cond_init(&pf->cv, NULL);
	if (nthreads > RAM_PREFAULT_MAX_THREADS)
		nthreads = RAM_PREFAULT_MAX_THREADS;
	ret = pool_start(&pf->workers, nthreads, pf_main, pf, 0, "prefault", err, errlen);
	if (ret) {
		ram_prefault_stop(pf);
		return ret;
	}
	*out = pf;
	return 0;
}

void ram_prefault_stop(struct ram_prefault *pf)
{
	if (!pf)
		return;
	pthread_mutex_lock(&pf->mu);
	pf->quit = true;
	pthread_cond_broadcast(&pf->cv);
	pthread_mutex_unlock(&pf->mu);
	pool_join(&pf->workers);
	pthread_cond_destroy(&pf->cv);
	pthread_mutex_destroy(&pf->mu);
	free(pf);
}

/* Replaces the helpers' work with this frame's normal runs (checked by
 * stream_pages_decode), last slice first: readv starts at the front, so
 * the helpers meet it in the middle instead of trailing it. Unfinished
 * work of the previous frame is dropped: readv has filled those pages. */
static void pf_post(struct ram_prefault *pf, const struct page_run *runs, int nruns)
{
	uint32_t n = 0;

	pthread_mutex_lock(&pf->mu);
	if (pf->broken) {
		pthread_mutex_unlock(&pf->mu);
		return;
	}
	for (int i = nruns - 1; i >= 0; i--) {
		uint64_t first = runs[i].first, count = runs[i].count;

		if (runs[i].kind != PAGE_RUN_NORMAL)
			continue;
		/* Slices end-first within the run, each at most 2 MiB. */
		while (count && n < PF_MAX_SLICES) {
			uint64_t c = count % PF_SLICE_PAGES ? count % PF_SLICE_PAGES : PF_SLICE_PAGES;

			pf->sl[n++] = (struct pf_slice){ .first = first + count - c, .count = c };
			count -= c;
		}
	}
	pf->nslices = n;
	pf->next = 0;
	pthread_cond_broadcast(&pf->cv);
	pthread_mutex_unlock(&pf->mu);
}

/* Which pages hold something the source sent (a delta needs a base).
 * Atomic by word: data channels receive concurrently, and a hostile
 * source may put two channels' runs in one word. */
static void have_mark(uint64_t *have, uint64_t first, uint64_t n, bool on)
{
	for (uint64_t i = first; i < first + n;) {
		uint64_t w = i / 64, b = i % 64, k = 64 - b < first + n - i ? 64 - b : first + n - i;
		uint64_t m = (k == 64 ? ~0ULL : ((1ULL << k) - 1)) << b;

		if (on)
			__atomic_fetch_or(&have[w], m, __ATOMIC_RELAXED);
		else
			__atomic_fetch_and(&have[w], ~m, __ATOMIC_RELAXED);
		i += k;
	}
}

static bool have_test(const uint64_t *have, uint64_t i)
{
	return (__atomic_load_n(&have[i / 64], __ATOMIC_RELAXED) >> (i % 64)) & 1;
}

/* The delta entries after the normal contents: area bytes, every entry
 * checked (length, base page, encoding) and applied to the page's
 * current contents, the area used up exactly. */
static int recv_deltas(struct stream *s, struct vm *vm, uint64_t *have,
		       const struct page_run *runs, int nruns, uint64_t area,
		       char *err, size_t errlen)
{
	uint8_t *buf = malloc(area);
	uint64_t pos = 0;
	int ret;

	if (!buf) {
		snprintf(err, errlen, "delta pages: out of memory");
		return -ENOMEM;
	}
	ret = stream_read_all(s, buf, area, err, errlen);
	for (int i = 0; i < nruns && !ret; i++) {
		if (runs[i].kind != PAGE_RUN_DELTA)
			continue;
		for (uint64_t p = runs[i].first; p < runs[i].first + runs[i].count && !ret; p++) {
			const uint8_t *enc;
			uint32_t l;

			ret = xbzrle_entry_next(buf, area, &pos, &enc, &l, err, errlen);
			if (ret) {
				char why[160];

				snprintf(why, sizeof(why), "%s", err);
				snprintf(err, errlen, "bad PAGES: page %llu: %s", (unsigned long long)p,
					 why);
				break;
			}
			if (!have_test(have, p)) {
				snprintf(err, errlen, "bad PAGES: delta for page %llu, which was never sent",
					 (unsigned long long)p);
				ret = -EPROTO;
				break;
			}
			ret = xbzrle_decode(enc, l, vm->ram + p * VM_PAGE_SIZE, err, errlen);
			if (ret) {
				char why[256];

				snprintf(why, sizeof(why), "%s", err);
				snprintf(err, errlen, "page %llu: %s", (unsigned long long)p, why);
			}
		}
	}
	if (!ret && pos != area) {
		snprintf(err, errlen, "bad PAGES: %llu bytes after the last delta entry",
			 (unsigned long long)(area - pos));
		ret = -EPROTO;
	}
	free(buf);
	return ret;
}

int ram_recv_pages(struct stream *s, struct vm *vm, struct ram_prefault *pf, uint64_t *have,
		   uint32_t len, uint64_t *normal, uint64_t *zero, char *err, size_t errlen)
{
	uint64_t delta = 0;
	uint8_t tbl[PAGES_HDR_LEN + PAGES_MAX_RUNS * PAGE_RUN_LEN];
	struct page_run runs[PAGES_MAX_RUNS];
	struct iovec iov[PAGES_MAX_RUNS];
	uint64_t npages = vm->ram_size / VM_PAGE_SIZE, data, tlen;
	int nruns, niov = 0, ret;

	if (len < PAGES_HDR_LEN) {
		snprintf(err, errlen, "bad PAGES: %u bytes is too short", len);
		return -EPROTO;
	}
	ret = stream_read_all(s, tbl, PAGES_HDR_LEN, err, errlen);
	if (!ret)
		ret = stream_pages_table_len(tbl, len, &tlen, err, errlen);
	if (ret)
		return ret;
	ret = stream_read_all(s, tbl + PAGES_HDR_LEN, tlen - PAGES_HDR_LEN, err, errlen);
	if (ret)
		return ret;
	/* The decoder sees the table plus the declared length, so it can
	 * check that the contents that follow are exactly what the runs need. */
	nruns = stream_pages_decode(tbl, len, npages, runs, PAGES_MAX_RUNS, &data,
				    have ? &delta : NULL, err, errlen);
	if (nruns < 0) {
		/* It was told the full length but only holds the table: the
		 * length check is what matters, the rest is already read. */
		return nruns;
	}
	if (pf && data)
		pf_post(pf, runs, nruns);
	for (int i = 0; i < nruns; i++) {
		uint8_t *p = vm->ram + runs[i].first * VM_PAGE_SIZE;
		size_t bytes = (size_t)runs[i].count * VM_PAGE_SIZE;

		/* A delta page needs its base already here: not marked. */
		if (have && runs[i].kind == PAGE_RUN_NORMAL)
			have_mark(have, runs[i].first, runs[i].count, true);
		if (runs[i].kind == PAGE_RUN_DELTA) {
			*normal += runs[i].count; /* sent with contents, as the source counts */
		} else if (runs[i].kind == PAGE_RUN_NORMAL) {
			iov[niov++] = (struct iovec){ .iov_base = p, .iov_len = bytes };
			*normal += runs[i].count;
		} else {
			if (have)
				have_mark(have, runs[i].first, runs[i].count, false);
			/* Zero page: drop whatever is there; an untouched page
			 * stays untouched (reads as zero, costs no memory). */
			if (madvise(p, bytes, MADV_DONTNEED) < 0)
				memset(p, 0, bytes);
			*zero += runs[i].count;
		}
	}
	ret = stream_readv_all(s, iov, niov, err, errlen);
	if (!ret && delta)
		ret = recv_deltas(s, vm, have, runs, nruns,
				  len - tlen - data * VM_PAGE_SIZE, err, errlen);
	return ret;
}
