/* Which pages of a private anonymous mapping (guest RAM) the host has
 * populated: present, or swapped out. A page never populated reads as
 * zero and was never written by anyone, so migration need not look at
 * it. PAGEMAP_SCAN (Linux 6.7) answers in ranges and skips unpopulated
 * page-table levels whole, so its cost follows what is populated, not the
 * mapping's size; without it, mincore, which costs a byte per page
 * (docs/migration.md, "Cost independent of size"). */
#ifndef MINIVMM_RESIDENT_H
#define MINIVMM_RESIDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Pages [first, first + count), indexed from the mapping's start. */
struct resident_range {
	uint64_t first, count;
};

enum resident_method {
	RESIDENT_AUTO,    /* PAGEMAP_SCAN, mincore when the kernel lacks it */
	RESIDENT_MINCORE, /* mincore only */
};

/* A sorted list of disjoint, non-adjacent ranges. */
struct resident {
	struct resident_range *r;
	size_t n, cap;
	enum resident_method method;
	int pagemap_fd;   /* -1 until the first scan */
	bool used_mincore; /* some scan used mincore (no PAGEMAP_SCAN, or a dense GiB) */
};

void resident_init(struct resident *rs, enum resident_method method);
void resident_free(struct resident *rs);
/* Appends the populated pages of [first, first + npages) of the mapping
 * at base (page aligned); first must not lie before the end of the last
 * range held. 0 or -errno (err says what failed). */
int resident_scan(struct resident *rs, const uint8_t *base, uint64_t first,
		  uint64_t npages, char *err, size_t errlen);
/* Whether scans of rs take PAGEMAP_SCAN (cost by what is populated) and
 * not mincore (a byte per page): one scan of base's first page. */
bool resident_probe(struct resident *rs, const uint8_t *base);
/* Appends [first, first + count) (first at or after the last range's
 * end), merging with the last range when adjacent. 0 or -ENOMEM. */
int resident_append(struct resident *rs, uint64_t first, uint64_t count);
/* The index of the first range that ends after page, or rs->n. */
size_t resident_find(const struct resident *rs, uint64_t page);
/* Pages held, summed over the ranges. */
uint64_t resident_pages(const struct resident *rs);
/* out = a | b (both sorted lists); out must be neither. 0 or -ENOMEM. */
int resident_union(struct resident *out, const struct resident *a, const struct resident *b);

#endif
