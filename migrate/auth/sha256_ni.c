/* SHA-256 block function on the x86 SHA extensions (SHA-NI), used only
 * after sha256_have_ni() said the CPU has them: this file is compiled for
 * the baseline and only these functions are built for sha/sse4.1. The
 * state is kept as ABEF/CDGH pairs, the layout sha256rnds2 wants. */
#include "migrate/auth/sha256.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

extern const uint32_t *sha256_k;

__attribute__((target("sha,sse4.1,ssse3")))
void sha256_blocks_ni(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
	const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i s0, s1, tmp;

	tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1); /* CDAB */
	s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B);  /* EFGH */
	s0 = _mm_alignr_epi8(tmp, s1, 8);                                        /* ABEF */
	s1 = _mm_blend_epi16(s1, tmp, 0xF0);                                     /* CDGH */
	for (; nblocks; nblocks--, p += SHA256_BLOCK) {
		__m128i abef = s0, cdgh = s1, m[4], msg;

#pragma GCC unroll 16
		for (int g = 0; g < 16; g++) {
			if (g < 4)
				m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)),
							mask);
			else
				m[g & 3] = _mm_sha256msg2_epu32(
					_mm_add_epi32(_mm_sha256msg1_epu32(m[g & 3], m[(g + 1) & 3]),
						      _mm_alignr_epi8(m[(g + 3) & 3], m[(g + 2) & 3], 4)),
					m[(g + 3) & 3]);
			msg = _mm_add_epi32(m[g & 3], _mm_loadu_si128((const __m128i *)&sha256_k[4 * g]));
			s1 = _mm_sha256rnds2_epu32(s1, s0, msg);
			s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(msg, 0x0E));
		}
		s0 = _mm_add_epi32(s0, abef);
		s1 = _mm_add_epi32(s1, cdgh);
	}
	tmp = _mm_shuffle_epi32(s0, 0x1B);    /* FEBA */
	s1 = _mm_shuffle_epi32(s1, 0xB1);     /* DCHG */
	s0 = _mm_blend_epi16(tmp, s1, 0xF0);  /* DCBA */
	s1 = _mm_alignr_epi8(s1, tmp, 8);     /* HGFE */
	_mm_storeu_si128((__m128i *)&h[0], s0);
	_mm_storeu_si128((__m128i *)&h[4], s1);
}
#else
void sha256_blocks_ni(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
	sha256_blocks_c(h, p, nblocks);
}
#endif
