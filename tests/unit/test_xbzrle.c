/* The delta codec: round trips on pages changed a little, a lot and not
 * at all; the cache's hit/miss/eviction rules. Hostile encodings on the
 * target's PAGES path are in test_section.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "migrate/ram/xbzrle.h"

static uint64_t rng = 88172645463325252ULL;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

static void roundtrip(const uint8_t *old, const uint8_t *cur, int expect_len)
{
	uint8_t enc[XBZ_PAGE], page[XBZ_PAGE];
	char err[128];
	int n = xbzrle_encode(old, cur, enc, sizeof(enc));

	if (expect_len >= 0)
		assert_int_equal(n, expect_len);
	if (n < 0)
		return;
	memcpy(page, old, XBZ_PAGE);
	assert_int_equal(xbzrle_decode(enc, (size_t)n, page, err, sizeof(err)), 0);
	assert_memory_equal(page, cur, XBZ_PAGE);
}

static void test_roundtrip(void **state)
{
	uint8_t old[XBZ_PAGE], cur[XBZ_PAGE];

	(void)state;
	for (uint32_t i = 0; i < XBZ_PAGE; i++)
		old[i] = (uint8_t)rnd();
	memcpy(cur, old, XBZ_PAGE);
	roundtrip(old, cur, 0);                 /* unchanged: empty */
	cur[0] ^= 1;
	roundtrip(old, cur, 3);                 /* Z=0 N=1 byte */
	cur[4095] ^= 1;
	roundtrip(old, cur, 3 + 3 + 1);         /* Z=4094 takes 2 bytes */
	/* The dirty guest's stamp: words 0 and 511 rewritten. */
	memcpy(cur, old, XBZ_PAGE);
	for (int i = 0; i < 8; i++) {
		cur[i] ^= 0x5a;
		cur[4088 + i] ^= 0xa5;
	}
	roundtrip(old, cur, 2 + 8 + 3 + 8);
	/* Random sparse changes, many times. */
	for (int t = 0; t < 2000; t++) {
		memcpy(cur, old, XBZ_PAGE);
		for (uint32_t k = rnd() % 64; k; k--)
			cur[rnd() % XBZ_PAGE] = (uint8_t)rnd();
		roundtrip(old, cur, -1);
	}
	/* A page rewritten whole: longer than the limit, sent whole. */
	for (uint32_t i = 0; i < XBZ_PAGE; i++)
		cur[i] = (uint8_t)~old[i];
	{
		uint8_t enc[XBZ_MAX_ENC];

		assert_int_equal(xbzrle_encode(old, cur, enc, sizeof(enc)), -1);
	}
}

static void test_decode_refuses_without_change(void **state)
{
	uint8_t page[XBZ_PAGE], copy[XBZ_PAGE];
	/* A good first pair then a bad one: nothing may be applied. */
	const uint8_t enc[] = { 0, 1, 0xff, 0, 1, 0xff };
	char err[128];

	(void)state;
	memset(page, 7, sizeof(page));
	memcpy(copy, page, sizeof(page));
	assert_int_equal(xbzrle_decode(enc, sizeof(enc), page, err, sizeof(err)), -EPROTO);
	assert_memory_equal(page, copy, sizeof(page));
}

static void test_cache(void **state)
{
	struct xbz_cache *c;
	uint8_t a[XBZ_PAGE], b[XBZ_PAGE], out[XBZ_PAGE];
	char err[128];
	int miss;

	(void)state;
	assert_int_equal(xbz_cache_create(&c, 4 * XBZ_PAGE, err, sizeof(err)), 0);
	assert_int_equal(c->nslots, 4);
	memset(a, 1, sizeof(a));
	memcpy(b, a, sizeof(b));
	b[100] = 9;
	assert_int_equal(xbz_cache_put(c, 5, a, out, &miss), -1);
	assert_true(miss);
	assert_int_equal(xbz_cache_put(c, 5, b, out, &miss), 3);
	assert_false(miss);
	/* Page 9 shares page 5's slot: evicts it. */
	assert_int_equal(xbz_cache_put(c, 9, a, out, &miss), -1);
	assert_int_equal(xbz_cache_put(c, 5, b, out, &miss), -1);
	assert_true(miss);
	/* Forgotten (sent as a zero page): a miss next time. */
	xbz_cache_forget(c, 5);
	assert_int_equal(xbz_cache_put(c, 5, b, out, &miss), -1);
	assert_true(miss);
	xbz_cache_destroy(c);
}

/* The post-copy encode leaves the cache alone: two encodes of the same
 * page give the same delta (against the base the target holds), a miss
 * stays a miss, a cap shorter than the delta refuses it, and so does a
 * page whose head was rewritten. */
static void test_cache_delta_readonly(void **state)
{
	struct xbz_cache *c;
	uint8_t a[XBZ_PAGE], b[XBZ_PAGE], out[XBZ_PAGE], page[XBZ_PAGE];
	char err[128];
	int miss;

	(void)state;
	assert_int_equal(xbz_cache_create(&c, 4 * XBZ_PAGE, err, sizeof(err)), 0);
	memset(a, 3, sizeof(a));
	memcpy(b, a, sizeof(b));
	memset(b + 200, 0x55, 40);
	assert_int_equal(xbz_cache_delta(c, 6, b, out, sizeof(out)), -1);
	assert_int_equal(xbz_cache_put(c, 6, a, out, &miss), -1);
	assert_int_equal(xbz_cache_delta(c, 6, b, out, sizeof(out)), 43);
	assert_int_equal(xbz_cache_delta(c, 6, b, out, sizeof(out)), 43);
	memcpy(page, a, sizeof(page));
	assert_int_equal(xbzrle_decode(out, 43, page, err, sizeof(err)), 0);
	assert_memory_equal(page, b, sizeof(page));
	assert_int_equal(xbz_cache_delta(c, 6, b, out, 42), -1);
	assert_int_equal(xbz_cache_delta(c, 10, b, out, sizeof(out)), -1); /* 6's slot: a miss */
	assert_int_equal(xbz_cache_delta(c, 6, a, out, sizeof(out)), 0);  /* unchanged */
	/* A head rewritten (all 32 words of the first 256 bytes) goes whole,
	 * though this one would encode in 259 bytes; 23 words still encode. */
	memcpy(b, a, sizeof(b));
	memset(b, 0x77, 256);
	assert_true(xbzrle_encode(a, b, out, sizeof(out)) > 0);
	assert_int_equal(xbz_cache_delta(c, 6, b, out, sizeof(out)), -1);
	memcpy(b, a, sizeof(b));
	memset(b, 0x77, 23 * 8);
	assert_int_equal(xbz_cache_delta(c, 6, b, out, sizeof(out)), 3 + 23 * 8);
	xbz_cache_destroy(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_decode_refuses_without_change),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_cache_delta_readonly),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
