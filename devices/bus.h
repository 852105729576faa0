/* Port-I/O (and later MMIO) bus: registered address ranges, dispatch by
 * address. One mutex per bus serialises every device behind it, so devices
 * themselves need no locking; back-ends that touch a device outside an exit
 * (console input) take the same lock through bus_lock(). */
#ifndef MINIVMM_BUS_H
#define MINIVMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define BUS_MAX_REGIONS 32

/* offset is relative to the region's base; len is 1, 2, 4 or 8. */
typedef void (*bus_io_fn)(void *dev, uint64_t offset, uint8_t *data,
			  uint32_t len, bool is_write);

struct bus_region {
	uint64_t base;
	uint64_t len;
	const char *name;
	bus_io_fn fn;
	void *dev;
};

struct bus {
	struct bus_region regions[BUS_MAX_REGIONS]; /* sorted by base */
	int nregions;
	pthread_mutex_t lock;
};

int bus_init(struct bus *b);
void bus_destroy(struct bus *b);
/* -EEXIST on overlap, -EINVAL on an empty or wrapping range, -ENOSPC when full. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, const char *name,
		 bus_io_fn fn, void *dev);
/* Returns true when a device took the access. Unmapped reads return
 * all-ones and unmapped writes are dropped. */
bool bus_access(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len,
		bool is_write);
const struct bus_region *bus_find(const struct bus *b, uint64_t addr);
void bus_lock(struct bus *b);
void bus_unlock(struct bus *b);

#endif
