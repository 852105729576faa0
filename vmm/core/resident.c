#include "vmm/core/resident.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define RES_PAGE 4096ULL

/* The kernel's ABI (include/uapi/linux/fs.h, Linux 6.7), for headers
 * older than that; the ioctl says ENOTTY/EINVAL on kernels without it. */
#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start, end, categories;
};

struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};

#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

#define SCAN_VEC 256
#define MINCORE_CHUNK (1ULL << 15) /* pages per mincore call: a 32 KiB vector */

void resident_init(struct resident *rs, enum resident_method method)
{
	memset(rs, 0, sizeof(*rs));
	rs->method = method;
	rs->pagemap_fd = -1;
}

void resident_free(struct resident *rs)
{
	if (rs->pagemap_fd >= 0)
		close(rs->pagemap_fd);
	free(rs->r);
	resident_init(rs, rs->method);
}

int resident_append(struct resident *rs, uint64_t first, uint64_t count)
{
	struct resident_range *last = rs->n ? &rs->r[rs->n - 1] : NULL;

	if (!count)
		return 0;
	if (last && last->first + last->count == first) {
		last->count += count;
		return 0;
	}
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 64;
		struct resident_range *r = realloc(rs->r, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		rs->r = r;
		rs->cap = cap;
	}
	rs->r[rs->n++] = (struct resident_range){ first, count };
	return 0;
}

/* One call gives up to SCAN_VEC ranges and says how far it walked. */
static int scan_pagemap(struct resident *rs, const uint8_t *base, uint64_t first,
			uint64_t npages)
{
	struct page_region vec[SCAN_VEC];
	uint64_t start = (uint64_t)(uintptr_t)base + first * RES_PAGE;
	uint64_t end = start + npages * RES_PAGE;

	if (rs->pagemap_fd < 0) {
		rs->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (rs->pagemap_fd < 0)
			return -errno;
	}
	while (start < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a), .start = start, .end = end,
			.vec = (uint64_t)(uintptr_t)vec, .vec_len = SCAN_VEC,
			.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		};
		long n = ioctl(rs->pagemap_fd, PAGEMAP_SCAN, &a);

		if (n < 0)
			return -errno;
		for (long i = 0; i < n; i++) {
			uint64_t s = vec[i].start, e = vec[i].end;
			int ret;

			if (s < start || e > end || s >= e) /* not what we asked for */
				return -EPROTO;
			ret = resident_append(rs, (s - (uint64_t)(uintptr_t)base) / RES_PAGE,
					      (e - s) / RES_PAGE);
			if (ret)
				return ret;
		}
		if (a.walk_end <= start || a.walk_end > end)
			return -EPROTO;
		start = a.walk_end;
	}
	return 0;
}

bool resident_probe(struct resident *rs, const uint8_t *base)
{
	struct resident tmp;
	bool ok;

	if (rs->method != RESIDENT_AUTO)
		return false;
	resident_init(&tmp, RESIDENT_AUTO);
	ok = scan_pagemap(&tmp, base, 0, 1) == 0;
	resident_free(&tmp);
	if (!ok)
		rs->method = RESIDENT_MINCORE;
	return ok;
}

static int scan_mincore(struct resident *rs, const uint8_t *base, uint64_t first,
			uint64_t npages, char *err, size_t errlen)
{
	unsigned char *vec = malloc(MINCORE_CHUNK);

	if (!vec) {
		snprintf(err, errlen, "malloc(mincore vector): out of memory");
		return -ENOMEM;
	}
	for (uint64_t b = first; b < first + npages; b += MINCORE_CHUNK) {
		uint64_t n = first + npages - b < MINCORE_CHUNK ? first + npages - b : MINCORE_CHUNK;

		if (mincore((void *)(base + b * RES_PAGE), n * RES_PAGE, vec) < 0) {
			int e = errno;

			free(vec);
			snprintf(err, errlen, "mincore: %s", strerror(e));
			return -e;
		}
		for (uint64_t i = 0; i < n;) {
			uint64_t j;

			if (!(vec[i] & 1)) {
				i++;
				continue;
			}
			for (j = i + 1; j < n && (vec[j] & 1); j++)
				;
			if (resident_append(rs, b + i, j - i) < 0) {
				free(vec);
				snprintf(err, errlen, "resident ranges: out of memory");
				return -ENOMEM;
			}
			i = j;
		}
	}
	free(vec);
	return 0;
}

/* PAGEMAP_SCAN costs per populated page and next to nothing per
 * unpopulated one, mincore a little per page either way: past about 1/8
 * populated mincore is the cheaper (docs/benchmarks.md, "Idle guest cost
 * by size"). Each block is scanned the way the block before it called
 * for. */
#define BLOCK_PAGES (1ULL << 18) /* 1 GiB */

static int scan_auto(struct resident *rs, const uint8_t *base, uint64_t first,
		     uint64_t npages, char *err, size_t errlen)
{
	bool dense = false;

	for (uint64_t b = first; b < first + npages; b += BLOCK_PAGES) {
		uint64_t n = first + npages - b < BLOCK_PAGES ? first + npages - b : BLOCK_PAGES;
		size_t n0 = rs->n;
		uint64_t added = n0 ? 0 - rs->r[n0 - 1].count : 0;
		int ret;

		if (dense) {
			rs->used_mincore = true;
			ret = scan_mincore(rs, base, b, n, err, errlen);
		} else {
			ret = scan_pagemap(rs, base, b, n);
			if (ret)
				snprintf(err, errlen, "%s", ret == -ENOMEM ?
					 "resident ranges: out of memory" : "PAGEMAP_SCAN failed");
		}
		if (ret)
			return ret;
		/* What this block added: the last range's growth, new ranges. */
		for (size_t i = n0 ? n0 - 1 : 0; i < rs->n; i++)
			added += rs->r[i].count;
		dense = added * 8 > n;
	}
	return 0;
}

int resident_scan(struct resident *rs, const uint8_t *base, uint64_t first,
		  uint64_t npages, char *err, size_t errlen)
{
	size_t n0 = rs->n;
	uint64_t last_end = 0;
	int ret;

	/* A scan may extend the last range in place: its end is kept for
	 * the rollback to mincore below. */
	if (rs->n)
		last_end = rs->r[rs->n - 1].first + rs->r[rs->n - 1].count;
	if (first < last_end) {
		snprintf(err, errlen, "resident_scan: range before the last one held");
		return -EINVAL;
	}
	if (rs->method == RESIDENT_AUTO) {
		ret = scan_auto(rs, base, first, npages, err, errlen);
		if (ret == 0 || ret == -ENOMEM || rs->used_mincore)
			return ret;
		/* No PAGEMAP_SCAN here (or it answered nonsense): mincore
		 * from now on, over this whole range again. */
		rs->n = n0;
		if (n0)
			rs->r[n0 - 1].count = last_end - rs->r[n0 - 1].first;
		rs->method = RESIDENT_MINCORE;
	}
	rs->used_mincore = true;
	return scan_mincore(rs, base, first, npages, err, errlen);
}

size_t resident_find(const struct resident *rs, uint64_t page)
{
	size_t lo = 0, hi = rs->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rs->r[mid].first + rs->r[mid].count <= page)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint64_t resident_pages(const struct resident *rs)
{
	uint64_t n = 0;

	for (size_t i = 0; i < rs->n; i++)
		n += rs->r[i].count;
	return n;
}

/* Adds [first, end) to out, which is sorted: merges with an overlapping
 * or adjacent last range. */
static int add_merge(struct resident *out, uint64_t first, uint64_t end)
{
	struct resident_range *last = out->n ? &out->r[out->n - 1] : NULL;

	if (last && first <= last->first + last->count) {
		if (end > last->first + last->count)
			last->count = end - last->first;
		return 0;
	}
	return resident_append(out, first, end - first);
}

int resident_union(struct resident *out, const struct resident *a, const struct resident *b)
{
	size_t i = 0, j = 0;

	out->n = 0;
	while (i < a->n || j < b->n) {
		const struct resident_range *r;
		int ret;

		if (j >= b->n || (i < a->n && a->r[i].first <= b->r[j].first))
			r = &a->r[i++];
		else
			r = &b->r[j++];
		ret = add_merge(out, r->first, r->first + r->count);
		if (ret)
			return ret;
	}
	return 0;
}
