/* 16550A-compatible UART (the 8250 family register set). Pure: the owner
 * supplies an interrupt-line callback and a transmit callback. As a device
 * (uart_create) it is 8 ports and vmstate section UART_STATE_TYPE. */
#ifndef MINIVMM_UART_H
#define MINIVMM_UART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"

#define UART_FIFO_LEN 64
#define UART_STATE_VERSION 1
#define UART_STATE_TYPE 0x0001 /* mandatory: a VM with a UART needs it */
#define UART_NPORTS 8
/* version, 10 registers, irq level, fifo count, fifo bytes */
#define UART_STATE_SIZE (1 + 10 + 1 + 1 + UART_FIFO_LEN)

struct uart {
	uint8_t ier, iir, fcr, lcr, mcr, lsr, msr, scr, dll, dlm;
	bool irq_level;
	uint8_t rx[UART_FIFO_LEN];
	uint8_t rx_head, rx_count;
	void (*irq)(void *opaque, int level);
	void (*tx)(void *opaque, uint8_t byte);
	void *opaque;
};

void uart_init(struct uart *u, void (*irq)(void *, int),
	       void (*tx)(void *, uint8_t), void *opaque);
/* Bus handler: u is the struct uart, offset 0..7. */
void uart_io(void *u, uint64_t offset, uint8_t *data, uint32_t len,
	     bool is_write);
/* Queue host input for the guest; returns how many bytes fit. */
size_t uart_receive(struct uart *u, const uint8_t *buf, size_t n);
size_t uart_rx_space(const struct uart *u);

/* Serialised state is UART_STATE_SIZE bytes. uart_load validates it and
 * re-drives the interrupt line to the restored level. */
void uart_save(const struct uart *u, uint8_t out[UART_STATE_SIZE]);
int uart_load(struct uart *u, const uint8_t *in, size_t len);
/* What uart_load refuses, without a UART: -EINVAL. */
int uart_check(const uint8_t *in, size_t len);
/* Back to the power-on registers; the FIFO empties, the line drops. */
void uart_reset(struct uart *u);

/* Creates a UART at ports base..base+7 on l (which owns it); *out, if
 * not NULL, is for back-ends that feed it (under device_list_lock). */
int uart_create(struct device_list *l, uint64_t base, void (*irq)(void *, int),
		void (*tx)(void *, uint8_t), void *opaque, struct uart **out,
		char *err, size_t errlen);

#endif
