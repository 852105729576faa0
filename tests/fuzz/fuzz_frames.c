/* The stream's pure decoders (migrate/proto/stream.c) and the payloads a
 * handshake carries (the CPU description, DEVICES, a delta page, post-copy's
 * delta area): the first byte picks the decoder, the rest is its input. A
 * HELLO or DEVICES that decodes must encode back to what decodes the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/proto/stream.h"
#include "migrate/ram/xbzrle.h"
#include "migrate/state/cpucompat.h"
#include "migrate/state/devcfg.h"

#define NPAGES 512 /* 2 MiB of RAM */

static void hello(const uint8_t *d, size_t n)
{
	struct hello h, h2;
	char err[256];
	uint8_t *out;
	int len;

	if (stream_hello_decode(d, n, &h, err, sizeof(err)) < 0)
		return;
	out = malloc(HELLO_FIXED_LEN + h.compat_len);
	if (!out)
		return;
	len = stream_hello_encode(&h, out, HELLO_FIXED_LEN + h.compat_len);
	if (len < 0 || stream_hello_decode(out, (size_t)len, &h2, err, sizeof(err)) < 0 ||
	    h2.mem_size != h.mem_size || h2.ncpus != h.ncpus || h2.flags != h.flags ||
	    strcmp(h2.name, h.name) || h2.compat_len != h.compat_len ||
	    memcmp(h2.compat, h.compat, h.compat_len))
		abort();
	free(out);
}

static void pages(const uint8_t *d, size_t n)
{
	static struct page_run runs[PAGES_MAX_RUNS];
	uint64_t table, data, delta;
	char err[256];
	int nr;

	if (n < PAGES_HDR_LEN)
		return;
	if (stream_pages_table_len(d, n, &table, err, sizeof(err)) < 0)
		return;
	nr = stream_pages_decode(d, n, NPAGES, runs, PAGES_MAX_RUNS, &data, &delta, err,
				 sizeof(err));
	if (nr < 0)
		return;
	/* What the decoder let through is what the receiver trusts. */
	for (int i = 0; i < nr; i++)
		if (runs[i].count == 0 || runs[i].first >= NPAGES ||
		    runs[i].count > NPAGES - runs[i].first || runs[i].kind > PAGE_RUN_DELTA)
			abort();
	if (data + delta > PAGES_MAX_DATA_PAGES)
		abort();
}

static void devices(const uint8_t *d, size_t n)
{
	struct devcfg c, c2;
	uint8_t out[DEVICES_MAX_LEN];
	char err[256];
	int len;

	if (devcfg_decode(d, n, &c, err, sizeof(err)) < 0)
		return;
	len = devcfg_encode(&c, out, sizeof(out));
	if (len < 0) /* nothing to say: no NIC */
		return;
	if (len > 0 && (devcfg_decode(out, (size_t)len, &c2, err, sizeof(err)) < 0 ||
			c2.nic != c.nic || memcmp(c2.mac, c.mac, 6) ||
			strcmp(c2.bridge, c.bridge)))
		abort();
}

/* A refused delta changes nothing; an accepted one re-encodes to the
 * same page. */
static void delta(const uint8_t *d, size_t n)
{
	static uint8_t old[4096], page[4096], again[4096], enc[8192];
	char err[256];
	int len;

	memset(old, 0x5a, sizeof(old));
	memcpy(page, old, sizeof(page));
	if (xbzrle_decode(d, n, page, err, sizeof(err)) < 0) {
		if (memcmp(page, old, sizeof(page)))
			abort();
		return;
	}
	len = xbzrle_encode(old, page, enc, sizeof(enc));
	memcpy(again, old, sizeof(again));
	if (len < 0 || xbzrle_decode(enc, (size_t)len, again, err, sizeof(err)) < 0 ||
	    memcmp(again, page, sizeof(page)))
		abort();
}

/* A frame's delta entries (xbzrle_entry_next, both receivers' walk):
 * every entry it accepts lies inside the area and within the codec's
 * bound. */
static void pc_area(const uint8_t *d, size_t n)
{
	static uint8_t page[4096];
	const uint8_t *enc;
	uint64_t pos = 0;
	uint32_t len;
	char err[256];

	while (pos < n) {
		if (xbzrle_entry_next(d, n, &pos, &enc, &len, err, sizeof(err)) < 0)
			return;
		if (enc < d || len > XBZ_MAX_ENC || (size_t)(enc - d) + len > n || pos > n)
			abort();
		memset(page, 0x5a, sizeof(page));
		(void)xbzrle_decode(enc, len, page, err, sizeof(err));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stream_hdr h;
	struct cpucompat cc;
	char err[256];

	if (size < 1)
		return 0;
	switch (data[0] % 8) {
	case 0:
		if (size - 1 >= STREAM_PREAMBLE_LEN)
			stream_preamble_decode(data + 1, err, sizeof(err));
		break;
	case 1:
		if (size - 1 >= STREAM_HDR_LEN && stream_hdr_decode(data + 1, &h, err, sizeof(err)) == 0 &&
		    h.len > stream_max_len(h.type))
			abort();
		break;
	case 2:
		hello(data + 1, size - 1);
		break;
	case 3:
		pages(data + 1, size - 1);
		break;
	case 4:
		if (cpucompat_decode(&cc, data + 1, size - 1, err, sizeof(err)) == 0)
			cpucompat_check(&cc, &cc, err, sizeof(err));
		break;
	case 5:
		devices(data + 1, size - 1);
		break;
	case 6:
		delta(data + 1, size - 1);
		break;
	case 7:
		pc_area(data + 1, size - 1);
		break;
	}
	return 0;
}
