/* Page receiver: reads the run table of a PAGES frame, checks every run
 * against guest RAM (stream_pages_decode), then reads the contents with
 * readv straight into guest RAM. Nothing touches RAM before the whole
 * table has been checked. */
#include "migrate/ram.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

int ram_recv_pages(struct stream *s, struct vm *vm, uint32_t len,
		   uint64_t *normal, uint64_t *zero, char *err, size_t errlen)
{
	uint8_t tbl[PAGES_HDR_LEN + PAGES_MAX_RUNS * PAGE_RUN_LEN];
	struct page_run runs[PAGES_MAX_RUNS];
	struct iovec iov[PAGES_MAX_RUNS];
	uint64_t npages = vm->ram_size / VM_PAGE_SIZE, data, tlen;
	uint32_t n;
	int nruns, niov = 0, ret;

	if (len < PAGES_HDR_LEN) {
		snprintf(err, errlen, "bad PAGES: %u bytes is too short", len);
		return -EPROTO;
	}
	ret = stream_read_all(s, tbl, PAGES_HDR_LEN, err, errlen);
	if (ret)
		return ret;
	n = le_get32(tbl);
	if (n == 0 || n > PAGES_MAX_RUNS) {
		snprintf(err, errlen, "bad PAGES: %u runs (1..%u allowed)", n, PAGES_MAX_RUNS);
		return -EPROTO;
	}
	tlen = PAGES_HDR_LEN + (uint64_t)n * PAGE_RUN_LEN;
	if (tlen > len) {
		snprintf(err, errlen, "bad PAGES: %u runs do not fit in %u bytes", n, len);
		return -EPROTO;
	}
	ret = stream_read_all(s, tbl + PAGES_HDR_LEN, tlen - PAGES_HDR_LEN, err, errlen);
	if (ret)
		return ret;
	/* The decoder sees the table plus the declared length, so it can
	 * check that the contents that follow are exactly what the runs need. */
	nruns = stream_pages_decode(tbl, len, npages, runs, PAGES_MAX_RUNS, &data,
				    err, errlen);
	if (nruns < 0) {
		/* It was told the full length but only holds the table: the
		 * length check is what matters, the rest is already read. */
		return nruns;
	}
	for (int i = 0; i < nruns; i++) {
		uint8_t *p = vm->ram + runs[i].first * VM_PAGE_SIZE;
		size_t bytes = (size_t)runs[i].count * VM_PAGE_SIZE;

		if (runs[i].kind == PAGE_RUN_NORMAL) {
			iov[niov++] = (struct iovec){ .iov_base = p, .iov_len = bytes };
			*normal += runs[i].count;
		} else {
			/* Zero page: drop whatever is there; an untouched page
			 * stays untouched (reads as zero, costs no memory). */
			if (madvise(p, bytes, MADV_DONTNEED) < 0)
				memset(p, 0, bytes);
			*zero += runs[i].count;
		}
	}
	return stream_readv_all(s, iov, niov, err, errlen);
}
