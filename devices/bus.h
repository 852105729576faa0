/* An address bus, port I/O or MMIO: registered ranges, dispatch by
 * address. Every access runs under the bus's mutex, so devices themselves
 * need no locking; the VM's two buses share one mutex (device_list_init),
 * which back-ends that touch a device outside an exit (console input) take
 * too. */
#ifndef MINIVMM_BUS_H
#define MINIVMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define BUS_MAX_REGIONS 32

enum bus_kind { BUS_PIO, BUS_MMIO };

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
	pthread_mutex_t own_lock;
	pthread_mutex_t *lock; /* &own_lock, or the one shared with other buses */
};

int bus_init(struct bus *b);
/* A bus whose accesses run under lock, which the caller owns. */
void bus_init_shared(struct bus *b, pthread_mutex_t *lock);
void bus_destroy(struct bus *b);
/* -EEXIST on overlap, -EINVAL on an empty or wrapping range, -ENOSPC when full. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, const char *name,
		 bus_io_fn fn, void *dev);
/* Removes the region that starts at base; -ENOENT if there is none. Like
 * bus_register, only while no vCPU runs. */
int bus_unregister(struct bus *b, uint64_t base);
/* Returns true when a device took the access. Unmapped reads return
 * all-ones and unmapped writes are dropped. */
bool bus_access(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len,
		bool is_write);
const struct bus_region *bus_find(const struct bus *b, uint64_t addr);

#endif
