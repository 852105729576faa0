/* 16550A-compatible UART (the 8250 family register set). Pure: the owner
 * supplies an interrupt-line callback and a transmit callback. */
#ifndef MINIVMM_UART_H
#define MINIVMM_UART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UART_FIFO_LEN 64
#define UART_STATE_VERSION 1
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

#endif
