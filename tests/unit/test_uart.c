/* The 8250/16550A register behaviour, interrupts and save/restore. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "devices/exitdev.h"
#include "devices/uart.h"

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
	};
	return cmocka_run_group_tests_name("uart", tests, NULL, NULL);
}
