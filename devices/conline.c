#include "devices/conline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/core/clock.h"

static void write_pending(struct conline *c)
{
	uint32_t off = 0;

	/* A console nobody reads must not stop the guest: drop on error. */
	while (off < c->len) {
		ssize_t n = write(c->fd, c->line + off, c->len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (uint32_t)n;
	}
	c->len = 0;
}

void conline_put(void *con, uint8_t byte)
{
	struct conline *c = con;

	if (c->len == 0)
		c->first_ns = clock_now_ns();
	c->line[c->len++] = byte;
	if (byte == '\n' || c->len == CONLINE_MAX)
		write_pending(c);
}

void conline_flush(struct conline *c, bool force, uint64_t now_ns)
{
	if (c->len && (force || now_ns - c->first_ns >= CONLINE_STALE_NS))
		write_pending(c);
}

/* ---- the device interface ------------------------------------------ */

/* What the guest printed before the reset is still its output. */
static void dev_reset(void *dev)
{
	write_pending(dev);
}

static int dev_save(void *dev, uint8_t *buf, size_t cap)
{
	const struct conline *c = dev;

	if (cap < c->len)
		return -ENOSPC;
	memcpy(buf, c->line, c->len);
	return (int)c->len; /* 0: no section, as a blob without it means */
}

static int dev_check(const uint8_t *p, size_t len, char *err, size_t errlen)
{
	(void)p;
	/* Strictly less: a full buffer is flushed as it fills, so a live one
	 * never holds CONLINE_MAX bytes, and one loaded that full would have
	 * the guest's next byte stored past its end. */
	if (len < CONLINE_MAX)
		return 0;
	snprintf(err, errlen, "console line of %zu bytes: at most %d", len, CONLINE_MAX - 1);
	return -EINVAL;
}

static int dev_load(void *dev, const uint8_t *p, size_t len, char *err,
		    size_t errlen)
{
	struct conline *c = dev;
	int ret = dev_check(p, len, err, errlen);

	if (ret)
		return ret;
	/* The rest of the line follows from the guest, on this host; its age
	 * counts from now, not from the source's clock. */
	memcpy(c->line, p, len);
	c->len = (uint32_t)len;
	c->first_ns = clock_now_ns();
	return 0;
}

static const struct device_ops conline_ops = {
	.name = "console",
	.state_type = CONLINE_STATE_TYPE,
	.state_version = CONLINE_STATE_VERSION,
	.reset = dev_reset,
	.save = dev_save,
	.check = dev_check,
	.load = dev_load,
	.destroy = free,
};

int conline_create(struct device_list *l, int fd, struct conline **out,
		   char *err, size_t errlen)
{
	struct conline *c = calloc(1, sizeof(*c));
	struct device d = { .ops = &conline_ops, .state = c };
	int ret;

	if (!c) {
		snprintf(err, errlen, "conline_create: out of memory");
		return -ENOMEM;
	}
	c->fd = fd;
	ret = device_add(l, &d, err, errlen);
	if (out)
		*out = ret ? NULL : c;
	return ret;
}
