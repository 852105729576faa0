/* HMAC-SHA256 (RFC 2104, vectors from RFC 4231) and the constant-time
 * comparison every MAC check uses. A key is prepared once (its inner and
 * outer pads hashed), so a MAC per frame costs two block functions on
 * top of the message. */
#ifndef MINIVMM_AUTH_HMAC_H
#define MINIVMM_AUTH_HMAC_H

#include "migrate/auth/sha256.h"

struct hmac_key {
	struct sha256 inner, outer; /* after the ipad/opad block */
};

struct hmac {
	struct sha256 c;
	const struct hmac_key *k;
};

void hmac_key_init(struct hmac_key *k, const void *key, size_t len);
void hmac_start(struct hmac *h, const struct hmac_key *k);
void hmac_update(struct hmac *h, const void *data, size_t len);
void hmac_final(struct hmac *h, uint8_t out[SHA256_LEN]);
void hmac_sha256(const void *key, size_t keylen, const void *msg, size_t len,
		 uint8_t out[SHA256_LEN]);
/* 1 when a and b hold the same n bytes; time independent of where they
 * differ. */
int auth_ct_equal(const void *a, const void *b, size_t n);
/* Overwrites n bytes in a way the compiler keeps. */
void auth_wipe(void *p, size_t n);

#endif
