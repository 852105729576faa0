#include "devices/exitdev.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void exitdev_init(struct exitdev *e, void (*exit)(void *, int, const char *),
		  void *opaque)
{
	e->exit = exit;
	e->opaque = opaque;
}

static uint32_t le_value(const uint8_t *data, uint32_t len)
{
	uint32_t v = 0;

	for (uint32_t i = 0; i < len && i < 4; i++)
		v |= (uint32_t)data[i] << (8 * i);
	return v;
}

void exitdev_debug_io(void *dev, uint64_t offset, uint8_t *data, uint32_t len,
		      bool is_write)
{
	struct exitdev *e = dev;

	if (!is_write) {
		memset(data, 0xff, len);
		return;
	}
	if (offset != 0)
		return;
	/* The shell sees only the low 8 bits, as with QEMU. */
	e->exit(e->opaque, (int)(((le_value(data, len) << 1) | 1) & 0xff),
		"guest wrote to the debug-exit port");
}

void exitdev_pm_io(void *dev, uint64_t offset, uint8_t *data, uint32_t len,
		   bool is_write)
{
	struct exitdev *e = dev;

	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	if (offset == 0 && (le_value(data, len) & EXITDEV_PM_SLP_EN))
		e->exit(e->opaque, 0, "guest powered off");
}

void exitdev_sink_io(void *dev, uint64_t offset, uint8_t *data, uint32_t len,
		     bool is_write)
{
	(void)dev;
	(void)offset;
	if (!is_write)
		memset(data, 0xff, len);
}

static const struct device_ops exit_ops = { .name = "exit", .destroy = free };
static const struct device_ops sink_ops = { .name = "post-code" };

int exitdev_create(struct device_list *l, void (*exit)(void *, int, const char *),
		   void *opaque, char *err, size_t errlen)
{
	struct exitdev *e = malloc(sizeof(*e));
	struct device d = {
		.ops = &exit_ops, .state = e, .nio = 2,
		.io = {
			{ BUS_PIO, EXITDEV_DEBUG_PORT, EXITDEV_DEBUG_LEN, "debug-exit", exitdev_debug_io },
			{ BUS_PIO, EXITDEV_PM_PORT, EXITDEV_PM_LEN, "pm-poweroff", exitdev_pm_io },
		},
	};

	if (!e) {
		snprintf(err, errlen, "exitdev_create: out of memory");
		return -ENOMEM;
	}
	exitdev_init(e, exit, opaque);
	return device_add(l, &d, err, errlen);
}

int exitdev_sink_create(struct device_list *l, uint64_t port, char *err,
			size_t errlen)
{
	struct device d = {
		.ops = &sink_ops, .nio = 1,
		.io = { { BUS_PIO, port, 1, NULL, exitdev_sink_io } },
	};

	return device_add(l, &d, err, errlen);
}
