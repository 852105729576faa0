#include "devices/device.h"

#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>

int device_list_init(struct device_list *l, struct bus *pio, struct bus *mmio)
{
	int ret;

	memset(l, 0, sizeof(*l));
	ret = pthread_mutex_init(&l->lock, NULL);
	if (ret)
		return -ret;
	l->pio = pio;
	l->mmio = mmio;
	bus_init_shared(pio, &l->lock);
	bus_init_shared(mmio, &l->lock);
	return 0;
}

static void device_free(struct device *d)
{
	if (d->ops->destroy && d->state)
		d->ops->destroy(d->state);
	d->state = NULL;
}

void device_list_destroy(struct device_list *l)
{
	if (!l->pio)
		return; /* never initialised */
	for (int i = l->n - 1; i >= 0; i--)
		device_free(&l->devs[i]);
	l->n = 0;
	bus_destroy(l->pio);
	bus_destroy(l->mmio);
	pthread_mutex_destroy(&l->lock);
	l->pio = l->mmio = NULL;
}

static struct bus *io_bus(struct device_list *l, enum bus_kind kind)
{
	return kind == BUS_MMIO ? l->mmio : l->pio;
}

/* Undoes the first n registrations of d (a later one failed). */
static void unregister_io(struct device_list *l, const struct device *d, int n)
{
	for (int i = 0; i < n; i++)
		bus_unregister(io_bus(l, d->io[i].kind), d->io[i].base);
}

int device_add(struct device_list *l, const struct device *d, char *err,
	       size_t errlen)
{
	struct device tmp = *d;
	int ret = 0, i;

	if (l->n == DEVICE_MAX || d->nio < 0 || d->nio > DEVICE_MAX_IO) {
		snprintf(err, errlen, "device_add(%s): %s", d->ops->name,
			 l->n == DEVICE_MAX ? "device list full" : "bad I/O range count");
		ret = l->n == DEVICE_MAX ? -ENOSPC : -EINVAL;
		goto fail;
	}
	/* vmstate finds a device by its section type: it must be unique. */
	if (device_find_state(l, d->ops->state_type)) {
		snprintf(err, errlen, "device_add(%s): state section 0x%x is %s's already",
			 d->ops->name, d->ops->state_type,
			 device_find_state(l, d->ops->state_type)->ops->name);
		ret = -EEXIST;
		goto fail;
	}
	for (i = 0; i < d->nio; i++) {
		const struct device_io *io = &d->io[i];

		ret = bus_register(io_bus(l, io->kind), io->base, io->len,
				   io->name ? io->name : d->ops->name, io->fn, d->state);
		if (ret) {
			snprintf(err, errlen, "device_add(%s): %s range 0x%llx+0x%llx: %s",
				 d->ops->name, io->kind == BUS_MMIO ? "MMIO" : "port",
				 (unsigned long long)io->base, (unsigned long long)io->len,
				 ret == -EEXIST ? "overlaps another device" : strerror(-ret));
			unregister_io(l, d, i);
			goto fail;
		}
	}
	l->devs[l->n++] = *d;
	return 0;
fail:
	device_free(&tmp);
	return ret;
}

/* Calls, under the lock, the op at `off` in struct device_ops (a
 * void (*)(void *dev)) of every device that has it, in list order. */
static void each(struct device_list *l, size_t off)
{
	pthread_mutex_lock(&l->lock);
	for (int i = 0; i < l->n; i++) {
		void (*fn)(void *);

		memcpy(&fn, (const char *)l->devs[i].ops + off, sizeof(fn));
		if (fn)
			fn(l->devs[i].state);
	}
	pthread_mutex_unlock(&l->lock);
}

void device_list_reset(struct device_list *l)
{
	each(l, offsetof(struct device_ops, reset));
}

void device_list_quiesce(struct device_list *l)
{
	each(l, offsetof(struct device_ops, quiesce));
}

void device_list_resume(struct device_list *l)
{
	each(l, offsetof(struct device_ops, resume));
}

void device_list_post_migrate(struct device_list *l)
{
	each(l, offsetof(struct device_ops, post_migrate));
}

void device_list_announce(struct device_list *l)
{
	each(l, offsetof(struct device_ops, announce));
}

struct device *device_find(struct device_list *l, const char *name)
{
	for (int i = 0; i < l->n; i++)
		if (strcmp(l->devs[i].ops->name, name) == 0)
			return &l->devs[i];
	return NULL;
}

struct device *device_find_state(struct device_list *l, uint32_t type)
{
	if (type == 0)
		return NULL;
	for (int i = 0; i < l->n; i++)
		if (l->devs[i].ops->state_type == type)
			return &l->devs[i];
	return NULL;
}

void device_list_lock(struct device_list *l)
{
	pthread_mutex_lock(&l->lock);
}

void device_list_unlock(struct device_list *l)
{
	pthread_mutex_unlock(&l->lock);
}
