#include "migrate/auth/hmac.h"

#include <string.h>

void hmac_key_init(struct hmac_key *k, const void *key, size_t len)
{
	uint8_t kb[SHA256_BLOCK] = { 0 }, pad[SHA256_BLOCK];

	if (len > SHA256_BLOCK)
		sha256(key, len, kb);
	else if (len)
		memcpy(kb, key, len);
	for (int i = 0; i < SHA256_BLOCK; i++)
		pad[i] = kb[i] ^ 0x36;
	sha256_init(&k->inner);
	sha256_update(&k->inner, pad, sizeof(pad));
	for (int i = 0; i < SHA256_BLOCK; i++)
		pad[i] = kb[i] ^ 0x5c;
	sha256_init(&k->outer);
	sha256_update(&k->outer, pad, sizeof(pad));
	auth_wipe(kb, sizeof(kb));
	auth_wipe(pad, sizeof(pad));
}

void hmac_start(struct hmac *h, const struct hmac_key *k)
{
	h->c = k->inner;
	h->k = k;
}

void hmac_update(struct hmac *h, const void *data, size_t len)
{
	sha256_update(&h->c, data, len);
}

void hmac_final(struct hmac *h, uint8_t out[SHA256_LEN])
{
	uint8_t in[SHA256_LEN];
	struct sha256 o = h->k->outer;

	sha256_final(&h->c, in);
	sha256_update(&o, in, sizeof(in));
	sha256_final(&o, out);
	auth_wipe(in, sizeof(in));
}

void hmac_sha256(const void *key, size_t keylen, const void *msg, size_t len,
		 uint8_t out[SHA256_LEN])
{
	struct hmac_key k;
	struct hmac h;

	hmac_key_init(&k, key, keylen);
	hmac_start(&h, &k);
	hmac_update(&h, msg, len);
	hmac_final(&h, out);
	auth_wipe(&k, sizeof(k));
}

int auth_ct_equal(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

void auth_wipe(void *p, size_t n)
{
	volatile uint8_t *v = p;

	while (n--)
		*v++ = 0;
}
