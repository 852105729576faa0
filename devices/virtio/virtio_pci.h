/* The virtio 1.x PCI transport ("modern", 4.1), written once for every
 * virtio device: the PCI identity (vendor 0x1af4, device 0x1040 + type),
 * one 32-bit memory BAR holding the common, ISR, device-config and notify
 * structures, each announced by a vendor capability; feature negotiation
 * (VIRTIO_F_VERSION_1 required), device status and reset, the queues'
 * registers, ISR read-to-clear, the config generation, INTx. The device
 * type (net, blk) supplies its config space and queue handling through
 * struct virtio_dev_ops and is told "queue N notified"; it raises
 * interrupts with virtio_pci_raise. Pure: no KVM; the VM's hooks say where
 * notifications and interrupts really go (ioeventfd, irqfd). */
#ifndef MINIVMM_VIRTIO_PCI_H
#define MINIVMM_VIRTIO_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/pci.h"
#include "devices/virtio/virtqueue.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040
#define VIRTIO_PCI_MAX_QUEUES 8

/* Device status (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER 0x02
#define VIRTIO_STATUS_DRIVER_OK 0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

#define VIRTIO_F_VERSION_1 (1ULL << 32)

#define VIRTIO_ISR_QUEUE 0x1
#define VIRTIO_ISR_CONFIG 0x2

/* The BAR's layout: one 4 KiB page, four structures. */
#define VIRTIO_PCI_BAR 0
#define VIRTIO_PCI_BAR_SIZE 0x1000
#define VIRTIO_PCI_COMMON_OFF 0x000
#define VIRTIO_PCI_COMMON_LEN 0x38
#define VIRTIO_PCI_ISR_OFF 0x100
#define VIRTIO_PCI_DEVCFG_OFF 0x200
#define VIRTIO_PCI_DEVCFG_LEN 0x100
#define VIRTIO_PCI_NOTIFY_OFF 0x300
#define VIRTIO_PCI_NOTIFY_MULT 4 /* queue q notifies at NOTIFY_OFF + 4 q */

struct virtio_pci;

struct virtio_dev_ops {
	/* Device config space accesses, off + len <= VIRTIO_PCI_DEVCFG_LEN. */
	void (*config_read)(void *dev, uint32_t off, uint8_t *data, uint32_t len);
	void (*config_write)(void *dev, uint32_t off, const uint8_t *data, uint32_t len);
	/* The driver notified queue q (the MMIO path; the device should
	 * hand the work to its back-end thread, not do it on a vCPU). */
	void (*queue_notify)(void *dev, int q);
	/* The driver reset the device (status 0): drop device-type state. */
	void (*reset)(void *dev);
	/* The driver set DRIVER_OK: the back-end may start. */
	void (*driver_ok)(void *dev);
};

struct virtio_pci {
	struct pci_func pci;
	uint8_t type;
	uint64_t dev_features;
	uint64_t drv_features;
	uint32_t dev_feat_sel, drv_feat_sel;
	uint8_t status;
	uint8_t cfg_gen;
	uint8_t isr;
	uint16_t queue_sel;
	uint16_t msix_config; /* no MSI-X: reads back NO_VECTOR */
	int nqueues;
	struct virtq vq[VIRTIO_PCI_MAX_QUEUES];
	const struct virtio_dev_ops *ops;
	void *dev;
	struct virtq_mem mem;
	/* Where the notify register of queue q now is (on) or was (off),
	 * for the VM's ioeventfds; under the device lock. */
	void (*notify_map)(void *opaque, int q, uint64_t gpa, bool on);
	void *notify_opaque;
	char name[16];
};

/* Sets up the transport for a device of virtio type `type` (1 = net) with
 * nqueues queues of qsize entries, PCI class class_code. */
int virtio_pci_init(struct virtio_pci *vp, uint8_t type, uint32_t class_code,
		    int nqueues, uint16_t qsize, uint64_t features,
		    const struct virtio_dev_ops *ops, void *dev,
		    const struct virtq_mem *mem);
/* The BAR handler (offsets within BAR 0), for tests. */
void virtio_pci_bar_io(void *vp, uint64_t off, uint8_t *data, uint32_t len, bool w);

/* isr bits |= why; INTx goes up. */
void virtio_pci_raise(struct virtio_pci *vp, uint8_t why);
/* The device config changed: a new generation and a config interrupt. */
void virtio_pci_config_changed(struct virtio_pci *vp);
/* The driver broke the device's rules: NEEDS_RESET, and a config
 * interrupt if the driver is running. */
void virtio_pci_needs_reset(struct virtio_pci *vp);
/* DRIVER_OK set and neither NEEDS_RESET nor FAILED: queues may run. */
bool virtio_pci_running(const struct virtio_pci *vp);
/* The whole device back to power-on (status 0, queues off, ISR 0). */
void virtio_pci_reset(struct virtio_pci *vp);

/* State in a device section: PCI config space, then the transport.
 * check judges it without a device; load also checks it against this
 * device (features offered, queue count and sizes, rings in RAM). */
#define VIRTIO_PCI_QSTATE_SIZE 40
#define VIRTIO_PCI_STATE_SIZE(nq) \
	(PCI_FUNC_STATE_SIZE + 34 + VIRTIO_PCI_QSTATE_SIZE * (nq))
int virtio_pci_save(const struct virtio_pci *vp, uint8_t *buf, size_t cap);
/* Returns the bytes the transport's state takes at p (so the device's
 * own part follows), or -EINVAL. */
int virtio_pci_check(const uint8_t *p, size_t len, uint8_t type, char *err,
		     size_t errlen);
int virtio_pci_load(struct virtio_pci *vp, const uint8_t *p, size_t len, char *err,
		    size_t errlen);

/* n bytes (1-8) of v, little-endian, as virtio's registers and our
 * state blobs hold them; and back. */
void virtio_le_put(uint8_t *p, uint64_t v, int n);
uint64_t virtio_le_get(const uint8_t *p, int n);

#endif
