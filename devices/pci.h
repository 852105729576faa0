/* PCI: one host bridge on configuration mechanism #1 (port 0xcf8 address,
 * 0xcfc-0xcff data), bus 0, up to 32 single-function slots. A function is a
 * 256-byte configuration space with a write mask (everything not in it is
 * read-only), up to six 32-bit memory BARs that the VMM places below 4 GiB
 * the way firmware would, a capability list and legacy INTx. A BAR that is
 * moved, or whose decode the command register turns off, is re-registered
 * on the MMIO bus at once; a map hook tells the owner (ioeventfds).
 * Pure: the host bridge is a device on the list; functions are embedded in
 * the devices that own them (virtio-pci) and saved in their sections. */
#ifndef MINIVMM_PCI_H
#define MINIVMM_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"

#define PCI_CONF_ADDR_PORT 0xcf8
#define PCI_CONF_DATA_PORT 0xcfc
#define PCI_MAX_SLOTS 32
#define PCI_NUM_BARS 6
#define PCI_CFG_SIZE 256

/* Where the VMM places memory BARs: the hole between the end of low RAM
 * (3 GiB) and the IOAPIC (0xfec00000), from 0xe0000000 up. */
#define PCI_MMIO_BASE 0xe0000000ULL
#define PCI_MMIO_END 0xfec00000ULL
/* The IRQs INTx of slots 1, 2, 3 ... use, round robin (ISA-free lines). */
#define PCI_IRQ_A 10
#define PCI_IRQ_B 11

/* Optional section: the conf1 address latch, saved only when it is set. */
#define PCI_HOST_STATE_TYPE 0x80000003u
#define PCI_HOST_STATE_VERSION 1

/* Configuration-space offsets. */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_CAP_START 0x40

#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS_INTERRUPT 0x0008
#define PCI_STATUS_CAP_LIST 0x0010

struct pci_func;

/* Called when BAR bar starts (on) or stops decoding at gpa, under the
 * device lock; the owner moves what it keeps per address (ioeventfds). */
typedef void (*pci_map_fn)(void *opaque, int bar, uint64_t gpa, bool on);

struct pci_bar {
	uint32_t size;   /* 0: not implemented; else a power of two >= 16 */
	bus_io_fn fn;    /* MMIO handler, offsets relative to the BAR */
	void *opaque;
	uint32_t reset_gpa; /* where the VMM placed it (reset puts it back) */
	bool mapped;     /* registered on the MMIO bus at mapped_gpa */
	uint64_t mapped_gpa;
};

struct pci_func {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];
	uint8_t cap_end;  /* next free capability offset */
	uint8_t cap_last; /* offset of the last capability's "next" byte, 0 if none */
	struct pci_bar bar[PCI_NUM_BARS];
	bool intx;        /* the device's INTx level (before INTX_DISABLE) */
	bool line;        /* what the irq callback was last told */
	uint8_t irq_num;  /* the IRQ the VMM wired pin A to (pci_host_add) */
	void (*irq)(void *opaque, int irq, int level);
	void *irq_opaque;
	pci_map_fn map;
	void *map_opaque;
	struct bus *mmio; /* set by pci_host_add */
	const char *name; /* the BAR regions' name on the bus */
};

struct pci_host {
	uint32_t addr; /* the conf1 address latch */
	struct pci_func bridge; /* 00:00.0: Linux's conf1 probe wants a host bridge */
	struct pci_func *slot[PCI_MAX_SLOTS];
	struct bus *mmio;
	uint64_t next_bar; /* the BAR allocator */
};

/* A function with its identity; everything read-only except the command
 * register, the BARs added later and the Interrupt Line. */
void pci_func_init(struct pci_func *f, const char *name, uint16_t vendor,
		   uint16_t device, uint32_t class_code, uint8_t revision,
		   uint16_t subsys_vendor, uint16_t subsys_id);
/* A 32-bit memory BAR of size bytes (a power of two, 16 .. 1 GiB). */
int pci_func_add_bar(struct pci_func *f, int bar, uint32_t size, bus_io_fn fn,
		     void *opaque);
/* Appends a capability (cap[0] = ID, cap[1] is filled with the next
 * pointer); returns its offset or -ENOSPC. */
int pci_func_add_cap(struct pci_func *f, const uint8_t *cap, uint8_t len);
/* INTx pin A; the line the VMM picks lands in Interrupt Line at add time. */
void pci_func_set_irq(struct pci_func *f,
		      void (*irq)(void *opaque, int irq, int level), void *opaque);
void pci_func_set_map(struct pci_func *f, pci_map_fn map, void *opaque);
/* The device's interrupt level; the line follows it unless the command
 * register disables INTx. */
void pci_func_set_intx(struct pci_func *f, bool level);

/* Configuration accesses to one function: off + len <= 256, len 1/2/4. */
uint32_t pci_func_cfg_read(struct pci_func *f, uint32_t off, uint32_t len);
void pci_func_cfg_write(struct pci_func *f, uint32_t off, uint32_t len, uint32_t val);

/* Back to the firmware's state: BARs where the VMM placed them, memory
 * decode on, INTx low. */
void pci_func_reset(struct pci_func *f);
/* The address BAR bar decodes at now, or 0 when it does not decode. */
uint64_t pci_func_bar_addr(const struct pci_func *f, int bar);

/* A function's config space in a section: 256 bytes. Load refuses a
 * space whose read-only bytes differ from this function's (another
 * device), takes the writable ones and re-maps the BARs. */
#define PCI_FUNC_STATE_SIZE PCI_CFG_SIZE
void pci_func_save(const struct pci_func *f, uint8_t out[PCI_FUNC_STATE_SIZE]);
int pci_func_load(struct pci_func *f, const uint8_t *in, char *err, size_t errlen);

/* The host bridge as a device on l: conf1 ports, an empty bus 0. */
int pci_host_create(struct device_list *l, struct pci_host **out, char *err,
		    size_t errlen);
/* Puts f into the next free slot (from 1; slot 0 is the host bridge's
 * own function), places its BARs, picks its IRQ and maps
 * it. Returns the slot or -errno with a message. */
int pci_host_add(struct pci_host *h, struct pci_func *f, char *err, size_t errlen);
/* Takes f off the bus (its BARs off the MMIO bus). */
void pci_host_remove(struct pci_host *h, struct pci_func *f);
/* The conf1 handlers, for tests: port offsets relative to 0xcf8/0xcfc. */
void pci_host_addr_io(void *h, uint64_t off, uint8_t *data, uint32_t len, bool w);
void pci_host_data_io(void *h, uint64_t off, uint8_t *data, uint32_t len, bool w);

#endif
