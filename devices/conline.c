#include "devices/conline.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

static uint64_t realtime_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static void line_done(struct conline *c)
{
	uint64_t now = realtime_ns(), last = atomic_load(&c->last_rt_ns);
	int g = atomic_load(&c->gap);

	/* Realtime may step back; such an interval is not a gap. */
	if (g != CONLINE_GAP_OFF && last && now > last && now - last > atomic_load(&c->max_gap_ns))
		atomic_store(&c->max_gap_ns, now - last);
	if (g == CONLINE_GAP_ONE_MORE)
		atomic_store(&c->gap, CONLINE_GAP_OFF);
	atomic_store(&c->last_rt_ns, now);
}

void conline_put(void *con, uint8_t byte)
{
	struct conline *c = con;

	if (c->len == 0)
		c->first_ns = clock_now_ns();
	c->line[c->len++] = byte;
	if (byte == '\n')
		line_done(c);
	if (byte == '\n' || c->len == CONLINE_MAX)
		write_pending(c);
}

void conline_gap_start(struct conline *c, bool one_more)
{
	atomic_store(&c->max_gap_ns, 0);
	atomic_store(&c->gap, one_more ? CONLINE_GAP_ONE_MORE : CONLINE_GAP_ON);
}

void conline_gap_stop(struct conline *c)
{
	atomic_store(&c->gap, CONLINE_GAP_OFF);
}

void conline_gap_one_more(struct conline *c)
{
	int on = CONLINE_GAP_ON;

	atomic_compare_exchange_strong(&c->gap, &on, CONLINE_GAP_ONE_MORE);
}

double conline_gap_ms(const struct conline *c)
{
	return (double)atomic_load(&c->max_gap_ns) / 1e6;
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

/* ---- the console's clock: a second device on the same state -------- */

static int clock_save(void *dev, uint8_t *buf, size_t cap)
{
	const struct conline *c = dev;
	uint64_t t = atomic_load(&c->last_rt_ns);

	if (!t)
		return 0;
	if (cap < CONLINE_CLOCK_LEN)
		return -ENOSPC;
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)(t >> (8 * i));
	return CONLINE_CLOCK_LEN;
}

static int clock_check(const uint8_t *p, size_t len, char *err, size_t errlen)
{
	(void)p;
	if (len == CONLINE_CLOCK_LEN)
		return 0;
	snprintf(err, errlen, "console clock of %zu bytes: want %d", len, CONLINE_CLOCK_LEN);
	return -EINVAL;
}

/* The source's last line ends the target's first interval: the gap the
 * guest's console showed across the switchover (both hosts' realtime
 * clocks must agree for it to mean anything). */
static int clock_load(void *dev, const uint8_t *p, size_t len, char *err, size_t errlen)
{
	struct conline *c = dev;
	uint64_t t = 0;
	int ret = clock_check(p, len, err, errlen);

	if (ret)
		return ret;
	for (int i = 0; i < 8; i++)
		t |= (uint64_t)p[i] << (8 * i);
	atomic_store(&c->last_rt_ns, t);
	conline_gap_start(c, false);
	return 0;
}

static const struct device_ops clock_ops = {
	.name = "console-clock",
	.state_type = CONLINE_CLOCK_STATE_TYPE,
	.state_version = CONLINE_CLOCK_STATE_VERSION,
	.save = clock_save,
	.check = clock_check,
	.load = clock_load,
	/* no destroy: the console device owns the state */
};

int conline_create(struct device_list *l, int fd, struct conline **out,
		   char *err, size_t errlen)
{
	struct conline *c = calloc(1, sizeof(*c));
	struct device d = { .ops = &conline_ops, .state = c };
	struct device dc = { .ops = &clock_ops, .state = c };
	int ret;

	if (!c) {
		snprintf(err, errlen, "conline_create: out of memory");
		return -ENOMEM;
	}
	c->fd = fd;
	ret = device_add(l, &d, err, errlen);
	if (!ret)
		ret = device_add(l, &dc, err, errlen);
	if (out)
		*out = ret ? NULL : c;
	return ret;
}
