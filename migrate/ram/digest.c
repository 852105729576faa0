/* RAM digest for --verify-ram, and the zero-page test. The digest is a
 * sum over pages of mix(index, hash(page)), so untouched pages (zero, per
 * mincore) contribute a precomputed term without being read, and both
 * sides reach the same value whatever their residency. Not cryptographic:
 * it catches lost or misplaced pages, not an attacker. */
#include "migrate/ram/ram.h"

#include <string.h>
#include <sys/mman.h>

#define DIGEST_CHUNK (1ULL << 15)

bool ram_page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	/* Non-zero pages nearly always fail on the first word. */
	if (w[0] | w[511])
		return false;
	for (size_t i = 0; i < VM_PAGE_SIZE / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] |
		    w[i + 6] | w[i + 7])
			return false;
	return true;
}

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static uint64_t page_hash(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	uint64_t a = 1, b = 2, c = 3, d = 4;

	/* Four independent lanes keep the multiplier busy. */
	for (size_t i = 0; i < VM_PAGE_SIZE / 8; i += 4) {
		a = (a ^ w[i]) * 0x9E3779B97F4A7C15ULL;
		b = (b ^ w[i + 1]) * 0xC2B2AE3D27D4EB4FULL;
		c = (c ^ w[i + 2]) * 0x165667B19E3779F9ULL;
		d = (d ^ w[i + 3]) * 0x27D4EB2F165667C5ULL;
	}
	return mix(a ^ (b << 1) ^ (c << 2) ^ (d << 3));
}

uint64_t ram_digest(const uint8_t *ram, uint64_t npages)
{
	static const uint8_t zero[VM_PAGE_SIZE] __attribute__((aligned(64)));
	unsigned char vec[DIGEST_CHUNK];
	uint64_t hz = page_hash(zero), sum = 0;

	for (uint64_t base = 0; base < npages; base += DIGEST_CHUNK) {
		uint64_t n = npages - base < DIGEST_CHUNK ? npages - base : DIGEST_CHUNK;
		const uint8_t *p = ram + base * VM_PAGE_SIZE;

		if (mincore((void *)p, n * VM_PAGE_SIZE, vec) < 0)
			memset(vec, 1, n); /* read everything instead */
		for (uint64_t i = 0; i < n; i++) {
			uint64_t h = vec[i] & 1 ? page_hash(p + i * VM_PAGE_SIZE) : hz;

			sum += mix((base + i) * 0x9E3779B97F4A7C15ULL ^ h);
		}
	}
	return sum;
}

uint64_t ram_digest_term(uint64_t index, const uint8_t *page)
{
	static const uint8_t zero[VM_PAGE_SIZE] __attribute__((aligned(64)));

	return mix(index * 0x9E3779B97F4A7C15ULL ^ page_hash(page ? page : zero));
}

uint64_t ram_digest_except(const uint8_t *ram, uint64_t npages, const uint64_t *skip)
{
	static const uint8_t zero[VM_PAGE_SIZE] __attribute__((aligned(64)));
	unsigned char vec[DIGEST_CHUNK];
	uint64_t hz = page_hash(zero), sum = 0;

	for (uint64_t base = 0; base < npages; base += DIGEST_CHUNK) {
		uint64_t n = npages - base < DIGEST_CHUNK ? npages - base : DIGEST_CHUNK;
		const uint8_t *p = ram + base * VM_PAGE_SIZE;

		if (mincore((void *)p, n * VM_PAGE_SIZE, vec) < 0)
			memset(vec, 1, n);
		for (uint64_t i = 0; i < n; i++) {
			uint64_t k = base + i, h;

			if (skip[k / 64] >> (k % 64) & 1)
				continue;
			h = vec[i] & 1 ? page_hash(p + i * VM_PAGE_SIZE) : hz;
			sum += mix(k * 0x9E3779B97F4A7C15ULL ^ h);
		}
	}
	return sum;
}
