/* Post-copy frames: MISSING slices, small PAGES batches, checked like
 * every other frame before anything is touched. */
#include "migrate/postcopy/pc_wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/ram/bitmap.h"
#include "migrate/ram/ram.h"

int pc_missing_send(struct stream *s, const uint64_t *bm, uint64_t npages, char *err,
		    size_t errlen)
{
	uint64_t words = bm_words(npages);
	uint8_t *buf = malloc(MISSING_HDR_LEN + MISSING_MAX_WORDS * 8);
	int frames = 0, ret = 0;

	if (!buf) {
		snprintf(err, errlen, "malloc(MISSING): out of memory");
		return -ENOMEM;
	}
	for (uint64_t w = 0; w < words && !ret; w += MISSING_MAX_WORDS) {
		uint32_t n = words - w < MISSING_MAX_WORDS ? (uint32_t)(words - w) : MISSING_MAX_WORDS;
		bool any = false;

		for (uint32_t i = 0; i < n; i++) {
			le_put64(buf + MISSING_HDR_LEN + i * 8, bm[w + i]);
			any |= bm[w + i] != 0;
		}
		if (!any && (frames || w + n < words))
			continue;
		le_put64(buf, w * 64);
		le_put32(buf + 8, n);
		le_put32(buf + 12, 0);
		ret = stream_send(s, ST_MISSING, buf, MISSING_HDR_LEN + n * 8, err, errlen);
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

int pc_pages_send(struct stream *s, const uint8_t *ram, uint64_t first, uint32_t n,
		  char *err, size_t errlen)
{
	uint8_t tbl[STREAM_HDR_LEN + PAGES_HDR_LEN + PC_BATCH_PAGES * PAGE_RUN_LEN];
	struct iovec iov[1 + PC_BATCH_PAGES];
	struct page_run r = { 0 };
	uint32_t nruns = 0, data = 0;
	int niov = 1;

	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p = ram + (first + i) * VM_PAGE_SIZE;
		uint32_t kind = ram_page_is_zero(p) ? PAGE_RUN_ZERO : PAGE_RUN_NORMAL;

		if (r.count && r.kind == kind) {
			r.count++;
		} else {
			if (r.count)
				stream_run_encode(tbl + STREAM_HDR_LEN + PAGES_HDR_LEN +
						  nruns++ * PAGE_RUN_LEN, &r);
			r = (struct page_run){ .first = first + i, .count = 1, .kind = kind };
		}
		if (kind == PAGE_RUN_NORMAL) {
			iov[niov++] = (struct iovec){ .iov_base = (void *)p, .iov_len = VM_PAGE_SIZE };
			data++;
		}
	}
	if (r.count)
		stream_run_encode(tbl + STREAM_HDR_LEN + PAGES_HDR_LEN + nruns++ * PAGE_RUN_LEN, &r);
	stream_hdr_encode(tbl, ST_PAGES, PAGES_HDR_LEN + nruns * PAGE_RUN_LEN +
			  data * (uint32_t)VM_PAGE_SIZE);
	le_put32(tbl + STREAM_HDR_LEN, nruns);
	le_put32(tbl + STREAM_HDR_LEN + 4, 0);
	iov[0] = (struct iovec){ .iov_base = tbl,
				 .iov_len = STREAM_HDR_LEN + PAGES_HDR_LEN + nruns * PAGE_RUN_LEN };
	return stream_writev_all(s, iov, niov, err, errlen);
}

int pc_pages_recv(struct stream *s, uint32_t len, uint64_t npages, struct page_run *runs,
		  int maxruns, uint8_t *buf, char *err, size_t errlen)
{
	uint8_t tbl[PAGES_HDR_LEN + PAGES_MAX_RUNS * PAGE_RUN_LEN];
	uint64_t data = 0, tlen;
	int nruns, ret;

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
	nruns = stream_pages_decode(tbl, len, npages, runs, (size_t)maxruns, &data, NULL, err,
				    errlen);
	if (nruns < 0)
		return nruns;
	if (data > PC_BATCH_PAGES) {
		snprintf(err, errlen, "bad PAGES: %llu pages of contents in post-copy (at most %u)",
			 (unsigned long long)data, PC_BATCH_PAGES);
		return -EPROTO;
	}
	ret = stream_read_all(s, buf, data * VM_PAGE_SIZE, err, errlen);
	return ret ? ret : nruns;
}
