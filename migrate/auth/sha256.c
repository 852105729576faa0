/* SHA-256, FIPS 180-4 section 6.2. The rounds are unrolled by a macro
 * over eight rotating variables and a 16-word schedule ring, which keeps
 * everything in registers. */
#include "migrate/auth/sha256.h"

#include <cpuid.h>
#include <string.h>

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

/* For sha256_ni.c: the same table. */
const uint32_t *sha256_k = K;

static const uint32_t H0[8] = {
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define S0(x) (ROR(x, 2) ^ ROR(x, 13) ^ ROR(x, 22))
#define S1(x) (ROR(x, 6) ^ ROR(x, 11) ^ ROR(x, 25))
#define s0(x) (ROR(x, 7) ^ ROR(x, 18) ^ ((x) >> 3))
#define s1(x) (ROR(x, 17) ^ ROR(x, 19) ^ ((x) >> 10))
#define CH(x, y, z) (((x) & ((y) ^ (z))) ^ (z))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))

static inline uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Round t (0..63) with W[t] in w; a..h rotate by renaming. */
#define RND(a, b, c, d, e, f, g, h, t, w)                                    \
	do {                                                                  \
		uint32_t t1 = (h) + S1(e) + CH(e, f, g) + K[t] + (w);        \
		uint32_t t2 = S0(a) + MAJ(a, b, c);                           \
		(d) += t1;                                                    \
		(h) = t1 + t2;                                                \
	} while (0)
#define WX(t) (W[(t) & 15] += s1(W[((t) - 2) & 15]) + W[((t) - 7) & 15] + s0(W[((t) - 15) & 15]))
#define R8(t, WF)                                                            \
	RND(a, b, c, d, e, f, g, h, (t) + 0, WF((t) + 0));                   \
	RND(h, a, b, c, d, e, f, g, (t) + 1, WF((t) + 1));                   \
	RND(g, h, a, b, c, d, e, f, (t) + 2, WF((t) + 2));                   \
	RND(f, g, h, a, b, c, d, e, (t) + 3, WF((t) + 3));                   \
	RND(e, f, g, h, a, b, c, d, (t) + 4, WF((t) + 4));                   \
	RND(d, e, f, g, h, a, b, c, (t) + 5, WF((t) + 5));                   \
	RND(c, d, e, f, g, h, a, b, (t) + 6, WF((t) + 6));                   \
	RND(b, c, d, e, f, g, h, a, (t) + 7, WF((t) + 7))
#define W0(t) (W[t] = be32(p + 4 * (t)))

void sha256_blocks_c(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
	for (; nblocks; nblocks--, p += SHA256_BLOCK) {
		uint32_t W[16];
		uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
		uint32_t e = st[4], f = st[5], g = st[6], h = st[7];

		R8(0, W0);
		R8(8, W0);
		R8(16, WX);
		R8(24, WX);
		R8(32, WX);
		R8(40, WX);
		R8(48, WX);
		R8(56, WX);
		st[0] += a; st[1] += b; st[2] += c; st[3] += d;
		st[4] += e; st[5] += f; st[6] += g; st[7] += h;
	}
}

bool sha256_have_ni(void)
{
	/* Asked once: CPUID traps to the hypervisor on these machines. The
	 * answer never changes, so a racing first call is harmless. */
	static int have = -1;
	unsigned a, b, c, d;
	int v = __atomic_load_n(&have, __ATOMIC_RELAXED);

	if (v >= 0)
		return v;
	v = 0;
	if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSSE3) && (c & bit_SSE4_1) &&
	    __get_cpuid_count(7, 0, &a, &b, &c, &d))
		v = (b >> 29) & 1;
	__atomic_store_n(&have, v, __ATOMIC_RELAXED);
	return v;
}

void sha256_init_portable(struct sha256 *c)
{
	memcpy(c->h, H0, sizeof(H0));
	c->bytes = 0;
	c->nbuf = 0;
	c->ni = false;
}

void sha256_init(struct sha256 *c)
{
	sha256_init_portable(c);
	c->ni = sha256_have_ni();
}

static void blocks(struct sha256 *c, const uint8_t *p, size_t n)
{
	if (c->ni)
		sha256_blocks_ni(c->h, p, n);
	else
		sha256_blocks_c(c->h, p, n);
}

void sha256_update(struct sha256 *c, const void *data, size_t len)
{
	const uint8_t *p = data;

	c->bytes += len;
	if (c->nbuf) {
		size_t k = SHA256_BLOCK - c->nbuf;

		if (k > len)
			k = len;
		memcpy(c->buf + c->nbuf, p, k);
		c->nbuf += (uint32_t)k;
		p += k;
		len -= k;
		if (c->nbuf < SHA256_BLOCK)
			return;
		blocks(c, c->buf, 1);
		c->nbuf = 0;
	}
	if (len >= SHA256_BLOCK) {
		size_t n = len / SHA256_BLOCK;

		blocks(c, p, n);
		p += n * SHA256_BLOCK;
		len -= n * SHA256_BLOCK;
	}
	if (len) {
		memcpy(c->buf, p, len);
		c->nbuf = (uint32_t)len;
	}
}

void sha256_final(struct sha256 *c, uint8_t out[SHA256_LEN])
{
	uint64_t bits = c->bytes * 8;
	uint8_t pad[SHA256_BLOCK * 2] = { 0x80 };
	size_t n = (c->nbuf < 56 ? 56 : 120) - c->nbuf;

	for (int i = 0; i < 8; i++)
		pad[n + i] = (uint8_t)(bits >> (56 - 8 * i));
	sha256_update(c, pad, n + 8);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(c->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)c->h[i];
	}
	memset(c, 0, sizeof(*c));
}

void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN])
{
	struct sha256 c;

	sha256_init(&c);
	sha256_update(&c, data, len);
	sha256_final(&c, out);
}
