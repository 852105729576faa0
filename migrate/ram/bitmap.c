/* Page bitmap helpers (word-at-a-time: RAM of 2 GiB is 512 Ki bits). */
#include "migrate/ram/bitmap.h"

uint64_t bm_count(const uint64_t *bm, uint64_t nbits)
{
	uint64_t n = 0, full = nbits / 64;

	for (uint64_t w = 0; w < full; w++)
		n += (uint64_t)__builtin_popcountll(bm[w]);
	if (nbits % 64)
		n += (uint64_t)__builtin_popcountll(bm[full] & ((1ULL << (nbits % 64)) - 1));
	return n;
}

static uint64_t next_bit(const uint64_t *bm, uint64_t nbits, uint64_t from,
			 uint64_t flip)
{
	uint64_t w, word;

	if (from >= nbits)
		return nbits;
	w = from / 64;
	word = (bm[w] ^ flip) & (~0ULL << (from % 64));
	for (;;) {
		if (word) {
			uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(word);

			return i < nbits ? i : nbits;
		}
		if (++w >= bm_words(nbits))
			return nbits;
		word = bm[w] ^ flip;
	}
}

uint64_t bm_next_set(const uint64_t *bm, uint64_t nbits, uint64_t from)
{
	return next_bit(bm, nbits, from, 0);
}

uint64_t bm_next_clear(const uint64_t *bm, uint64_t nbits, uint64_t from)
{
	return next_bit(bm, nbits, from, ~0ULL);
}

void bm_set_range(uint64_t *bm, uint64_t first, uint64_t n)
{
	uint64_t i = first, end = first + n;

	for (; i < end && i % 64; i++)
		bm_set(bm, i);
	for (; i + 64 <= end; i += 64)
		bm[i / 64] = ~0ULL;
	for (; i < end; i++)
		bm_set(bm, i);
}

void bm_set_range_atomic(uint64_t *bm, uint64_t first, uint64_t n)
{
	while (n) {
		uint64_t b = first % 64, k = 64 - b < n ? 64 - b : n;
		uint64_t mask = k == 64 ? ~0ULL : ((1ULL << k) - 1) << b;

		__atomic_fetch_or(&bm[first / 64], mask, __ATOMIC_RELEASE);
		first += k;
		n -= k;
	}
}

void bm_clear_range(uint64_t *bm, uint64_t first, uint64_t n)
{
	uint64_t i = first, end = first + n;

	for (; i < end && i % 64; i++)
		bm_clear(bm, i);
	for (; i + 64 <= end; i += 64)
		bm[i / 64] = 0;
	for (; i < end; i++)
		bm_clear(bm, i);
}
