/* The console line buffer: guest serial output reaches its fd a line at a
 * time. A line the guest is half-way through when a migration pauses it is
 * not written by the source: it is this device's state (an optional vmstate
 * section), and the target prints it whole. A partial line (a prompt) is
 * written once it is stale. No I/O ranges: the UART's tx feeds it. */
#ifndef MINIVMM_CONLINE_H
#define MINIVMM_CONLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"

#define CONLINE_MAX 256
/* A partial line is shown once it is this old. */
#define CONLINE_STALE_NS 20000000ULL
/* Optional: present only while a partial line is pending. */
#define CONLINE_STATE_TYPE 0x80000002u
#define CONLINE_STATE_VERSION 1 /* payload: the pending bytes, 0..256 */

struct conline {
	int fd;
	uint8_t line[CONLINE_MAX];
	uint32_t len;
	uint64_t first_ns; /* when the oldest pending byte arrived */
};

/* A UART tx callback: con is the struct conline. */
void conline_put(void *con, uint8_t byte);
/* Writes the pending partial line when force, or when it is at least
 * CONLINE_STALE_NS old at now_ns. */
void conline_flush(struct conline *c, bool force, uint64_t now_ns);

/* Creates the console on l (which owns it), writing to fd. */
int conline_create(struct device_list *l, int fd, struct conline **out,
		   char *err, size_t errlen);

#endif
