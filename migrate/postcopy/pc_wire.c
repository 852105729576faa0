/* Post-copy frames: MISSING slices, small PAGES batches, checked like
 * every other frame before anything is touched. */
#include "migrate/postcopy/pc_wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/ram/bitmap.h"
#include "migrate/ram/ram.h"
#include "vmm/core/vm.h"

int pc_bitmap_send(struct stream *s, uint32_t type, const uint64_t *bm, uint64_t npages,
		   char *err, size_t errlen)
{
	uint64_t words = bm_words(npages);
	uint8_t *buf = malloc(MISSING_HDR_LEN + MISSING_MAX_WORDS * 8);
	int frames = 0, ret = 0;

	if (!buf) {
		snprintf(err, errlen, "malloc(%s): out of memory", stream_type_name(type));
		return -ENOMEM;
	}
	for (uint64_t w = 0; w < words && !ret; w += MISSING_MAX_WORDS) {
		uint64_t n = words - w < MISSING_MAX_WORDS ? words - w : MISSING_MAX_WORDS;
		uint64_t lo = w, hi = w + n;

		while (lo < hi && !bm[lo])
			lo++;
		while (hi > lo && !bm[hi - 1])
			hi--;
		if (lo == hi) {
			if (frames || w + n < words)
				continue;
			lo = words - 1; /* nothing set anywhere: one empty word */
			hi = words;
		}
		for (uint64_t i = lo; i < hi; i++)
			le_put64(buf + MISSING_HDR_LEN + (i - lo) * 8, bm[i]);
		le_put64(buf, lo * 64);
		le_put32(buf + 8, (uint32_t)(hi - lo));
		le_put32(buf + 12, 0);
		ret = stream_send(s, type, buf, MISSING_HDR_LEN + (uint32_t)(hi - lo) * 8, err, errlen);
		frames++;
	}
	free(buf);
	return ret ? ret : frames;
}

int pc_missing_recv(struct stream *s, uint32_t len, uint64_t *bm, uint64_t npages,
		    uint64_t *count, char *err, size_t errlen)
{
	uint8_t hdr[MISSING_HDR_LEN], *buf;
	uint64_t first, words = bm_words(npages);
	uint32_t n;
	int ret;

	if (len < MISSING_HDR_LEN + 8) {
		snprintf(err, errlen, "bad MISSING: %u bytes", len);
		return -EPROTO;
	}
	ret = stream_read_all(s, hdr, sizeof(hdr), err, errlen);
	if (ret)
		return ret;
	first = le_get64(hdr);
	n = le_get32(hdr + 8);
	if (first % 64 || n == 0 || n > MISSING_MAX_WORDS || len != MISSING_HDR_LEN + n * 8 ||
	    first / 64 > words || n > words - first / 64) {
		snprintf(err, errlen, "bad MISSING: slice at page %llu, %u words, for %llu pages",
			 (unsigned long long)first, n, (unsigned long long)npages);
		return -EPROTO;
	}
	buf = malloc((size_t)n * 8);
	if (!buf) {
		snprintf(err, errlen, "malloc(MISSING): out of memory");
		return -ENOMEM;
	}
	ret = stream_read_all(s, buf, (size_t)n * 8, err, errlen);
	for (uint32_t i = 0; i < n && !ret; i++) {
		uint64_t w = first / 64 + i, v = le_get64(buf + i * 8);

		/* Bits past the last page are refused, not ignored. */
		if (w == words - 1 && npages % 64 && v >> (npages % 64)) {
			snprintf(err, errlen, "bad MISSING: pages past the end of RAM");
			ret = -EPROTO;
			break;
		}
		*count += (uint64_t)__builtin_popcountll(v & ~bm[w]);
		bm[w] |= v;
	}
	free(buf);
	return ret;
}

/* The delta entry of page p into dl->enc at *pos: 1 when it went, 0
 * when the page goes whole. */
static int add_delta(struct pc_delta *dl, uint64_t p, const uint8_t *cur, uint32_t *pos)
{
	int n;

	if (!dl)
		return 0;
	n = dl->encode(dl->arg, p, cur, dl->enc + *pos + PAGE_DELTA_HDR, PC_DELTA_CAP);
	if (n < 0 || n > (int)PC_DELTA_CAP)
		return 0;
	le_put16(dl->enc + *pos, (uint16_t)n);
	*pos += PAGE_DELTA_HDR + (uint32_t)n;
	dl->pages++;
	dl->saved += VM_PAGE_SIZE - PAGE_DELTA_HDR - (uint64_t)n;
	return 1;
}

int pc_batch_build(struct pc_batch *b, const uint8_t *ram, uint64_t first, uint32_t n,
		   struct pc_delta *dl)
{
	uint8_t *runs = b->tbl + STREAM_HDR_LEN + PAGES_HDR_LEN;
	struct page_run r = { 0 };
	uint32_t nruns = 0, data = 0, area = 0;

	if (n == 0 || n > PC_BATCH_PAGES)
		return -EINVAL;
	b->niov = 1;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p = ram + (first + i) * VM_PAGE_SIZE;
		uint32_t kind = ram_page_is_zero(p) ? PAGE_RUN_ZERO :
				add_delta(dl, first + i, p, &area) ? PAGE_RUN_DELTA : PAGE_RUN_NORMAL;

		if (r.count && r.kind == kind) {
			r.count++;
		} else {
			if (r.count)
				stream_run_encode(runs + nruns++ * PAGE_RUN_LEN, &r);
			r = (struct page_run){ .first = first + i, .count = 1, .kind = kind };
		}
		if (kind == PAGE_RUN_NORMAL) {
			b->iov[b->niov++] = (struct iovec){ .iov_base = (void *)p,
							    .iov_len = VM_PAGE_SIZE };
			data++;
		}
	}
	if (r.count)
		stream_run_encode(runs + nruns++ * PAGE_RUN_LEN, &r);
	/* The entries follow every normal page's contents, in run order. */
	if (area)
		b->iov[b->niov++] = (struct iovec){ .iov_base = dl->enc, .iov_len = area };
	b->bytes = STREAM_HDR_LEN + PAGES_HDR_LEN + nruns * PAGE_RUN_LEN +
		   data * (uint32_t)VM_PAGE_SIZE + area;
	stream_hdr_encode(b->tbl, ST_PAGES, b->bytes - STREAM_HDR_LEN);
	le_put32(b->tbl + STREAM_HDR_LEN, nruns);
	le_put32(b->tbl + STREAM_HDR_LEN + 4, 0);
	b->iov[0] = (struct iovec){ .iov_base = b->tbl,
				    .iov_len = STREAM_HDR_LEN + PAGES_HDR_LEN + nruns * PAGE_RUN_LEN };
	return 0;
}

int pc_batch_write(struct stream *s, struct pc_batch *b, char *err, size_t errlen)
{
	return stream_writev_all(s, b->iov, b->niov, err, errlen);
}

int pc_pages_send(struct stream *s, const uint8_t *ram, uint64_t first, uint32_t n,
		  char *err, size_t errlen)
{
	struct pc_batch b;

	if (pc_batch_build(&b, ram, first, n, NULL)) {
		snprintf(err, errlen, "post-copy: a batch of %u pages", n);
		return -EINVAL;
	}
	return pc_batch_write(s, &b, err, errlen);
}

int pc_pages_recv(struct stream *s, uint32_t len, uint64_t npages, struct page_run *runs,
		  int maxruns, uint8_t *buf, uint8_t *area, uint32_t *area_len, char *err,
		  size_t errlen)
{
	uint8_t tbl[PAGES_HDR_LEN + PAGES_MAX_RUNS * PAGE_RUN_LEN];
	uint64_t data = 0, delta = 0, tlen;
	int nruns, ret;

	if (area_len)
		*area_len = 0;
	if (len < PAGES_HDR_LEN) {
		snprintf(err, errlen, "bad PAGES: %u bytes is too short", len);
		return -EPROTO;
	}
	ret = stream_read_all(s, tbl, PAGES_HDR_LEN, err, errlen);
	if (!ret)
		ret = stream_pages_table_len(tbl, len, &tlen, err, errlen);
	if (!ret)
		ret = stream_read_all(s, tbl + PAGES_HDR_LEN, tlen - PAGES_HDR_LEN, err, errlen);
	if (ret)
		return ret;
	nruns = stream_pages_decode(tbl, len, npages, runs, (size_t)maxruns, &data,
				    area ? &delta : NULL, err, errlen);
	if (nruns < 0)
		return nruns;
	if (data + delta > PC_BATCH_PAGES) {
		snprintf(err, errlen, "bad PAGES: %llu pages of contents in post-copy (at most %u)",
			 (unsigned long long)(data + delta), PC_BATCH_PAGES);
		return -EPROTO;
	}
	ret = stream_read_all(s, buf, data * VM_PAGE_SIZE, err, errlen);
	/* The decoder bounded it: at most delta pages' worth, so within area. */
	if (!ret && delta) {
		*area_len = (uint32_t)(len - tlen - data * VM_PAGE_SIZE);
		ret = stream_read_all(s, area, *area_len, err, errlen);
	}
	return ret ? ret : nruns;
}
