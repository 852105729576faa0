/* The one device interface. A device is a state struct plus an ops table:
 * its name, the I/O ranges it puts on the port-I/O or MMIO bus, reset, and
 * save/load of its own vmstate section. The VM owns a device_list; vmstate
 * saves and loads by walking it and knows no device (docs/architecture.md,
 * "Devices"). Pure: no KVM header, no VM pointer. */
#ifndef MINIVMM_DEVICE_H
#define MINIVMM_DEVICE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/bus.h"

#define DEVICE_MAX 16
#define DEVICE_MAX_IO 4
/* The most one device's section may hold (vmstate_save's buffer). */
#define DEVICE_STATE_MAX (256u << 10)

struct device_ops {
	const char *name;
	/* vmstate section type, 0 = the device has no state. Mandatory
	 * types (bit 31 clear) lie in 0x0001..0x00ff; a type with bit 31
	 * set is optional, and its section may be absent. */
	uint32_t state_type;
	/* The payload's format revision, for messages; a device whose
	 * format may change carries it in the payload (the UART's byte 0),
	 * since the section header has no version field. */
	uint8_t state_version;
	void (*reset)(void *dev);
	/* Writes the state into buf: length, 0 for "nothing to save" (no
	 * section is written) or -errno (-ENOSPC when cap is too small). */
	int (*save)(void *dev, uint8_t *buf, size_t cap);
	/* Judges a payload without a device, so that vmstate can refuse a
	 * blob before any of it is applied. 0 or -errno with a message. */
	int (*check)(const uint8_t *p, size_t len, char *err, size_t errlen);
	/* Applies a payload that passed check; 0 or -errno with a message. */
	int (*load)(void *dev, const uint8_t *p, size_t len, char *err,
		    size_t errlen);
	/* Frees the state; NULL when the creator owns it. */
	void (*destroy)(void *dev);
	/* A device with a back-end thread (virtio-net): quiesce stops the
	 * back-end touching device state or guest memory (no request
	 * half-done; nothing in flight) before the state is saved; resume
	 * lets it go again. Both run under the device lock; NULL for
	 * devices without a back-end. */
	void (*quiesce)(void *dev);
	void (*resume)(void *dev);
	/* The guest runs here after an incoming migration (its vCPUs have
	 * started): tell the outside world where it is now (virtio-net
	 * announces the MAC). Under the device lock; NULL: nothing to do. */
	void (*post_migrate)(void *dev);
	/* Speak for the device on its network now (virtio-net: RARP from
	 * its tap), so traffic comes here: a target once the state is
	 * loaded, a source that takes the guest back. NULL: nothing. */
	void (*announce)(void *dev);
	/* What reached the device after its state was saved, while the
	 * guest stayed paused (virtio-net: frames the tap still got):
	 * save_late returns a length (0: nothing), load_late appends it on
	 * the target, checked as load checks. Under the device lock. */
	int (*save_late)(void *dev, uint8_t *buf, size_t cap);
	int (*load_late)(void *dev, const uint8_t *p, size_t len, char *err, size_t errlen);
};

struct device_io {
	enum bus_kind kind;
	uint64_t base, len;
	const char *name; /* the region's name on the bus */
	bus_io_fn fn;
};

struct device {
	const struct device_ops *ops;
	void *state;
	struct device_io io[DEVICE_MAX_IO];
	int nio;
};

/* One lock serialises every device: both buses dispatch under it and a
 * back-end (console input) takes it with device_list_lock, so no device
 * needs a lock of its own. */
struct device_list {
	pthread_mutex_t lock;
	struct bus *pio, *mmio;
	struct device devs[DEVICE_MAX]; /* in creation order = blob order */
	int n;
};

/* Initialises both buses on the list's lock. */
int device_list_init(struct device_list *l, struct bus *pio, struct bus *mmio);
/* Destroys every device (ops->destroy), the buses and the lock. Safe on a
 * zeroed list. */
void device_list_destroy(struct device_list *l);
/* Registers d's ranges and appends it; on failure nothing is registered
 * and d's state is destroyed, so a create function can return at once. */
int device_add(struct device_list *l, const struct device *d, char *err,
	       size_t errlen);
void device_list_reset(struct device_list *l);
/* Every back-end quiesced / resumed (ops->quiesce, ops->resume), under
 * the lock. Quiesce before vmstate_save; resume after, or on a target
 * once the state is loaded. */
void device_list_quiesce(struct device_list *l);
void device_list_resume(struct device_list *l);
void device_list_post_migrate(struct device_list *l);
void device_list_announce(struct device_list *l);
struct device *device_find(struct device_list *l, const char *name);
struct device *device_find_state(struct device_list *l, uint32_t type);
void device_list_lock(struct device_list *l);
void device_list_unlock(struct device_list *l);

#endif
