/* The delta codec (xbzrle.h for the format). Stream input is untrusted:
 * the decoder checks the whole encoding before it touches the page. */
#include "migrate/ram/xbzrle.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int put_uleb(uint8_t *out, size_t cap, size_t *pos, uint32_t v)
{
	do {
		uint8_t b = v & 0x7f;

		v >>= 7;
		if (*pos >= cap)
			return -1;
		out[(*pos)++] = b | (v ? 0x80 : 0);
	} while (v);
	return 0;
}

int xbzrle_encode(const uint8_t *old, const uint8_t *cur, uint8_t *out, size_t cap)
{
	size_t pos = 0;
	uint32_t i = 0;

	while (i < XBZ_PAGE) {
		uint32_t z = i, n;

		/* Word steps where aligned: most of a page is unchanged. */
		while (i < XBZ_PAGE && old[i] == cur[i]) {
			if (!(i & 7) && i + 8 <= XBZ_PAGE && !memcmp(old + i, cur + i, 8)) {
				i += 8;
				continue;
			}
			i++;
		}
		if (i == XBZ_PAGE)
			break;
		z = i - z;
		n = i;
		while (i < XBZ_PAGE && old[i] != cur[i])
			i++;
		n = i - n;
		if (put_uleb(out, cap, &pos, z) || put_uleb(out, cap, &pos, n) || cap - pos < n)
			return -1;
		for (uint32_t k = 0; k < n; k++)
			out[pos + k] = old[i - n + k] ^ cur[i - n + k];
		pos += n;
	}
	return (int)pos;
}

/* A length: at most 2 bytes, shortest form, <= XBZ_PAGE. */
static int get_uleb(const uint8_t *in, size_t len, size_t *pos, uint32_t *v,
		    char *err, size_t errlen)
{
	uint32_t x = 0;

	for (int k = 0; k < 2; k++) {
		uint8_t b;

		if (*pos >= len) {
			snprintf(err, errlen, "bad delta page: a run length is cut off at byte %zu",
				 *pos);
			return -EPROTO;
		}
		b = in[(*pos)++];
		x |= (uint32_t)(b & 0x7f) << (7 * k);
		if (!(b & 0x80)) {
			if (k && !b) {
				snprintf(err, errlen, "bad delta page: overlong run length at byte %zu",
					 *pos - 1);
				return -EPROTO;
			}
			if (x > XBZ_PAGE) {
				snprintf(err, errlen, "bad delta page: run length %u > page", x);
				return -EPROTO;
			}
			*v = x;
			return 0;
		}
	}
	snprintf(err, errlen, "bad delta page: run length longer than 2 bytes at byte %zu",
		 *pos - 2);
	return -EPROTO;
}

static int walk(const uint8_t *in, size_t len, uint8_t *page, char *err, size_t errlen)
{
	size_t pos = 0;
	uint32_t off = 0;
	bool first = true;

	while (pos < len) {
		uint32_t z, n;
		int ret = get_uleb(in, len, &pos, &z, err, errlen);

		if (!ret)
			ret = get_uleb(in, len, &pos, &n, err, errlen);
		if (ret)
			return ret;
		if ((z == 0 && !first) || n == 0) {
			snprintf(err, errlen, "bad delta page: zero-length %s run at byte %zu",
				 n ? "unchanged" : "changed", pos);
			return -EPROTO;
		}
		if (z > XBZ_PAGE - off || n > XBZ_PAGE - off - z) {
			snprintf(err, errlen, "bad delta page: runs reach past the page (offset %u + %u + %u)",
				 off, z, n);
			return -EPROTO;
		}
		if (n > len - pos) {
			snprintf(err, errlen, "bad delta page: %u changed bytes, %zu left", n,
				 len - pos);
			return -EPROTO;
		}
		off += z;
		if (page)
			for (uint32_t k = 0; k < n; k++)
				page[off + k] ^= in[pos + k];
		off += n;
		pos += n;
		first = false;
	}
	return 0;
}

int xbzrle_decode(const uint8_t *in, size_t len, uint8_t *page, char *err, size_t errlen)
{
	int ret = walk(in, len, NULL, err, errlen);

	return ret ? ret : walk(in, len, page, err, errlen);
}

int xbzrle_entry_next(const uint8_t *area, uint64_t len, uint64_t *pos, const uint8_t **enc,
		      uint32_t *enc_len, char *err, size_t errlen)
{
	uint32_t l;

	if (*pos > len || len - *pos < 2) {
		snprintf(err, errlen, "delta entry cut off");
		return -EPROTO;
	}
	l = (uint32_t)area[*pos] | (uint32_t)area[*pos + 1] << 8; /* u16, little-endian */
	*pos += 2;
	if (l > XBZ_MAX_ENC || l > len - *pos) {
		snprintf(err, errlen, "delta entry of %u bytes (at most %u, %llu left)", l,
			 XBZ_MAX_ENC, (unsigned long long)(len - *pos));
		return -EPROTO;
	}
	*enc = area + *pos;
	*enc_len = l;
	*pos += l;
	return 0;
}
