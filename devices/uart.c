#include "devices/uart.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	REG_RBR_THR = 0, REG_IER = 1, REG_IIR_FCR = 2, REG_LCR = 3,
	REG_MCR = 4, REG_LSR = 5, REG_MSR = 6, REG_SCR = 7,
};

#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO_BITS 0xc0
#define FCR_FIFO_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_DEFAULT 0xb0 /* DCD | DSR | CTS */
#define MCR_OUT2 0x08

static void update_irq(struct uart *u)
{
	uint8_t iir = 0;

	if ((u->ier & IER_RDI) && (u->lsr & LSR_DR))
		iir = IIR_RDI;
	else if ((u->ier & IER_THRI) && (u->lsr & LSR_TEMT))
		iir = IIR_THRI;
	u->iir = iir ? iir : IIR_NO_INT;
	/* Signal only changes: the in-kernel PIC sees edges. */
	if ((iir != 0) != u->irq_level) {
		u->irq_level = iir != 0;
		if (u->irq)
			u->irq(u->opaque, u->irq_level);
	}
}

void uart_init(struct uart *u, void (*irq)(void *, int),
	       void (*tx)(void *, uint8_t), void *opaque)
{
	memset(u, 0, sizeof(*u));
	u->iir = IIR_NO_INT;
	u->lsr = LSR_TEMT | LSR_THRE;
	u->msr = MSR_DEFAULT;
	u->mcr = MCR_OUT2;
	u->dll = 12; /* 9600 baud, the reset value */
	u->irq = irq;
	u->tx = tx;
	u->opaque = opaque;
}

size_t uart_rx_space(const struct uart *u)
{
	return UART_FIFO_LEN - u->rx_count;
}

static void rx_push(struct uart *u, uint8_t byte)
{
	u->rx[(u->rx_head + u->rx_count) % UART_FIFO_LEN] = byte;
	u->rx_count++;
	u->lsr |= LSR_DR;
}

size_t uart_receive(struct uart *u, const uint8_t *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n && u->rx_count < UART_FIFO_LEN; i++)
		rx_push(u, buf[i]);
	update_irq(u);
	return i;
}

static uint8_t rx_pop(struct uart *u)
{
	uint8_t byte;

	if (u->rx_count == 0)
		return 0;
	byte = u->rx[u->rx_head];
	u->rx_head = (u->rx_head + 1) % UART_FIFO_LEN;
	if (--u->rx_count == 0)
		u->lsr &= ~LSR_DR;
	return byte;
}

static void write_reg(struct uart *u, unsigned reg, uint8_t v)
{
	bool dlab = u->lcr & LCR_DLAB;

	switch (reg) {
	case REG_RBR_THR:
		if (dlab) {
			u->dll = v;
		} else if (u->mcr & MCR_LOOP) {
			if (u->rx_count < UART_FIFO_LEN)
				rx_push(u, v);
		} else if (u->tx) {
			u->tx(u->opaque, v);
		}
		break;
	case REG_IER:
		if (dlab)
			u->dlm = v;
		else
			u->ier = v & 0x0f;
		break;
	case REG_IIR_FCR:
		u->fcr = v;
		if (v & FCR_CLEAR_RX) {
			u->rx_count = 0;
			u->lsr &= ~LSR_DR;
		}
		break;
	case REG_LCR:
		u->lcr = v;
		break;
	case REG_MCR:
		u->mcr = v & 0x1f;
		break;
	case REG_SCR:
		u->scr = v;
		break;
	default: /* LSR and MSR writes are factory-test only */
		break;
	}
	update_irq(u);
}

static uint8_t read_reg(struct uart *u, unsigned reg)
{
	bool dlab = u->lcr & LCR_DLAB;
	uint8_t v;

	switch (reg) {
	case REG_RBR_THR:
		if (dlab)
			return u->dll;
		v = rx_pop(u);
		update_irq(u);
		return v;
	case REG_IER:
		return dlab ? u->dlm : u->ier;
	case REG_IIR_FCR:
		v = u->iir;
		if (u->fcr & FCR_FIFO_ENABLE)
			v |= IIR_FIFO_BITS;
		/* Reading IIR acknowledges a THR-empty interrupt. */
		return v;
	case REG_LCR:
		return u->lcr;
	case REG_MCR:
		return u->mcr;
	case REG_LSR:
		return u->lsr;
	case REG_MSR:
		return u->msr;
	default:
		return u->scr;
	}
}

void uart_io(void *dev, uint64_t offset, uint8_t *data, uint32_t len,
	     bool is_write)
{
	struct uart *u = dev;
	uint32_t i;

	/* Wider accesses hit consecutive registers, as on an ISA bus. */
	for (i = 0; i < len && offset + i < 8; i++) {
		if (is_write)
			write_reg(u, (unsigned)(offset + i), data[i]);
		else
			data[i] = read_reg(u, (unsigned)(offset + i));
	}
	for (; i < len; i++)
		if (!is_write)
			data[i] = 0xff;
}

void uart_save(const struct uart *u, uint8_t out[UART_STATE_SIZE])
{
	uint8_t *p = out;
	unsigned i;

	*p++ = UART_STATE_VERSION;
	*p++ = u->ier; *p++ = u->iir; *p++ = u->fcr; *p++ = u->lcr;
	*p++ = u->mcr; *p++ = u->lsr; *p++ = u->msr; *p++ = u->scr;
	*p++ = u->dll; *p++ = u->dlm;
	*p++ = u->irq_level;
	*p++ = u->rx_count;
	/* The FIFO goes out linearised, oldest byte first. */
	for (i = 0; i < UART_FIFO_LEN; i++)
		*p++ = i < u->rx_count ? u->rx[(u->rx_head + i) % UART_FIFO_LEN] : 0;
}

int uart_check(const uint8_t *in, size_t len)
{
	if (len != UART_STATE_SIZE || in[0] != UART_STATE_VERSION)
		return -EINVAL;
	if (in[12] > UART_FIFO_LEN || in[11] > 1)
		return -EINVAL;
	return 0;
}

int uart_load(struct uart *u, const uint8_t *in, size_t len)
{
	const uint8_t *p = in;
	bool level;

	if (uart_check(in, len))
		return -EINVAL;
	p++;
	u->ier = *p++ & 0x0f; u->iir = *p++; u->fcr = *p++; u->lcr = *p++;
	u->mcr = *p++ & 0x1f; u->lsr = *p++; u->msr = *p++; u->scr = *p++;
	u->dll = *p++; u->dlm = *p++;
	level = *p++;
	u->rx_count = *p++;
	u->rx_head = 0;
	memcpy(u->rx, p, UART_FIFO_LEN);
	if (u->rx_count)
		u->lsr |= LSR_DR;
	else
		u->lsr &= ~LSR_DR;
	/* Force the callback so the new VM's irqchip line matches the state. */
	u->irq_level = !level;
	if (u->irq)
		u->irq(u->opaque, level);
	u->irq_level = level;
	update_irq(u);
	return 0;
}

void uart_reset(struct uart *u)
{
	bool was = u->irq_level;

	uart_init(u, u->irq, u->tx, u->opaque);
	if (was && u->irq)
		u->irq(u->opaque, 0);
}

/* ---- the device interface ------------------------------------------ */

static void dev_reset(void *dev)
{
	uart_reset(dev);
}

static int dev_save(void *dev, uint8_t *buf, size_t cap)
{
	if (cap < UART_STATE_SIZE)
		return -ENOSPC;
	uart_save(dev, buf);
	return UART_STATE_SIZE;
}

static int dev_check(const uint8_t *p, size_t len, char *err, size_t errlen)
{
	if (uart_check(p, len) == 0)
		return 0;
	if (len != UART_STATE_SIZE)
		snprintf(err, errlen, "UART state is %zu bytes, expected %d", len,
			 UART_STATE_SIZE);
	else
		snprintf(err, errlen, "UART state (version %u, FIFO count %u) rejected",
			 p[0], p[12]);
	return -EINVAL;
}

static int dev_load(void *dev, const uint8_t *p, size_t len, char *err,
		    size_t errlen)
{
	int ret = dev_check(p, len, err, errlen);

	return ret ? ret : uart_load(dev, p, len);
}

static const struct device_ops uart_ops = {
	.name = "uart",
	.state_type = UART_STATE_TYPE,
	.state_version = UART_STATE_VERSION,
	.reset = dev_reset,
	.save = dev_save,
	.check = dev_check,
	.load = dev_load,
	.destroy = free,
};

int uart_create(struct device_list *l, uint64_t base, void (*irq)(void *, int),
		void (*tx)(void *, uint8_t), void *opaque, struct uart **out,
		char *err, size_t errlen)
{
	struct uart *u = malloc(sizeof(*u));
	struct device d = {
		.ops = &uart_ops, .state = u, .nio = 1,
		.io = { { BUS_PIO, base, UART_NPORTS, NULL, uart_io } },
	};
	int ret;

	if (!u) {
		snprintf(err, errlen, "uart_create: out of memory");
		return -ENOMEM;
	}
	uart_init(u, irq, tx, opaque);
	ret = device_add(l, &d, err, errlen);
	if (out)
		*out = ret ? NULL : u;
	return ret;
}
