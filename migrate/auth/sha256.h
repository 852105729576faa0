/* SHA-256 (FIPS 180-4), in-tree: this kernel has no AF_ALG and minivmm
 * takes no crypto library (docs/security.md). Tested against the FIPS
 * 180-4 and RFC 4231 vectors (tests/unit/test_sha256.c). Where the CPU
 * has the SHA extensions (CPUID 7.EBX bit 29) the block function uses
 * them; otherwise the portable C one. */
#ifndef MINIVMM_AUTH_SHA256_H
#define MINIVMM_AUTH_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define SHA256_BLOCK 64

struct sha256 {
	uint32_t h[8];
	uint64_t bytes;          /* message bytes so far */
	uint8_t buf[SHA256_BLOCK];
	uint32_t nbuf;
	bool ni;                 /* use the SHA extensions */
};

void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *data, size_t len);
void sha256_final(struct sha256 *c, uint8_t out[SHA256_LEN]);
void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN]);

/* The block functions, for the tests and the bench: nblocks x 64 bytes. */
void sha256_blocks_c(uint32_t h[8], const uint8_t *p, size_t nblocks);
void sha256_blocks_ni(uint32_t h[8], const uint8_t *p, size_t nblocks);
bool sha256_have_ni(void);
/* Tests: the portable path even where the extensions exist. */
void sha256_init_portable(struct sha256 *c);

#endif
