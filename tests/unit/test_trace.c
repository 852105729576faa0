// SPDX-License-Identifier: MIT
/* cmocka tests for migrate/trace.c: round trip, truncation, hostile records. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate/stats/trace.h"

static void tmp_path(char *buf, size_t n, const char *tag)
{
	snprintf(buf, n, "/tmp/test_trace_%d_%s.bin", (int)getpid(), tag);
}

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc((size_t)n + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

static void spit(const char *path, const uint8_t *b, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	if (len)
		assert_int_equal(fwrite(b, 1, len, f), len);
	fclose(f);
}

static void mask_tail(uint64_t *bm, uint64_t npages)
{
	if (npages & 63)
		bm[npages / 64] &= (1ull << (npages & 63)) - 1;
}

/* Write NROUNDS rounds of varied bitmaps, read them back, compare. */
static void roundtrip(uint64_t npages, uint64_t seed)
{
	char path[128];
	tmp_path(path, sizeof(path), "rt");
	size_t nw = trace_bitmap_words(npages);
	const int nrounds = 7;
	uint64_t **bms = calloc(nrounds, sizeof(*bms));
	struct trace t;
	assert_int_equal(trace_open(&t, path, npages, 4096), 0);
	for (int r = 0; r < nrounds; r++) {
		bms[r] = calloc(nw, 8);
		for (size_t w = 0; w < nw; w++) {
			switch (r) {
			case 0: bms[r][w] = ~0ull; break;                 /* everything */
			case 1: bms[r][w] = 0; break;                     /* nothing */
			case 2: bms[r][w] = rng_next(&seed); break;       /* random */
			case 3: bms[r][w] = 0xaaaaaaaaaaaaaaaaull; break; /* worst case */
			case 4: bms[r][w] = (w % 3 == 0) ? ~0ull : 0; break;
			case 5: bms[r][w] = rng_next(&seed) & rng_next(&seed) & rng_next(&seed); break;
			default: bms[r][w] = (w == nw - 1) ? ~0ull : 0; break; /* tail garbage */
			}
		}
		assert_int_equal(trace_round(&t, (uint32_t)r, 1000ull * (uint64_t)r, bms[r]), 0);
		mask_tail(bms[r], npages);
	}
	assert_int_equal(trace_close(&t), 0);

	struct trace_reader rd;
	assert_int_equal(trace_reader_open(&rd, path), 0);
	assert_int_equal(rd.npages, npages);
	assert_int_equal(rd.page_size, 4096);
	uint64_t *got = calloc(nw, 8);
	for (int r = 0; r < nrounds; r++) {
		struct trace_round_info info;
		assert_int_equal(trace_read_round(&rd, &info, got), 1);
		assert_int_equal(info.round, (uint32_t)r);
		assert_int_equal(info.t_ns, 1000ull * (uint64_t)r);
		uint64_t cnt = 0;
		for (size_t w = 0; w < nw; w++)
			cnt += (uint64_t)__builtin_popcountll(bms[r][w]);
		assert_int_equal(info.ndirty, cnt);
		assert_memory_equal(got, bms[r], nw * 8);
	}
	struct trace_round_info info;
	assert_int_equal(trace_read_round(&rd, &info, got), 0);
	assert_int_equal(trace_read_round(&rd, &info, got), 0);
	assert_int_equal(trace_reader_close(&rd), 0);
	for (int r = 0; r < nrounds; r++)
		free(bms[r]);
	free(bms);
	free(got);
	unlink(path);
}

static void test_roundtrip_sizes(void **state)
{
	(void)state;
	const uint64_t sizes[] = { 1, 2, 63, 64, 65, 127, 1000, 4096, 65537 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		roundtrip(sizes[i], 0x9e3779b97f4a7c15ull + i);
}

static void test_open_bad_args(void **state)
{
	(void)state;
	char path[128];
	tmp_path(path, sizeof(path), "args");
	struct trace t;
	assert_int_equal(trace_open(&t, path, 0, 4096), -EINVAL);
	assert_int_equal(trace_open(&t, path, 10, 4095), -EINVAL);
	assert_int_equal(trace_open(&t, path, 10, 256), -EINVAL);
	assert_int_equal(trace_open(&t, path, TRACE_MAX_NPAGES + 1, 4096), -EINVAL);
	assert_int_equal(trace_open(&t, "/nonexistent-dir/x/y", 10, 4096), -ENOENT);
	uint64_t bm = 1;
	assert_int_equal(trace_round(&t, 0, 0, &bm), -EINVAL); /* closed trace */
	assert_int_equal(trace_close(&t), 0);
	struct trace_reader rd;
	assert_int_equal(trace_reader_open(&rd, "/nonexistent-dir/x/y"), -ENOENT);
	unlink(path);
}

/* Every truncation of a valid file must be reported, never crash. */
static void test_truncated(void **state)
{
	(void)state;
	char path[128], cut[128];
	tmp_path(path, sizeof(path), "full");
	tmp_path(cut, sizeof(cut), "cut");
	const uint64_t npages = 300;
	uint64_t bm[5] = { 0xf0f0f0f0f0f0f0f0ull, 1, 0, ~0ull, 0x1234 };
	struct trace t;
	assert_int_equal(trace_open(&t, path, npages, 4096), 0);
	assert_int_equal(trace_round(&t, 0, 10, bm), 0);
	bm[2] = 0xdeadbeef;
	assert_int_equal(trace_round(&t, 1, 20, bm), 0);
	assert_int_equal(trace_close(&t), 0);
	size_t len;
	uint8_t *b = slurp(path, &len);
	uint64_t got[5];
	for (size_t n = 0; n < len; n++) {
		spit(cut, b, n);
		struct trace_reader rd;
		int ret = trace_reader_open(&rd, cut);
		if (n < TRACE_HEADER_SIZE) {
			assert_int_equal(ret, -EBADMSG);
			continue;
		}
		assert_int_equal(ret, 0);
		int rounds = 0;
		struct trace_round_info info;
		for (;;) {
			ret = trace_read_round(&rd, &info, got);
			if (ret != 1)
				break;
			rounds++;
		}
		assert_int_equal(ret, -ENODATA);
		assert_true(rounds <= 2);
		trace_reader_close(&rd);
	}
	free(b);
	unlink(path);
	unlink(cut);
}

/* Flip every byte in turn: the reader must reject or return valid data, never crash. */
static void test_corrupted(void **state)
{
	(void)state;
	char path[128], bad[128];
	tmp_path(path, sizeof(path), "ok");
	tmp_path(bad, sizeof(bad), "bad");
	const uint64_t npages = 200;
	uint64_t bm[4] = { 0x00ff00ff00ff00ffull, 0x8000000000000001ull, 0, 0xff };
	struct trace t;
	assert_int_equal(trace_open(&t, path, npages, 4096), 0);
	assert_int_equal(trace_round(&t, 0, 5, bm), 0);
	assert_int_equal(trace_close(&t), 0);
	size_t len;
	uint8_t *b = slurp(path, &len);
	uint64_t got[4];
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			b[i] ^= (uint8_t)(1u << bit);
			spit(bad, b, len);
			struct trace_reader rd;
			int ret = trace_reader_open(&rd, bad);
			if (ret == 0 && rd.npages != npages) {
				/* a flipped npages bit: our buffer does not fit */
				trace_reader_close(&rd);
			} else if (ret == 0) {
				struct trace_round_info info;
				int k = 0;
				while ((ret = trace_read_round(&rd, &info, got)) == 1 && k < 4)
					k++;
				/* header fields that are not checked (flags, start time)
				 * may change; everything else must be detected */
				if (i >= TRACE_HEADER_SIZE)
					assert_true(ret < 0);
				trace_reader_close(&rd);
			}
			b[i] ^= (uint8_t)(1u << bit);
		}
	}
	free(b);
	unlink(path);
	unlink(bad);
}

static uint32_t crc32_ref(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
	}
	return ~c;
}

/* A record with a valid CRC but runs that leave the bitmap must be rejected. */
static void test_hostile_runs(void **state)
{
	(void)state;
	char path[128];
	tmp_path(path, sizeof(path), "hostile");
	struct {
		uint32_t nruns;
		uint64_t ndirty;
		uint8_t payload[16];
		uint32_t plen;
	} cases[] = {
		{ 1, 20, { 0, 20 }, 2 },                   /* 20 pages > npages (16) */
		{ 1, 1, { 16, 1 }, 2 },                    /* starts at npages */
		{ 2, 2, { 0, 1, 0, 1 }, 4 },               /* gap 0 after first run */
		{ 1, 0, { 3, 0 }, 2 },                     /* empty run */
		{ 1, 5, { 0, 4 }, 2 },                     /* ndirty mismatch */
		{ 1, 1, { 0x80, 0x80 }, 2 },               /* unterminated varint */
		{ 1, 1, { 0, 1, 0 }, 3 },                  /* trailing byte */
		{ 9, 9, { 0 }, 2 },                        /* nruns > npages/2 */
		{ 1, 1, { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1 }, 11 },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint8_t f[TRACE_HEADER_SIZE + TRACE_REC_HEADER_SIZE + 16 + 4];
		memset(f, 0, sizeof(f));
		memcpy(f, TRACE_MAGIC, 8);
		f[8] = 1;
		f[12] = TRACE_HEADER_SIZE;
		f[17] = 0x10; /* page size 4096 */
		f[24] = 16;   /* npages */
		uint8_t *r = f + TRACE_HEADER_SIZE;
		memcpy(r, "RND1", 4);
		r[16] = (uint8_t)cases[c].ndirty;
		r[24] = (uint8_t)cases[c].nruns;
		r[28] = (uint8_t)cases[c].plen;
		memcpy(r + TRACE_REC_HEADER_SIZE, cases[c].payload, cases[c].plen);
		size_t rl = TRACE_REC_HEADER_SIZE + cases[c].plen;
		uint32_t crc = crc32_ref(r, rl);
		for (int i = 0; i < 4; i++)
			r[rl + i] = (uint8_t)(crc >> (8 * i));
		spit(path, f, TRACE_HEADER_SIZE + rl + 4);
		struct trace_reader rd;
		assert_int_equal(trace_reader_open(&rd, path), 0);
		struct trace_round_info info;
		uint64_t got[1];
		int ret = trace_read_round(&rd, &info, got);
		if (ret != -EBADMSG)
			print_error("case %zu: ret %d\n", c, ret);
		assert_int_equal(ret, -EBADMSG);
		trace_reader_close(&rd);
	}
	/* A valid hand-made record is accepted (guards against a vacuous test). */
	{
		uint8_t f[TRACE_HEADER_SIZE + TRACE_REC_HEADER_SIZE + 4 + 4];
		memset(f, 0, sizeof(f));
		memcpy(f, TRACE_MAGIC, 8);
		f[8] = 1;
		f[12] = TRACE_HEADER_SIZE;
		f[17] = 0x10;
		f[24] = 16;
		uint8_t *r = f + TRACE_HEADER_SIZE;
		memcpy(r, "RND1", 4);
		r[16] = 3;
		r[24] = 2;
		r[28] = 4;
		uint8_t pl[4] = { 2, 1, 3, 2 }; /* pages 2, 6, 7 */
		memcpy(r + TRACE_REC_HEADER_SIZE, pl, 4);
		uint32_t crc = crc32_ref(r, TRACE_REC_HEADER_SIZE + 4);
		for (int i = 0; i < 4; i++)
			r[TRACE_REC_HEADER_SIZE + 4 + i] = (uint8_t)(crc >> (8 * i));
		spit(path, f, sizeof(f));
		struct trace_reader rd;
		assert_int_equal(trace_reader_open(&rd, path), 0);
		struct trace_round_info info;
		uint64_t got[1];
		assert_int_equal(trace_read_round(&rd, &info, got), 1);
		assert_int_equal(got[0], (1ull << 2) | (1ull << 6) | (1ull << 7));
		assert_int_equal(trace_read_round(&rd, &info, got), -ENODATA); /* no END */
		trace_reader_close(&rd);
	}
	unlink(path);
}

static void test_bad_headers(void **state)
{
	(void)state;
	char path[128];
	tmp_path(path, sizeof(path), "hdr");
	uint8_t h[TRACE_HEADER_SIZE];
	struct trace_reader rd;
	/* version 2 */
	memset(h, 0, sizeof(h));
	memcpy(h, TRACE_MAGIC, 8);
	h[8] = 2;
	h[12] = TRACE_HEADER_SIZE;
	h[17] = 0x10;
	h[24] = 1;
	spit(path, h, sizeof(h));
	assert_int_equal(trace_reader_open(&rd, path), -EBADMSG);
	h[8] = 1;
	h[17] = 0x11; /* page size not a power of two */
	spit(path, h, sizeof(h));
	assert_int_equal(trace_reader_open(&rd, path), -EBADMSG);
	h[17] = 0x10;
	h[24] = 0; /* zero pages */
	spit(path, h, sizeof(h));
	assert_int_equal(trace_reader_open(&rd, path), -EBADMSG);
	h[24] = 1;
	spit(path, h, sizeof(h));
	assert_int_equal(trace_reader_open(&rd, path), 0);
	struct trace_round_info info;
	uint64_t got[1];
	assert_int_equal(trace_read_round(&rd, &info, got), -ENODATA);
	trace_reader_close(&rd);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_sizes),
		cmocka_unit_test(test_open_bad_args),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_corrupted),
		cmocka_unit_test(test_hostile_runs),
		cmocka_unit_test(test_bad_headers),
	};
	return cmocka_run_group_tests_name("trace", tests, NULL, NULL);
}
