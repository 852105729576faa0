// SPDX-License-Identifier: MIT
/*
 * Dirty-page trace: writer and reader. Format in docs/dirty-trace.md.
 *
 * File   = header(40) round* end
 * header = "MVDTRACE" u32 version u32 header_size u32 page_size u32 flags
 *          u64 npages u64 start_unix_ns                      (little-endian)
 * record = u32 type u32 round u64 t_ns u64 ndirty u32 nruns u32 payload_len
 *          payload[payload_len] u32 crc32(record header + payload)
 * payload = nruns x (uleb128 gap, uleb128 len): gap = start - end of the
 *          previous run (0 before the first run), len >= 1, gap >= 1 after
 *          the first run (runs are maximal).
 */
#include "migrate/stats/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TRACE_MAX_PAYLOAD (1u << 31)

static void crc_init(uint32_t table[256])
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		table[i] = c;
	}
}

static uint32_t crc_update(const uint32_t table[256], uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static size_t put_uleb(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	do {
		uint8_t b = v & 0x7f;
		v >>= 7;
		p[n++] = b | (v ? 0x80 : 0);
	} while (v);
	return n;
}

/* Returns bytes consumed, 0 on malformed/truncated input. */
static size_t get_uleb(const uint8_t *p, size_t avail, uint64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < avail && i < 10; i++) {
		uint64_t b = p[i] & 0x7f;
		if (i == 9 && b > 1)
			return 0;
		v |= b << (7 * i);
		if (!(p[i] & 0x80)) {
			*out = v;
			return i + 1;
		}
	}
	return 0;
}

static int write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Returns bytes read (short only at EOF) or -errno. */
static ssize_t read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static int ensure_cap(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 4096;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return -ENOMEM;
		ncap *= 2;
	}
	uint8_t *nb = realloc(*buf, ncap);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = ncap;
	return 0;
}

size_t trace_bitmap_words(uint64_t npages)
{
	return (size_t)((npages + 63) / 64);
}

int trace_open(struct trace *t, const char *path, uint64_t npages, uint32_t page_size)
{
	if (!t || !path)
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	t->fd = -1;
	if (npages == 0 || npages > TRACE_MAX_NPAGES)
		return -EINVAL;
	if (page_size < 512 || (page_size & (page_size - 1)))
		return -EINVAL;
	crc_init(t->crc_table);
	t->npages = npages;
	t->page_size = page_size;

	/* New, 0600, never through a symlink (an existing file: EEXIST). */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;

	uint8_t h[TRACE_HEADER_SIZE];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	memcpy(h, TRACE_MAGIC, 8);
	put_u32(h + 8, TRACE_VERSION);
	put_u32(h + 12, TRACE_HEADER_SIZE);
	put_u32(h + 16, page_size);
	put_u32(h + 20, 0);
	put_u64(h + 24, npages);
	put_u64(h + 32, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
	int ret = write_all(fd, h, sizeof(h));
	if (ret < 0) {
		close(fd);
		return ret;
	}
	t->fd = fd;
	return 0;
}

static int write_record(struct trace *t, uint32_t type, uint32_t round, uint64_t t_ns,
			uint64_t ndirty, uint32_t nruns, size_t payload_len)
{
	/* t->buf holds [header space | payload | crc space] */
	uint8_t *h = t->buf;
	put_u32(h, type);
	put_u32(h + 4, round);
	put_u64(h + 8, t_ns);
	put_u64(h + 16, ndirty);
	put_u32(h + 24, nruns);
	put_u32(h + 28, (uint32_t)payload_len);
	size_t len = TRACE_REC_HEADER_SIZE + payload_len;
	put_u32(h + len, crc_update(t->crc_table, 0, h, len));
	return write_all(t->fd, h, len + 4);
}

int trace_round(struct trace *t, uint32_t round, uint64_t t_ns, const uint64_t *bitmap)
{
	if (!t || t->fd < 0 || !bitmap)
		return -EINVAL;
	size_t nwords = trace_bitmap_words(t->npages);

	/* Pass 1: count runs to size the buffer (20 bytes per run worst case). */
	uint64_t nruns = 0, ndirty = 0;
	int prev = 0;
	for (size_t w = 0; w < nwords; w++) {
		uint64_t v = bitmap[w];
		if (w == nwords - 1 && (t->npages & 63))
			v &= (1ull << (t->npages & 63)) - 1;
		ndirty += (uint64_t)__builtin_popcountll(v);
		/* runs start where bit i is set and bit i-1 is clear */
		uint64_t starts = v & ~((v << 1) | (uint64_t)prev);
		nruns += (uint64_t)__builtin_popcountll(starts);
		prev = (int)(v >> 63);
	}
	if (nruns > UINT32_MAX || nruns * 20 > TRACE_MAX_PAYLOAD)
		return -E2BIG;
	int ret = ensure_cap(&t->buf, &t->buf_cap, TRACE_REC_HEADER_SIZE + (size_t)nruns * 20 + 4);
	if (ret < 0)
		return ret;

	/* Pass 2: encode maximal runs. */
	uint8_t *p = t->buf + TRACE_REC_HEADER_SIZE;
	uint64_t prev_end = 0, i = 0;
	while (i < t->npages) {
		size_t w = (size_t)(i / 64);
		uint64_t v = bitmap[w] >> (i & 63);
		if (!v) {
			i = (uint64_t)(w + 1) * 64;
			continue;
		}
		i += (uint64_t)__builtin_ctzll(v);
		if (i >= t->npages)
			break;
		uint64_t start = i;
		/* find the end of the run */
		for (;;) {
			w = (size_t)(i / 64);
			uint64_t inv = ~bitmap[w] >> (i & 63);
			if (inv) {
				i += (uint64_t)__builtin_ctzll(inv);
				break;
			}
			i = (uint64_t)(w + 1) * 64;
			if (i >= t->npages)
				break;
		}
		if (i > t->npages)
			i = t->npages;
		p += put_uleb(p, start - prev_end);
		p += put_uleb(p, i - start);
		prev_end = i;
	}
	size_t payload_len = (size_t)(p - (t->buf + TRACE_REC_HEADER_SIZE));
	ret = write_record(t, TRACE_REC_ROUND, round, t_ns, ndirty, (uint32_t)nruns, payload_len);
	if (ret < 0)
		return ret;
	t->nrounds++;
	return 0;
}

int trace_close(struct trace *t)
{
	if (!t)
		return -EINVAL;
	int ret = 0;
	if (t->fd >= 0) {
		ret = ensure_cap(&t->buf, &t->buf_cap, TRACE_REC_HEADER_SIZE + 4);
		if (ret == 0)
			ret = write_record(t, TRACE_REC_END, t->nrounds, 0, 0, 0, 0);
		if (close(t->fd) < 0 && ret == 0)
			ret = -errno;
		t->fd = -1;
	}
	free(t->buf);
	t->buf = NULL;
	t->buf_cap = 0;
	return ret;
}

/* ---- reader ------------------------------------------------------------ */

int trace_reader_open(struct trace_reader *r, const char *path)
{
	if (!r || !path)
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	crc_init(r->crc_table);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	uint8_t h[TRACE_HEADER_SIZE];
	ssize_t n = read_full(fd, h, sizeof(h));
	if (n < 0) {
		close(fd);
		return (int)n;
	}
	if ((size_t)n < 12 || memcmp(h, TRACE_MAGIC, 8) != 0) {
		close(fd);
		return -EBADMSG;
	}
	uint32_t version = get_u32(h + 8);
	uint32_t hsize = get_u32(h + 12);
	if (version != TRACE_VERSION || hsize != TRACE_HEADER_SIZE || (size_t)n < TRACE_HEADER_SIZE) {
		close(fd);
		return -EBADMSG;
	}
	uint32_t ps = get_u32(h + 16);
	uint64_t np = get_u64(h + 24);
	if (ps < 512 || (ps & (ps - 1)) || np == 0 || np > TRACE_MAX_NPAGES) {
		close(fd);
		return -EBADMSG;
	}
	r->fd = fd;
	r->version = version;
	r->page_size = ps;
	r->npages = np;
	r->start_unix_ns = get_u64(h + 32);
	return 0;
}

int trace_read_round(struct trace_reader *r, struct trace_round_info *info, uint64_t *bitmap)
{
	if (!r || r->fd < 0 || !info || !bitmap)
		return -EINVAL;
	if (r->ended)
		return 0;
	uint8_t h[TRACE_REC_HEADER_SIZE];
	ssize_t n = read_full(r->fd, h, sizeof(h));
	if (n < 0)
		return (int)n;
	if (n == 0)
		return -ENODATA;
	if ((size_t)n < sizeof(h))
		return -ENODATA;
	uint32_t type = get_u32(h);
	uint32_t nruns = get_u32(h + 24);
	uint32_t plen = get_u32(h + 28);
	uint64_t ndirty = get_u64(h + 16);
	if (type != TRACE_REC_ROUND && type != TRACE_REC_END)
		return -EBADMSG;
	if (type == TRACE_REC_END && (nruns || plen || ndirty))
		return -EBADMSG;
	/* each run needs at least 2 bytes and at most 20; runs are maximal so
	 * there are at most ceil(npages/2) of them */
	if (ndirty > r->npages || nruns > (r->npages + 1) / 2 || plen > TRACE_MAX_PAYLOAD ||
	    (uint64_t)plen < 2ull * nruns || (uint64_t)plen > 20ull * nruns)
		return -EBADMSG;
	int ret = ensure_cap(&r->buf, &r->buf_cap, sizeof(h) + plen + 4);
	if (ret < 0)
		return ret;
	memcpy(r->buf, h, sizeof(h));
	n = read_full(r->fd, r->buf + sizeof(h), (size_t)plen + 4);
	if (n < 0)
		return (int)n;
	if ((size_t)n < (size_t)plen + 4)
		return -ENODATA;
	size_t len = sizeof(h) + plen;
	if (crc_update(r->crc_table, 0, r->buf, len) != get_u32(r->buf + len))
		return -EBADMSG;
	if (type == TRACE_REC_END) {
		if (get_u32(h + 4) != r->rounds_read)
			return -EBADMSG;
		r->ended = 1;
		return 0;
	}

	memset(bitmap, 0, trace_bitmap_words(r->npages) * sizeof(uint64_t));
	const uint8_t *p = r->buf + sizeof(h), *end = p + plen;
	uint64_t pos = 0, total = 0;
	for (uint32_t k = 0; k < nruns; k++) {
		uint64_t gap, rl;
		size_t c = get_uleb(p, (size_t)(end - p), &gap);
		if (!c)
			return -EBADMSG;
		p += c;
		c = get_uleb(p, (size_t)(end - p), &rl);
		if (!c)
			return -EBADMSG;
		p += c;
		if ((k > 0 && gap == 0) || rl == 0 || gap > r->npages - pos ||
		    rl > r->npages - pos - gap)
			return -EBADMSG;
		pos += gap;
		for (uint64_t b = pos; b < pos + rl;) {
			if ((b & 63) == 0 && pos + rl - b >= 64) {
				bitmap[b / 64] = ~0ull;
				b += 64;
			} else {
				bitmap[b / 64] |= 1ull << (b & 63);
				b++;
			}
		}
		pos += rl;
		total += rl;
	}
	if (p != end || total != ndirty)
		return -EBADMSG;
	info->round = get_u32(h + 4);
	info->t_ns = get_u64(h + 8);
	info->ndirty = ndirty;
	info->nruns = nruns;
	r->rounds_read++;
	return 1;
}

int trace_reader_close(struct trace_reader *r)
{
	if (!r)
		return -EINVAL;
	int ret = 0;
	if (r->fd >= 0 && close(r->fd) < 0)
		ret = -errno;
	r->fd = -1;
	free(r->buf);
	r->buf = NULL;
	r->buf_cap = 0;
	return ret;
}
