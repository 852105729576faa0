/* The buses: registration, overlaps, dispatch, unmapped accesses; the MMIO
 * bus and the device list's registration on both buses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "devices/bus.h"
#include "devices/device.h"

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

static const struct device_ops probe_ops = { .name = "probe" };

static struct device probe_dev(struct probe *p, enum bus_kind kind, uint64_t base,
			       uint64_t len)
{
	return (struct device){
		.ops = &probe_ops, .state = p, .nio = 1,
		.io = { { kind, base, len, NULL, probe_io } },
	};
}

static void test_mmio_bus(void **state)
{
	struct bus pio, mmio;
	struct device_list l;
	struct probe a = { 0 }, pp = { 0 };
	struct device d;
	uint8_t v[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	char err[256] = "";

	(void)state;
	assert_int_equal(device_list_init(&l, &pio, &mmio), 0);
	/* Both buses run under the list's one lock. */
	assert_ptr_equal(pio.lock, &l.lock);
	assert_ptr_equal(mmio.lock, &l.lock);
	d = probe_dev(&a, BUS_MMIO, 0xd0000000, 0x1000);
	assert_int_equal(device_add(&l, &d, err, sizeof(err)), 0);
	assert_int_equal(mmio.nregions, 1);
	assert_int_equal(pio.nregions, 0);
	/* The same address on the other bus is another device's. */
	d = probe_dev(&pp, BUS_PIO, 0xd0000000, 0x10);
	assert_int_equal(device_add(&l, &d, err, sizeof(err)), 0);

	/* A registered range: offset and width reach the device. */
	assert_true(bus_access(&mmio, 0xd0000ff8, v, 8, false));
	assert_int_equal(a.last_off, 0xff8);
	assert_int_equal(a.last_len, 8);
	assert_int_equal(v[7], 0x5a);
	assert_true(bus_access(&mmio, 0xd0000010, (uint8_t[]){ 0x42, 0, 0, 0 }, 4, true));
	assert_int_equal(a.last_byte, 0x42);
	assert_int_equal(a.calls, 2);
	assert_int_equal(pp.calls, 0);

	/* Unmapped: reads are all-ones, writes reach nobody. */
	memset(v, 0, sizeof(v));
	assert_false(bus_access(&mmio, 0xfeb00000, v, 8, false));
	for (int i = 0; i < 8; i++)
		assert_int_equal(v[i], 0xff);
	assert_false(bus_access(&mmio, 0xfeb00000, v, 4, true));
	assert_false(bus_access(&mmio, 0xd0000ffc, v, 8, false)); /* straddles the end */
	assert_int_equal(a.calls, 2);

	/* Overlap refused, with a message naming the device and range. */
	d = probe_dev(&pp, BUS_MMIO, 0xd0000800, 0x1000);
	assert_int_equal(device_add(&l, &d, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "probe"));
	assert_non_null(strstr(err, "MMIO"));
	assert_int_equal(mmio.nregions, 1);
	assert_int_equal(l.n, 2);
	device_list_destroy(&l);
}

/* A device whose second range collides registers none of them. */
static void test_device_add_all_or_nothing(void **state)
{
	static const struct device_ops ops2 = { .name = "two", .state_type = 0x0042 };
	struct bus pio, mmio;
	struct device_list l;
	struct probe a = { 0 };
	struct device d = probe_dev(&a, BUS_PIO, 0x60, 4), e;
	char err[256] = "";

	(void)state;
	assert_int_equal(device_list_init(&l, &pio, &mmio), 0);
	assert_int_equal(device_add(&l, &d, err, sizeof(err)), 0);
	e = (struct device){
		.ops = &ops2, .state = &a, .nio = 2,
		.io = { { BUS_MMIO, 0x1000, 0x100, "ok", probe_io },
			{ BUS_PIO, 0x62, 1, "clash", probe_io } },
	};
	assert_int_equal(device_add(&l, &e, err, sizeof(err)), -EEXIST);
	assert_int_equal(mmio.nregions, 0);
	assert_int_equal(pio.nregions, 1);
	assert_null(device_find(&l, "two"));
	e.io[1].base = 0x70;
	assert_int_equal(device_add(&l, &e, err, sizeof(err)), 0);
	assert_ptr_equal(device_find(&l, "two"), device_find_state(&l, 0x0042));
	/* A second owner of one section type would make vmstate ambiguous. */
	e.io[0].base = 0x2000;
	e.io[1].base = 0x80;
	assert_int_equal(device_add(&l, &e, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "0x42"));
	assert_int_equal(bus_unregister(&pio, 0x60), 0);
	assert_int_equal(bus_unregister(&pio, 0x60), -ENOENT);
	device_list_destroy(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_and_dispatch),
		cmocka_unit_test(test_overlaps_rejected),
		cmocka_unit_test(test_unmapped),
		cmocka_unit_test(test_many_regions_sorted_lookup),
		cmocka_unit_test(test_mmio_bus),
		cmocka_unit_test(test_device_add_all_or_nothing),
	};
	return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
