#include "devices/bus.h"

#include <errno.h>
#include <string.h>

int bus_init(struct bus *b)
{
	memset(b, 0, sizeof(*b));
	b->lock = &b->own_lock;
	return -pthread_mutex_init(&b->own_lock, NULL);
}

void bus_init_shared(struct bus *b, pthread_mutex_t *lock)
{
	memset(b, 0, sizeof(*b));
	b->lock = lock;
}

void bus_destroy(struct bus *b)
{
	if (b->lock == &b->own_lock)
		pthread_mutex_destroy(&b->own_lock);
	b->lock = NULL;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, const char *name,
		 bus_io_fn fn, void *dev)
{
	uint64_t end;
	int i, pos;

	if (len == 0 || fn == NULL || __builtin_add_overflow(base, len - 1, &end))
		return -EINVAL;
	if (b->nregions == BUS_MAX_REGIONS)
		return -ENOSPC;
	for (i = 0; i < b->nregions; i++) {
		const struct bus_region *r = &b->regions[i];
		uint64_t rend = r->base + r->len - 1;

		if (base <= rend && r->base <= end)
			return -EEXIST;
	}
	for (pos = 0; pos < b->nregions && b->regions[pos].base < base; pos++)
		;
	memmove(&b->regions[pos + 1], &b->regions[pos],
		(size_t)(b->nregions - pos) * sizeof(b->regions[0]));
	b->regions[pos] = (struct bus_region){ base, len, name, fn, dev };
	b->nregions++;
	return 0;
}

int bus_unregister(struct bus *b, uint64_t base)
{
	for (int i = 0; i < b->nregions; i++) {
		if (b->regions[i].base != base)
			continue;
		memmove(&b->regions[i], &b->regions[i + 1],
			(size_t)(b->nregions - i - 1) * sizeof(b->regions[0]));
		b->nregions--;
		return 0;
	}
	return -ENOENT;
}

const struct bus_region *bus_find(const struct bus *b, uint64_t addr)
{
	int lo = 0, hi = b->nregions - 1;

	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		const struct bus_region *r = &b->regions[mid];

		if (addr < r->base)
			hi = mid - 1;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool bus_access(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len,
		bool is_write)
{
	const struct bus_region *r;

	pthread_mutex_lock(b->lock);
	r = bus_find(b, addr);
	/* An access must fit in one region; a straddling one is unmapped. */
	if (r && len <= r->len && addr - r->base <= r->len - len) {
		r->fn(r->dev, addr - r->base, data, len, is_write);
		pthread_mutex_unlock(b->lock);
		return true;
	}
	pthread_mutex_unlock(b->lock);
	if (!is_write)
		memset(data, 0xff, len);
	return false;
}
