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

/* The console's clock (an optional section of its own, present once the
 * guest has printed a line): CLOCK_REALTIME of the last complete line, so
 * that the target can time the gap between the source's last line and its
 * own first: the guest-observed gap of a migration, measured in the VMM. */
#define CONLINE_CLOCK_STATE_TYPE 0x80000004u
#define CONLINE_CLOCK_STATE_VERSION 1 /* payload: u64 LE realtime ns */
#define CONLINE_CLOCK_LEN 8

enum conline_gap {
	CONLINE_GAP_OFF,	/* lines are not timed */
	CONLINE_GAP_ON,		/* every interval counts, until stopped */
	CONLINE_GAP_ONE_MORE,	/* the interval the next line ends counts, then off */
};

struct conline {
	int fd;
	uint8_t line[CONLINE_MAX];
	uint32_t len;
	uint64_t first_ns; /* when the oldest pending byte arrived */
	/* Written by the vCPU printing, read by the migration threads. */
	_Atomic uint64_t last_rt_ns;	/* realtime of the last line; 0: none */
	_Atomic uint64_t max_gap_ns;	/* the longest interval timed */
	_Atomic int gap;		/* enum conline_gap */
};

/* A UART tx callback: con is the struct conline. */
void conline_put(void *con, uint8_t byte);
/* Writes the pending partial line when force, or when it is at least
 * CONLINE_STALE_NS old at now_ns. */
void conline_flush(struct conline *c, bool force, uint64_t now_ns);

/* Times the intervals between lines from now on (the longest is kept)
 * until conline_gap_stop, or, with one_more, until the next line. */
void conline_gap_start(struct conline *c, bool one_more);
void conline_gap_stop(struct conline *c);
/* After a state load on the target: the next interval also ends the one
 * the source's last line began. */
void conline_gap_one_more(struct conline *c);
/* The longest interval between two lines timed so far, in ms. */
double conline_gap_ms(const struct conline *c);

/* Creates the console on l (which owns it), writing to fd. */
int conline_create(struct device_list *l, int fd, struct conline **out,
		   char *err, size_t errlen);

#endif
