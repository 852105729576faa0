/* The 8250/16550A register behaviour, interrupts and save/restore; the
 * UART, console and exit ports driven through the device interface. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/conline.h"
#include "devices/device.h"
#include "devices/exitdev.h"
#include "devices/uart.h"
#include "vmm/core/clock.h"

struct host {
	int level;
	int edges;
	char out[256];
	size_t out_len;
};

static void irq(void *opaque, int level)
{
	struct host *h = opaque;

	if (level != h->level)
		h->edges++;
	h->level = level;
}

static void tx(void *opaque, uint8_t b)
{
	struct host *h = opaque;

	if (h->out_len < sizeof(h->out))
		h->out[h->out_len++] = (char)b;
}

static uint8_t rd(struct uart *u, unsigned reg)
{
	uint8_t v;

	uart_io(u, reg, &v, 1, false);
	return v;
}

static void wr(struct uart *u, unsigned reg, uint8_t v)
{
	uart_io(u, reg, &v, 1, true);
}

static void test_reset_values(void **state)
{
	struct uart u;
	struct host h = { 0 };

	(void)state;
	uart_init(&u, irq, tx, &h);
	assert_int_equal(rd(&u, 5), 0x60); /* LSR: THRE | TEMT */
	assert_int_equal(rd(&u, 2) & 0x0f, 0x01); /* IIR: no interrupt */
	assert_int_equal(rd(&u, 6), 0xb0);
	assert_int_equal(h.level, 0);
}

static void test_transmit_and_scratch(void **state)
{
	struct uart u;
	struct host h = { 0 };

	(void)state;
	uart_init(&u, irq, tx, &h);
	for (const char *s = "hi\n"; *s; s++)
		wr(&u, 0, (uint8_t)*s);
	assert_int_equal(h.out_len, 3);
	assert_memory_equal(h.out, "hi\n", 3);
	wr(&u, 7, 0xa5);
	assert_int_equal(rd(&u, 7), 0xa5);
	wr(&u, 1, 0xff);
	assert_int_equal(rd(&u, 1), 0x0f); /* IER keeps the low nibble */
}

static void test_divisor_latch(void **state)
{
	struct uart u;
	struct host h = { 0 };

	(void)state;
	uart_init(&u, irq, tx, &h);
	wr(&u, 3, 0x80); /* DLAB */
	wr(&u, 0, 0x01);
	wr(&u, 1, 0x00);
	assert_int_equal(rd(&u, 0), 0x01);
	assert_int_equal(rd(&u, 1), 0x00);
	assert_int_equal(h.out_len, 0); /* divisor writes are not output */
	wr(&u, 3, 0x03);
	assert_int_equal(rd(&u, 3), 0x03);
}

static void test_receive_interrupt(void **state)
{
	struct uart u;
	struct host h = { 0 };

	(void)state;
	uart_init(&u, irq, tx, &h);
	assert_int_equal(uart_receive(&u, (const uint8_t *)"ab", 2), 2);
	assert_int_equal(rd(&u, 5) & 1, 1); /* DR */
	assert_int_equal(h.level, 0);       /* RDI not enabled yet */
	wr(&u, 1, 0x01);
	assert_int_equal(h.level, 1);
	assert_int_equal(rd(&u, 2) & 0x0f, 0x04); /* RDI pending */
	assert_int_equal(rd(&u, 0), 'a');
	assert_int_equal(h.level, 1);
	assert_int_equal(rd(&u, 0), 'b');
	assert_int_equal(h.level, 0);
	assert_int_equal(rd(&u, 5) & 1, 0);
	assert_int_equal(rd(&u, 0), 0); /* empty FIFO reads 0 */
}

static void test_thr_empty_interrupt_edges(void **state)
{
	struct uart u;
	struct host h = { 0 };

	(void)state;
	uart_init(&u, irq, tx, &h);
	wr(&u, 1, 0x02); /* THRI: line rises, transmitter is empty */
	assert_int_equal(h.level, 1);
	assert_int_equal(rd(&u, 2) & 0x0f, 0x02);
	wr(&u, 0, 'x');
	assert_int_equal(h.level, 1);
	assert_int_equal(h.edges, 1); /* only changes are signalled */
	wr(&u, 1, 0x00);
	assert_int_equal(h.level, 0);
	wr(&u, 1, 0x02);
	assert_int_equal(h.edges, 3); /* a new edge for the PIC */
}

static void test_fifo_full_and_clear(void **state)
{
	struct uart u;
	struct host h = { 0 };
	uint8_t buf[100];

	(void)state;
	memset(buf, 'z', sizeof(buf));
	uart_init(&u, irq, tx, &h);
	assert_int_equal(uart_receive(&u, buf, sizeof(buf)), UART_FIFO_LEN);
	assert_int_equal(uart_rx_space(&u), 0);
	wr(&u, 2, 0x03); /* enable + clear RX FIFO */
	assert_int_equal(uart_rx_space(&u), UART_FIFO_LEN);
	assert_int_equal(rd(&u, 5) & 1, 0);
	assert_int_equal(rd(&u, 2) & 0xc0, 0xc0); /* FIFO bits: a 16550A */
}

static void test_loopback(void **state)
{
	struct uart u;
	struct host h = { 0 };

	(void)state;
	uart_init(&u, irq, tx, &h);
	wr(&u, 4, 0x10);
	wr(&u, 0, 'L');
	assert_int_equal(h.out_len, 0);
	assert_int_equal(rd(&u, 0), 'L');
}

static void test_save_restore(void **state)
{
	struct uart a, b;
	struct host ha = { 0 }, hb = { 0 };
	uint8_t blob[UART_STATE_SIZE];

	(void)state;
	uart_init(&a, irq, tx, &ha);
	wr(&a, 1, 0x01);
	wr(&a, 7, 0x42);
	uart_receive(&a, (const uint8_t *)"xyz", 3);
	assert_int_equal(rd(&a, 0), 'x'); /* FIFO head moves: restore must linearise */
	uart_save(&a, blob);
	uart_init(&b, irq, tx, &hb);
	assert_int_equal(uart_load(&b, blob, sizeof(blob)), 0);
	assert_int_equal(rd(&b, 7), 0x42);
	assert_int_equal(hb.level, 1);
	assert_int_equal(rd(&b, 0), 'y');
	assert_int_equal(rd(&b, 0), 'z');
	assert_int_equal(hb.level, 0);
	/* hostile blobs */
	assert_int_equal(uart_load(&b, blob, sizeof(blob) - 1), -EINVAL);
	blob[0] = 99;
	assert_int_equal(uart_load(&b, blob, sizeof(blob)), -EINVAL);
	blob[0] = UART_STATE_VERSION;
	blob[12] = UART_FIFO_LEN + 1;
	assert_int_equal(uart_load(&b, blob, sizeof(blob)), -EINVAL);
}

struct exit_host {
	int status;
	int calls;
};

static void on_exit_cb(void *opaque, int status, const char *why)
{
	struct exit_host *e = opaque;

	(void)why;
	e->status = status;
	e->calls++;
}

static void test_exit_ports(void **state)
{
	struct exitdev d;
	struct exit_host e = { -1, 0 };
	uint8_t v[4] = { 0, 0, 0, 0 };

	(void)state;
	exitdev_init(&d, on_exit_cb, &e);
	exitdev_debug_io(&d, 0, v, 4, true);
	assert_int_equal(e.status, 1); /* (0 << 1) | 1, as QEMU */
	v[0] = 1;
	exitdev_debug_io(&d, 0, v, 1, true);
	assert_int_equal(e.status, 3);
	exitdev_pm_io(&d, 0, (uint8_t[]){ 0x00, 0x20 }, 2, true);
	assert_int_equal(e.status, 0);
	exitdev_pm_io(&d, 0, (uint8_t[]){ 0x00, 0x00 }, 2, true); /* no SLP_EN */
	assert_int_equal(e.calls, 3);
}

/* ---- through the device interface ---------------------------------- */

struct machine {
	struct bus pio, mmio;
	struct device_list l;
	struct uart *u;
	struct host h;
};

static void machine_up(struct machine *m)
{
	char err[256] = "";

	memset(m, 0, sizeof(*m));
	assert_int_equal(device_list_init(&m->l, &m->pio, &m->mmio), 0);
	if (uart_create(&m->l, 0x3f8, irq, tx, &m->h, &m->u, err, sizeof(err)))
		fail_msg("uart_create: %s", err);
}

static uint8_t port_rd(struct machine *m, uint64_t port)
{
	uint8_t v = 0;

	assert_true(bus_access(&m->pio, port, &v, 1, false));
	return v;
}

static void port_wr(struct machine *m, uint64_t port, uint8_t v)
{
	assert_true(bus_access(&m->pio, port, &v, 1, true));
}

static void test_uart_device(void **state)
{
	struct machine a, b;
	struct device *da, *db;
	uint8_t buf[DEVICE_STATE_MAX];
	char err[256] = "";
	int n;

	(void)state;
	machine_up(&a);
	machine_up(&b);
	da = device_find_state(&a.l, UART_STATE_TYPE);
	assert_non_null(da);
	assert_string_equal(da->ops->name, "uart");
	assert_int_equal(a.pio.nregions, 1);
	assert_int_equal(port_rd(&a, 0x3fd), 0x60);
	port_wr(&a, 0x3f8, 'A');
	assert_int_equal(a.h.out_len, 1);
	port_wr(&a, 0x3ff, 0x42);
	port_wr(&a, 0x3f9, 0x01); /* IER: RX interrupt */
	uart_receive(a.u, (const uint8_t *)"xyz", 3);
	assert_int_equal(a.h.level, 1);
	assert_int_equal(port_rd(&a, 0x3f8), 'x');

	/* Save through the ops, load into another machine's UART. */
	assert_int_equal(da->ops->save(da->state, buf, UART_STATE_SIZE - 1), -ENOSPC);
	n = da->ops->save(da->state, buf, sizeof(buf));
	assert_int_equal(n, UART_STATE_SIZE);
	db = device_find_state(&b.l, UART_STATE_TYPE);
	assert_int_equal(db->ops->check(buf, (size_t)n, err, sizeof(err)), 0);
	assert_int_equal(db->ops->load(db->state, buf, (size_t)n, err, sizeof(err)), 0);
	assert_int_equal(b.h.level, 1);
	assert_int_equal(port_rd(&b, 0x3ff), 0x42);
	assert_int_equal(port_rd(&b, 0x3f8), 'y');
	assert_int_equal(port_rd(&b, 0x3f8), 'z');
	assert_int_equal(b.h.level, 0);
	/* check refuses what load would, with a message, touching nothing */
	assert_int_equal(db->ops->check(buf, (size_t)n - 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "bytes"));
	buf[0] = 99;
	assert_int_equal(db->ops->check(buf, (size_t)n, err, sizeof(err)), -EINVAL);
	assert_int_equal(db->ops->load(db->state, buf, (size_t)n, err, sizeof(err)), -EINVAL);
	assert_int_equal(port_rd(&b, 0x3ff), 0x42);

	/* Reset: power-on registers, the interrupt line dropped. */
	uart_receive(a.u, (const uint8_t *)"q", 1);
	assert_int_equal(a.h.level, 1);
	device_list_reset(&a.l);
	assert_int_equal(a.h.level, 0);
	assert_int_equal(port_rd(&a, 0x3ff), 0);
	assert_int_equal(port_rd(&a, 0x3fd), 0x60);
	device_list_destroy(&a.l);
	device_list_destroy(&b.l);
}

static void put_str(struct machine *m, const char *s)
{
	for (; *s; s++)
		port_wr(m, 0x3f8, (uint8_t)*s);
}

static void test_console_device(void **state)
{
	struct machine m;
	struct conline *c, *c2;
	struct device *d;
	struct bus pio2, mmio2;
	struct device_list l2;
	uint8_t buf[DEVICE_STATE_MAX], big[CONLINE_MAX + 1];
	char err[256] = "", out[64] = "";
	int fds[2], n;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	memset(&m, 0, sizeof(m));
	assert_int_equal(device_list_init(&m.l, &m.pio, &m.mmio), 0);
	assert_int_equal(conline_create(&m.l, fds[1], &c, err, sizeof(err)), 0);
	assert_int_equal(uart_create(&m.l, 0x3f8, irq, conline_put, c, &m.u, err,
				     sizeof(err)), 0);
	d = device_find_state(&m.l, CONLINE_STATE_TYPE);
	assert_non_null(d);
	assert_ptr_equal(d->state, c);
	assert_int_equal(d->nio, 0);

	/* Nothing pending: no section at all. */
	assert_int_equal(d->ops->save(d->state, buf, sizeof(buf)), 0);
	/* The UART's tx feeds the line; a complete line goes out whole. */
	put_str(&m, "hi\n");
	assert_int_equal(c->len, 0);
	assert_int_equal(read(fds[0], out, sizeof(out)), 3);
	assert_memory_equal(out, "hi\n", 3);
	/* A partial line waits until it is stale, or until forced. */
	put_str(&m, "login: ");
	assert_int_equal(c->len, 7);
	conline_flush(c, false, c->first_ns + CONLINE_STALE_NS - 1);
	assert_int_equal(c->len, 7);

	/* Its state is the pending bytes; the target's copy is fresh. */
	n = d->ops->save(d->state, buf, sizeof(buf));
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "login: ", 7);
	assert_int_equal(d->ops->save(d->state, buf, 3), -ENOSPC);
	assert_int_equal(device_list_init(&l2, &pio2, &mmio2), 0);
	assert_int_equal(conline_create(&l2, fds[1], &c2, err, sizeof(err)), 0);
	memset(big, 'x', sizeof(big));
	assert_int_equal(d->ops->check(big, sizeof(big), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "at most"));
	assert_int_equal(d->ops->load(c2, big, sizeof(big), err, sizeof(err)), -EINVAL);
	assert_int_equal(c2->len, 0);
	/* A full buffer is refused too: the next guest byte would go past it. */
	assert_int_equal(d->ops->check(big, CONLINE_MAX, err, sizeof(err)), -EINVAL);
	assert_int_equal(d->ops->check(big, CONLINE_MAX - 1, err, sizeof(err)), 0);
	assert_int_equal(d->ops->load(c2, buf, (size_t)n, err, sizeof(err)), 0);
	assert_int_equal(c2->len, 7);
	assert_memory_equal(c2->line, "login: ", 7);
	assert_true(clock_now_ns() - c2->first_ns < 10ULL * 1000000000ULL);

	conline_flush(c, false, c->first_ns + CONLINE_STALE_NS);
	assert_int_equal(c->len, 0);
	memset(out, 0, sizeof(out));
	assert_int_equal(read(fds[0], out, sizeof(out) - 1), 7);
	assert_string_equal(out, "login: ");
	conline_flush(c2, true, 0);
	assert_int_equal(read(fds[0], out, sizeof(out)), 7);
	/* Reset writes what the guest already printed, then holds nothing. */
	put_str(&m, "$");
	device_list_reset(&m.l);
	assert_int_equal(c->len, 0);
	assert_int_equal(read(fds[0], out, sizeof(out)), 1);
	device_list_destroy(&m.l);
	device_list_destroy(&l2);
	close(fds[0]);
	close(fds[1]);
}

/* The console's clock: the longest interval between lines in a window, and
 * the source's last line carried to the target, where it ends the first
 * interval (the switchover's gap). */
static void test_console_gap(void **state)
{
	struct device_list l, l2;
	struct bus pio, mmio, pio2, mmio2;
	struct conline *c, *c2;
	struct device *d;
	uint8_t buf[16];
	char err[256] = "", out[64];
	int fds[2];

	(void)state;
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(device_list_init(&l, &pio, &mmio), 0);
	assert_int_equal(conline_create(&l, fds[1], &c, err, sizeof(err)), 0);
	d = device_find_state(&l, CONLINE_CLOCK_STATE_TYPE);
	assert_non_null(d);
	/* No line yet: no clock section. */
	assert_int_equal(d->ops->save(d->state, buf, sizeof(buf)), 0);
	/* Outside a window nothing is timed. */
	conline_put(c, 'a');
	conline_put(c, '\n');
	usleep(30000);
	conline_put(c, '\n');
	assert_true(conline_gap_ms(c) == 0.0);
	conline_gap_start(c, false);
	usleep(40000);
	conline_put(c, '\n');
	usleep(10000);
	conline_put(c, '\n');
	assert_true(conline_gap_ms(c) >= 40.0);
	assert_true(conline_gap_ms(c) < 5000.0);
	conline_gap_stop(c);
	usleep(60000);
	conline_put(c, '\n');
	assert_true(conline_gap_ms(c) < 60.0);

	/* The clock travels: 8 bytes; a bad length is refused. */
	assert_int_equal(d->ops->save(d->state, buf, 4), -ENOSPC);
	assert_int_equal(d->ops->save(d->state, buf, sizeof(buf)), CONLINE_CLOCK_LEN);
	assert_int_equal(d->ops->check(buf, 7, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "console clock"));
	assert_int_equal(device_list_init(&l2, &pio2, &mmio2), 0);
	assert_int_equal(conline_create(&l2, fds[1], &c2, err, sizeof(err)), 0);
	assert_int_equal(d->ops->load(c2, buf, 9, err, sizeof(err)), -EINVAL);
	assert_true(c2->last_rt_ns == 0);
	usleep(50000);
	assert_int_equal(d->ops->load(c2, buf, CONLINE_CLOCK_LEN, err, sizeof(err)), 0);
	assert_true(c2->last_rt_ns == c->last_rt_ns);
	/* The target's first line ends the gap the source's last one began
	 * (at least the 50 ms waited); after one_more, the window closes. */
	conline_gap_one_more(c2);
	conline_put(c2, '\n');
	assert_true(conline_gap_ms(c2) >= 50.0);
	assert_true(c2->gap == CONLINE_GAP_OFF);
	assert_true(read(fds[0], out, sizeof(out)) > 0);
	device_list_destroy(&l);
	device_list_destroy(&l2);
	close(fds[0]);
	close(fds[1]);
}

static void test_exit_devices(void **state)
{
	struct bus pio, mmio;
	struct device_list l;
	struct exit_host e = { -1, 0 };
	uint8_t v[4] = { 1, 0, 0, 0 };
	char err[256] = "";

	(void)state;
	assert_int_equal(device_list_init(&l, &pio, &mmio), 0);
	assert_int_equal(exitdev_create(&l, on_exit_cb, &e, err, sizeof(err)), 0);
	assert_int_equal(exitdev_sink_create(&l, EXITDEV_POST_PORT, err, sizeof(err)), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(pio.nregions, 3);
	assert_true(bus_access(&pio, EXITDEV_DEBUG_PORT, v, 1, true));
	assert_int_equal(e.status, 3);
	assert_true(bus_access(&pio, EXITDEV_PM_PORT, (uint8_t[]){ 0x00, 0x20 }, 2, true));
	assert_int_equal(e.status, 0);
	assert_true(bus_access(&pio, EXITDEV_POST_PORT, v, 1, true));
	assert_true(bus_access(&pio, EXITDEV_POST_PORT, v, 1, false));
	assert_int_equal(v[0], 0xff);
	assert_int_equal(e.calls, 2);
	/* No state: nothing for vmstate. */
	assert_int_equal(device_find(&l, "exit")->ops->state_type, 0);
	assert_null(device_find_state(&l, 0));
	/* A second one on the same ports is refused, and names itself. */
	assert_int_equal(exitdev_create(&l, on_exit_cb, &e, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "exit"));
	assert_int_equal(l.n, 2);
	device_list_destroy(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reset_values),
		cmocka_unit_test(test_transmit_and_scratch),
		cmocka_unit_test(test_divisor_latch),
		cmocka_unit_test(test_receive_interrupt),
		cmocka_unit_test(test_thr_empty_interrupt_edges),
		cmocka_unit_test(test_fifo_full_and_clear),
		cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_save_restore),
		cmocka_unit_test(test_exit_ports),
		cmocka_unit_test(test_uart_device),
		cmocka_unit_test(test_console_device),
		cmocka_unit_test(test_console_gap),
		cmocka_unit_test(test_exit_devices),
	};
	return cmocka_run_group_tests_name("uart", tests, NULL, NULL);
}
