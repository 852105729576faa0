/* Port-I/O bus: registration, overlaps, dispatch, unmapped accesses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "devices/bus.h"

struct probe {
	uint64_t last_off;
	uint32_t last_len;
	bool last_write;
	uint8_t last_byte;
	int calls;
};

static void probe_io(void *dev, uint64_t off, uint8_t *data, uint32_t len, bool w)
{
	struct probe *p = dev;

	p->last_off = off;
	p->last_len = len;
	p->last_write = w;
	p->calls++;
	if (w)
		p->last_byte = data[0];
	else
		memset(data, 0x5a, len);
}

static void test_register_and_dispatch(void **state)
{
	struct bus b;
	struct probe a = { 0 }, c = { 0 };
	uint8_t d[4] = { 0x11 };

	(void)state;
	assert_int_equal(bus_init(&b), 0);
	assert_int_equal(bus_register(&b, 0x3f8, 8, "uart", probe_io, &a), 0);
	assert_int_equal(bus_register(&b, 0xf4, 4, "exit", probe_io, &c), 0);
	assert_true(bus_access(&b, 0x3fd, d, 1, false));
	assert_int_equal(a.last_off, 5);
	assert_int_equal(d[0], 0x5a);
	assert_true(bus_access(&b, 0x3f8, (uint8_t[]){ 'A' }, 1, true));
	assert_int_equal(a.last_byte, 'A');
	assert_true(a.last_write);
	assert_true(bus_access(&b, 0xf4, d, 4, true));
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.last_len, 4);
	bus_destroy(&b);
}

static void test_overlaps_rejected(void **state)
{
	struct bus b;
	struct probe p = { 0 };

	(void)state;
	bus_init(&b);
	assert_int_equal(bus_register(&b, 0x100, 0x10, "a", probe_io, &p), 0);
	assert_int_equal(bus_register(&b, 0x10f, 1, "b", probe_io, &p), -EEXIST);
	assert_int_equal(bus_register(&b, 0xf0, 0x11, "c", probe_io, &p), -EEXIST);
	assert_int_equal(bus_register(&b, 0x80, 0x200, "d", probe_io, &p), -EEXIST);
	assert_int_equal(bus_register(&b, 0x104, 2, "e", probe_io, &p), -EEXIST);
	assert_int_equal(bus_register(&b, 0x110, 1, "f", probe_io, &p), 0);
	assert_int_equal(bus_register(&b, 0xff, 1, "g", probe_io, &p), 0);
	assert_int_equal(bus_register(&b, 0x200, 0, "empty", probe_io, &p), -EINVAL);
	assert_int_equal(bus_register(&b, UINT64_MAX, 2, "wrap", probe_io, &p), -EINVAL);
	assert_int_equal(b.nregions, 3);
	bus_destroy(&b);
}

static void test_unmapped(void **state)
{
	struct bus b;
	struct probe p = { 0 };
	uint8_t d[4] = { 0, 0, 0, 0 };

	(void)state;
	bus_init(&b);
	bus_register(&b, 0x60, 4, "x", probe_io, &p);
	assert_false(bus_access(&b, 0x2f8, d, 2, false));
	assert_int_equal(d[0], 0xff);
	assert_int_equal(d[1], 0xff);
	assert_int_equal(d[2], 0); /* only len bytes are touched */
	assert_false(bus_access(&b, 0x2f8, d, 1, true));
	/* An access that straddles the end of a region is not the device's. */
	assert_false(bus_access(&b, 0x62, d, 4, false));
	assert_int_equal(p.calls, 0);
	bus_destroy(&b);
}

static void test_many_regions_sorted_lookup(void **state)
{
	struct bus b;
	struct probe p[BUS_MAX_REGIONS];

	(void)state;
	bus_init(&b);
	memset(p, 0, sizeof(p));
	/* Register in descending order; lookup must still find each one. */
	for (int i = BUS_MAX_REGIONS - 1; i >= 0; i--)
		assert_int_equal(bus_register(&b, 0x1000 + 0x10 * (uint64_t)i, 8, "r",
					      probe_io, &p[i]), 0);
	assert_int_equal(bus_register(&b, 0x9000, 1, "full", probe_io, &p[0]), -ENOSPC);
	for (int i = 0; i < BUS_MAX_REGIONS; i++) {
		uint8_t d;

		assert_true(bus_access(&b, 0x1000 + 0x10 * (uint64_t)i + 7, &d, 1, false));
		assert_int_equal(p[i].calls, 1);
		assert_int_equal(p[i].last_off, 7);
		assert_false(bus_access(&b, 0x1000 + 0x10 * (uint64_t)i + 8, &d, 1, false));
	}
	bus_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_and_dispatch),
		cmocka_unit_test(test_overlaps_rejected),
		cmocka_unit_test(test_unmapped),
		cmocka_unit_test(test_many_regions_sorted_lookup),
	};
	return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
