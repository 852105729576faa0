/* What it costs to find the populated pages of guest-sized mappings, and
 * to touch fresh memory (issue 11, item 4; docs/benchmarks.md, "Idle
 * guest cost by size"): mincore in one call and in 8 MiB pieces (as the
 * data channels asked it before), PAGEMAP_SCAN, over a sparse 64 GiB
 * mapping and a populated 1 GiB one; first touch of 2 MiB.
 *   cc -O2 -o /tmp/scan_cost tests/bench/scan_cost.c && /tmp/scan_cost */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
struct page_region {
	uint64_t start, end, categories;
};
#define SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PRESENT_OR_SWAPPED ((1 << 3) | (1 << 4))

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double scan(int fd, uint8_t *p, uint64_t len, long *regions)
{
	struct page_region reg[256];
	uint64_t start = (uint64_t)(uintptr_t)p, end = start + len;
	double t = now_ms();

	*regions = 0;
	while (start < end) {
		struct pm_scan_arg a = { .size = sizeof(a), .start = start, .end = end,
					 .vec = (uint64_t)(uintptr_t)reg, .vec_len = 256,
					 .category_anyof_mask = PRESENT_OR_SWAPPED };
		long n = ioctl(fd, SCAN, &a);

		if (n < 0) {
			perror("PAGEMAP_SCAN");
			return -1;
		}
		*regions += n;
		start = a.walk_end;
	}
	return now_ms() - t;
}

int main(void)
{
	uint64_t big = 64ULL << 30, one = 1ULL << 30;
	uint8_t *r = mmap(NULL, big, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *f = mmap(NULL, one, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	unsigned char *v = malloc(big / 4096);
	int fd = open("/proc/self/pagemap", O_RDONLY);
	char *fresh;
	long n;
	double t;

	if (r == MAP_FAILED || f == MAP_FAILED || !v || fd < 0) {
		perror("setup");
		return 1;
	}
	/* What an idle guest populates: a few MiB low, one more block. */
	for (uint64_t i = 0; i < (4ULL << 20); i += 4096)
		r[i] = 1;
	for (uint64_t i = 0; i < (1ULL << 20); i += 4096)
		r[(3ULL << 30) + i] = 1;
	t = now_ms();
	mincore(r, big, v);
	printf("sparse 64 GiB: mincore, one call        %8.3f ms\n", now_ms() - t);
	t = now_ms();
	for (uint64_t b = 0; b < big; b += 8 << 20)
		mincore(r + b, 8 << 20, v + b / 4096);
	printf("sparse 64 GiB: mincore, 8 MiB pieces    %8.3f ms\n", now_ms() - t);
	t = scan(fd, r, big, &n);
	printf("sparse 64 GiB: PAGEMAP_SCAN             %8.3f ms (%ld ranges)\n", t, n);
	memset(f, 1, one);
	t = now_ms();
	mincore(f, one, v);
	printf("populated 1 GiB: mincore                %8.3f ms\n", now_ms() - t);
	t = scan(fd, f, one, &n);
	printf("populated 1 GiB: PAGEMAP_SCAN           %8.3f ms (%ld ranges)\n", t, n);
	fresh = malloc(2 << 20);
	t = now_ms();
	for (int i = 0; i < 2 << 20; i += 4096)
		fresh[i] = 1;
	printf("first touch of 2 MiB                    %8.3f ms\n", now_ms() - t);
	return fresh[4096] == 1 ? 0 : 1;
}
