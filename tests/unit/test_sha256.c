/* SHA-256 against FIPS 180-4 (abc, the 448-bit message, a million 'a'),
 * HMAC-SHA256 against every RFC 4231 case, on the portable block
 * function and, where the CPU has them, the SHA extensions; odd update
 * splits; the constant-time comparison. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "migrate/auth/hmac.h"

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static void digest(bool portable, const void *m, size_t len, size_t step, char *out)
{
	struct sha256 c;
	uint8_t d[SHA256_LEN];
	const uint8_t *p = m;

	if (portable)
		sha256_init_portable(&c);
	else
		sha256_init(&c);
	for (size_t off = 0; off < len; off += step)
		sha256_update(&c, p + off, len - off < step ? len - off : step);
	sha256_final(&c, d);
	hex(d, sizeof(d), out);
}

static const struct {
	const char *msg;
	const char *hash;
} fips[] = {
	{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
};

static void check_fips(bool portable)
{
	static const size_t steps[] = { 1, 3, 63, 64, 65, 1000000 };
	char out[65];
	char *a = malloc(1000000);

	assert_non_null(a);
	for (size_t i = 0; i < sizeof(fips) / sizeof(fips[0]); i++)
		for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			digest(portable, fips[i].msg, strlen(fips[i].msg), steps[s], out);
			assert_string_equal(out, fips[i].hash);
		}
	memset(a, 'a', 1000000);
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		digest(portable, a, 1000000, steps[s] == 1 ? 4097 : steps[s], out);
		assert_string_equal(out,
			"cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	}
	free(a);
}

static void test_fips_portable(void **state)
{
	(void)state;
	check_fips(true);
}

/* On a CPU without the extensions sha256_init picks the portable path,
 * so this checks the dispatch either way; the block functions are also
 * compared directly where the extensions exist. */
static void test_fips_dispatch(void **state)
{
	uint32_t h1[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, h2[8];
	uint8_t blk[64 * 5];

	(void)state;
	check_fips(false);
	printf("sha256: SHA extensions %s\n", sha256_have_ni() ? "present, tested" : "absent");
	if (!sha256_have_ni())
		return;
	for (size_t i = 0; i < sizeof(blk); i++)
		blk[i] = (uint8_t)(i * 37 + 11);
	memcpy(h2, h1, sizeof(h1));
	sha256_blocks_c(h1, blk, 5);
	sha256_blocks_ni(h2, blk, 5);
	assert_memory_equal(h1, h2, sizeof(h1));
}

static void fill(uint8_t *b, size_t n, uint8_t v)
{
	memset(b, v, n);
}

/* RFC 4231, test cases 1-7 (case 5 truncated to 128 bits). */
static void test_rfc4231(void **state)
{
	uint8_t key[131], data[152], mac[SHA256_LEN];
	char out[65];

	(void)state;
	fill(key, 20, 0x0b);
	hmac_sha256(key, 20, "Hi There", 8, mac);
	hex(mac, 32, out);
	assert_string_equal(out, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

	hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
	hex(mac, 32, out);
	assert_string_equal(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

	fill(key, 20, 0xaa);
	fill(data, 50, 0xdd);
	hmac_sha256(key, 20, data, 50, mac);
	hex(mac, 32, out);
	assert_string_equal(out, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

	for (int i = 0; i < 25; i++)
		key[i] = (uint8_t)(i + 1);
	fill(data, 50, 0xcd);
	hmac_sha256(key, 25, data, 50, mac);
	hex(mac, 32, out);
	assert_string_equal(out, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

	fill(key, 20, 0x0c);
	hmac_sha256(key, 20, "Test With Truncation", 20, mac);
	hex(mac, 16, out);
	assert_string_equal(out, "a3b6167473100ee06e0c796c2955552b");

	fill(key, 131, 0xaa);
	hmac_sha256(key, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54, mac);
	hex(mac, 32, out);
	assert_string_equal(out, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

	{
		const char *m = "This is a test using a larger than block-size key and a larger "
				"than block-size data. The key needs to be hashed before being "
				"used by the HMAC algorithm.";

		hmac_sha256(key, 131, m, strlen(m), mac);
		hex(mac, 32, out);
		assert_string_equal(out,
			"9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
	}
}

/* A prepared key gives the one-shot's MAC, message in pieces or not. */
static void test_hmac_prepared(void **state)
{
	struct hmac_key k;
	struct hmac h;
	uint8_t a[SHA256_LEN], b[SHA256_LEN], msg[300];

	(void)state;
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	hmac_sha256("key", 3, msg, sizeof(msg), a);
	hmac_key_init(&k, "key", 3);
	for (int round = 0; round < 2; round++) {
		hmac_start(&h, &k);
		hmac_update(&h, msg, 7);
		hmac_update(&h, msg + 7, 200);
		hmac_update(&h, msg + 207, sizeof(msg) - 207);
		hmac_final(&h, b);
		assert_memory_equal(a, b, sizeof(a));
	}
}

static void test_ct_equal(void **state)
{
	uint8_t a[16] = { 1, 2, 3 }, b[16] = { 1, 2, 3 };

	(void)state;
	assert_true(auth_ct_equal(a, b, 16));
	b[15] ^= 0x80;
	assert_false(auth_ct_equal(a, b, 16));
	b[15] ^= 0x80;
	b[0] ^= 1;
	assert_false(auth_ct_equal(a, b, 16));
	assert_true(auth_ct_equal(a, b, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fips_portable),
		cmocka_unit_test(test_fips_dispatch),
		cmocka_unit_test(test_rfc4231),
		cmocka_unit_test(test_hmac_prepared),
		cmocka_unit_test(test_ct_equal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
