#include "devices/pci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONF1_ENABLE 0x80000000u
#define CONF1_MASK 0x80fffffcu /* enable, bus, device, function, register */
#define BAR_MEM_MASK 0xfffffff0u

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

void pci_func_init(struct pci_func *f, const char *name, uint16_t vendor,
		   uint16_t device, uint32_t class_code, uint8_t revision,
		   uint16_t subsys_vendor, uint16_t subsys_id)
{
	memset(f, 0, sizeof(*f));
	f->name = name;
	put16(&f->cfg[PCI_VENDOR_ID], vendor);
	put16(&f->cfg[PCI_DEVICE_ID], device);
	f->cfg[PCI_REVISION_ID] = revision;
	f->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
	f->cfg[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
	f->cfg[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
	f->cfg[PCI_HEADER_TYPE] = 0; /* type 0, single function */
	put16(&f->cfg[PCI_SUBSYSTEM_VENDOR_ID], subsys_vendor);
	put16(&f->cfg[PCI_SUBSYSTEM_ID], subsys_id);
	/* The only writable bits: memory decode, bus master, INTx disable
	 * (no I/O BARs, so I/O decode stays off), and Interrupt Line. */
	put16(&f->wmask[PCI_COMMAND],
	      PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	f->wmask[PCI_INTERRUPT_LINE] = 0xff;
	f->cap_end = PCI_CAP_START;
}

int pci_func_add_bar(struct pci_func *f, int bar, uint32_t size, bus_io_fn fn,
		     void *opaque)
{
	if (bar < 0 || bar >= PCI_NUM_BARS || size < 16 || size > (1u << 30) ||
	    (size & (size - 1)) || !fn || f->bar[bar].size)
		return -EINVAL;
	f->bar[bar] = (struct pci_bar){ .size = size, .fn = fn, .opaque = opaque };
	/* Sizing works by the mask alone: writing all-ones reads back the
	 * size's complement; the low flag bits (32-bit, non-prefetchable
	 * memory) are zero and read-only. */
	put32(&f->wmask[PCI_BAR0 + 4 * bar], ~(size - 1) & BAR_MEM_MASK);
	return 0;
}

int pci_func_add_cap(struct pci_func *f, const uint8_t *cap, uint8_t len)
{
	uint8_t off = f->cap_end;

	if (len < 2 || off + len > PCI_CFG_SIZE)
		return -ENOSPC;
	memcpy(&f->cfg[off], cap, len);
	f->cfg[off + 1] = 0;
	if (f->cap_last)
		f->cfg[f->cap_last] = off;
	else
		f->cfg[PCI_CAPABILITY_LIST] = off;
	f->cap_last = off + 1;
	f->cfg[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
	/* Capabilities are dword aligned. */
	f->cap_end = (uint8_t)((off + len + 3) & ~3);
	if (off + len + 3 > 0xff)
		f->cap_end = 0xfc;
	return off;
}

void pci_func_set_irq(struct pci_func *f,
		      void (*irq)(void *opaque, int irq, int level), void *opaque)
{
	f->irq = irq;
	f->irq_opaque = opaque;
	f->cfg[PCI_INTERRUPT_PIN] = 1; /* INTA# */
}

void pci_func_set_map(struct pci_func *f, pci_map_fn map, void *opaque)
{
	f->map = map;
	f->map_opaque = opaque;
}

static uint16_t command(const struct pci_func *f)
{
	return (uint16_t)(f->cfg[PCI_COMMAND] | f->cfg[PCI_COMMAND + 1] << 8);
}

static void update_line(struct pci_func *f)
{
	bool line = f->intx && !(command(f) & PCI_COMMAND_INTX_DISABLE);

	if (line == f->line)
		return;
	f->line = line;
	if (f->irq)
		f->irq(f->irq_opaque, f->irq_num, line);
}

void pci_func_set_intx(struct pci_func *f, bool level)
{
	f->intx = level;
	update_line(f);
}

uint64_t pci_func_bar_addr(const struct pci_func *f, int bar)
{
	const struct pci_bar *b = &f->bar[bar];
	uint64_t addr;

	if (!b->size || !(command(f) & PCI_COMMAND_MEMORY))
		return 0;
	addr = get32(&f->cfg[PCI_BAR0 + 4 * bar]) & BAR_MEM_MASK;
	/* Zero is "not assigned"; a BAR that reaches the top of the 32-bit
	 * space is mid-sizing (all-ones written), and decodes nothing. */
	if (addr == 0 || addr + b->size > 0xffffffffULL)
		return 0;
	return addr;
}

/* Makes the MMIO bus match the BARs and the command register. */
static void update_maps(struct pci_func *f)
{
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &f->bar[i];
		uint64_t want = pci_func_bar_addr(f, i);

		if (!b->size || !f->mmio)
			continue;
		if (b->mapped && b->mapped_gpa == want)
			continue;
		if (b->mapped) {
			bus_unregister(f->mmio, b->mapped_gpa);
			b->mapped = false;
			if (f->map)
				f->map(f->map_opaque, i, b->mapped_gpa, false);
		}
		/* A BAR placed over another device decodes nothing, as a
		 * conflict would on hardware; the guest can move it. */
		if (want && bus_register(f->mmio, want, b->size, f->name, b->fn,
					 b->opaque) == 0) {
			b->mapped = true;
			b->mapped_gpa = want;
			if (f->map)
				f->map(f->map_opaque, i, want, true);
		}
	}
}

uint32_t pci_func_cfg_read(struct pci_func *f, uint32_t off, uint32_t len)
{
	uint8_t b[4] = { 0 };

	if (off >= PCI_CFG_SIZE || len > 4 || len > PCI_CFG_SIZE - off)
		return 0xffffffffu;
	memcpy(b, &f->cfg[off], len);
	/* Interrupt Status is the device's level, not a stored bit. */
	if (f->intx && off <= PCI_STATUS && off + len > PCI_STATUS)
		b[PCI_STATUS - off] |= PCI_STATUS_INTERRUPT;
	return get32(b);
}

void pci_func_cfg_write(struct pci_func *f, uint32_t off, uint32_t len, uint32_t val)
{
	bool remap = false;

	if (off >= PCI_CFG_SIZE || len > 4 || len > PCI_CFG_SIZE - off)
		return;
	for (uint32_t i = 0; i < len; i++) {
		uint32_t o = off + i;
		uint8_t m = f->wmask[o], v = (uint8_t)(val >> (8 * i));

		f->cfg[o] = (uint8_t)((f->cfg[o] & ~m) | (v & m));
		if (m && (o < PCI_COMMAND + 2 || (o >= PCI_BAR0 && o < PCI_BAR0 + 24)))
			remap = true;
	}
	if (remap)
		update_maps(f);
	update_line(f);
}

/* Where pci_host_add placed the BARs, kept so reset can put them back. */
static void place_bars(struct pci_func *f, const uint32_t addr[PCI_NUM_BARS])
{
	for (int i = 0; i < PCI_NUM_BARS; i++)
		if (f->bar[i].size)
			put32(&f->cfg[PCI_BAR0 + 4 * i], addr[i]);
}

void pci_func_reset(struct pci_func *f)
{
	uint32_t addr[PCI_NUM_BARS];

	/* The firmware's state: where pci_host_add placed each BAR. */
	for (int i = 0; i < PCI_NUM_BARS; i++)
		addr[i] = f->bar[i].reset_gpa;
	place_bars(f, addr);
	put16(&f->cfg[PCI_COMMAND], PCI_COMMAND_MEMORY);
	f->cfg[PCI_INTERRUPT_LINE] = f->irq_num;
	update_maps(f);
	pci_func_set_intx(f, false);
}

void pci_func_save(const struct pci_func *f, uint8_t out[PCI_FUNC_STATE_SIZE])
{
	memcpy(out, f->cfg, PCI_CFG_SIZE);
}

int pci_func_load(struct pci_func *f, const uint8_t *in, char *err, size_t errlen)
{
	for (int i = 0; i < PCI_CFG_SIZE; i++) {
		if ((in[i] ^ f->cfg[i]) & ~f->wmask[i]) {
			snprintf(err, errlen,
				 "PCI config byte 0x%02x is 0x%02x, this device has 0x%02x (another device?)",
				 i, in[i], f->cfg[i]);
			return -EINVAL;
		}
	}
	for (int i = 0; i < PCI_CFG_SIZE; i++)
		f->cfg[i] = (uint8_t)((f->cfg[i] & ~f->wmask[i]) | (in[i] & f->wmask[i]));
	update_maps(f);
	update_line(f);
	return 0;
}

/* ---- the host bridge ----------------------------------------------- */

static struct pci_func *selected(struct pci_host *h, uint32_t *reg)
{
	uint32_t a = h->addr;

	if (!(a & CONF1_ENABLE) || ((a >> 16) & 0xff) != 0 || ((a >> 8) & 7) != 0)
		return NULL;
	*reg = a & 0xfc;
	return h->slot[(a >> 11) & 0x1f];
}

void pci_host_addr_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool w)
{
	struct pci_host *h = opaque;

	/* Only a dword access at 0xcf8 is the address register; byte
	 * accesses there are other mechanisms' (Linux probes 0xcfb). */
	if (off != 0 || len != 4) {
		if (!w)
			memset(data, 0xff, len);
		return;
	}
	if (w)
		h->addr = get32(data) & CONF1_MASK;
	else
		put32(data, h->addr);
}

void pci_host_data_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool w)
{
	struct pci_host *h = opaque;
	struct pci_func *f;
	uint32_t reg, v = 0;

	f = selected(h, &reg);
	if (!f || off + len > 4) {
		if (!w)
			memset(data, 0xff, len);
		return;
	}
	if (w) {
		for (uint32_t i = 0; i < len; i++)
			v |= (uint32_t)data[i] << (8 * i);
		pci_func_cfg_write(f, reg + (uint32_t)off, len, v);
		return;
	}
	v = pci_func_cfg_read(f, reg + (uint32_t)off, len);
	for (uint32_t i = 0; i < len; i++)
		data[i] = (uint8_t)(v >> (8 * i));
}

int pci_host_add(struct pci_host *h, struct pci_func *f, char *err, size_t errlen)
{
	int slot;

	for (slot = 1; slot < PCI_MAX_SLOTS && h->slot[slot]; slot++)
		;
	if (slot == PCI_MAX_SLOTS) {
		snprintf(err, errlen, "PCI bus 0 is full (%d slots)", PCI_MAX_SLOTS);
		return -ENOSPC;
	}
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		uint64_t size = f->bar[i].size, a;

		if (!size)
			continue;
		a = (h->next_bar + size - 1) & ~(size - 1);
		if (a + size > PCI_MMIO_END) {
			snprintf(err, errlen, "PCI: no room for a %llu-byte BAR below 0x%llx",
				 (unsigned long long)size, (unsigned long long)PCI_MMIO_END);
			return -ENOSPC;
		}
		f->bar[i].reset_gpa = (uint32_t)a;
		h->next_bar = a + size;
	}
	f->irq_num = (uint8_t)((slot - 1) % 2 ? PCI_IRQ_B : PCI_IRQ_A);
	f->mmio = h->mmio;
	h->slot[slot] = f;
	pci_func_reset(f);
	return slot;
}

void pci_host_remove(struct pci_host *h, struct pci_func *f)
{
	for (int s = 1; s < PCI_MAX_SLOTS; s++) {
		if (h->slot[s] != f)
			continue;
		put16(&f->cfg[PCI_COMMAND], 0);
		update_maps(f);
		f->mmio = NULL;
		h->slot[s] = NULL;
	}
}

/* ---- the host bridge as a device ----------------------------------- */

static void host_reset(void *dev)
{
	((struct pci_host *)dev)->addr = 0;
}

static int host_save(void *dev, uint8_t *buf, size_t cap)
{
	struct pci_host *h = dev;

	if (h->addr == 0)
		return 0; /* the usual case: no section */
	if (cap < 5)
		return -ENOSPC;
	buf[0] = PCI_HOST_STATE_VERSION;
	put32(buf + 1, h->addr);
	return 5;
}

static int host_check(const uint8_t *p, size_t len, char *err, size_t errlen)
{
	if (len != 5 || p[0] != PCI_HOST_STATE_VERSION || (get32(p + 1) & ~CONF1_MASK)) {
		snprintf(err, errlen, "PCI host state (%zu bytes) rejected", len);
		return -EINVAL;
	}
	return 0;
}

static int host_load(void *dev, const uint8_t *p, size_t len, char *err, size_t errlen)
{
	int ret = host_check(p, len, err, errlen);

	if (!ret)
		((struct pci_host *)dev)->addr = get32(p + 1);
	return ret;
}

static const struct device_ops pci_host_ops = {
	.name = "pci",
	.state_type = PCI_HOST_STATE_TYPE,
	.state_version = PCI_HOST_STATE_VERSION,
	.reset = host_reset,
	.save = host_save,
	.check = host_check,
	.load = host_load,
	.destroy = free,
};

int pci_host_create(struct device_list *l, struct pci_host **out, char *err,
		    size_t errlen)
{
	struct pci_host *h = calloc(1, sizeof(*h));
	struct device d = {
		.ops = &pci_host_ops, .state = h, .nio = 2,
		.io = { { BUS_PIO, PCI_CONF_ADDR_PORT, 4, "pci-addr", pci_host_addr_io },
			{ BUS_PIO, PCI_CONF_DATA_PORT, 4, "pci-data", pci_host_data_io } },
	};
	int ret;

	*out = NULL;
	if (!h) {
		snprintf(err, errlen, "pci_host_create: out of memory");
		return -ENOMEM;
	}
	h->mmio = l->mmio;
	h->next_bar = PCI_MMIO_BASE;
	/* 00:00.0 is a host bridge (class 06:00), so that a kernel's conf1
	 * sanity check finds one; the Red Hat/QEMU host bridge IDs. */
	pci_func_init(&h->bridge, "pci-bridge", 0x1b36, 0x0008, 0x060000, 0, 0x1af4, 0x1100);
	put16(&h->bridge.wmask[PCI_COMMAND], 0);
	h->slot[0] = &h->bridge;
	ret = device_add(l, &d, err, errlen);
	if (!ret)
		*out = h;
	return ret;
}
