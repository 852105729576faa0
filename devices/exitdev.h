/* Ways out of the guest: QEMU's isa-debug-exit (write v to 0xf4, the VMM
 * exits with status (v << 1) | 1) and an ACPI PM1a-control-style power-off
 * (write SLP_EN|SLP_TYP to 0x604, the VMM exits with status 0), the port
 * QEMU's pc machine uses, so one guest binary powers off cleanly on both. */
#ifndef MINIVMM_EXITDEV_H
#define MINIVMM_EXITDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"

#define EXITDEV_DEBUG_PORT 0xf4
#define EXITDEV_DEBUG_LEN 4
#define EXITDEV_PM_PORT 0x604
#define EXITDEV_PM_LEN 2
#define EXITDEV_PM_SLP_EN 0x2000
#define EXITDEV_POST_PORT 0x80

struct exitdev {
	void (*exit)(void *opaque, int status, const char *why);
	void *opaque;
};

void exitdev_init(struct exitdev *e, void (*exit)(void *, int, const char *),
		  void *opaque);
void exitdev_debug_io(void *e, uint64_t offset, uint8_t *data, uint32_t len,
		      bool is_write);
void exitdev_pm_io(void *e, uint64_t offset, uint8_t *data, uint32_t len,
		   bool is_write);
/* Accepts and ignores everything (port 0x80 POST codes and the like). */
void exitdev_sink_io(void *e, uint64_t offset, uint8_t *data, uint32_t len,
		     bool is_write);

/* The "exit" device (debug-exit and power-off ports, no state) and the
 * "post-code" sink, on l (which owns them). */
int exitdev_create(struct device_list *l, void (*exit)(void *, int, const char *),
		   void *opaque, char *err, size_t errlen);
int exitdev_sink_create(struct device_list *l, uint64_t port, char *err,
			size_t errlen);

#endif
