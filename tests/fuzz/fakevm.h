/* A struct vm without /dev/kvm for the fuzz targets: guest RAM mapped as
 * vm_create maps it, the machine's devices (UART, console, PCI host and a
 * virtio-net on no back-end) on a device list, a VM fd and vCPU fds that
 * are kvmstub.h's (KVM requests succeed without a kernel). Everything in
 * front of KVM (stream, sections, vmstate parser and loader, devices)
 * runs for real. */
#ifndef MINIVMM_FUZZ_FAKEVM_H
#define MINIVMM_FUZZ_FAKEVM_H

#include <stdint.h>

#include "devices/virtio/net.h"
#include "devices/virtio/virtqueue.h"
#include "vmm/core/vm.h"

#define FAKEVM_MEM (8ULL << 20) /* the fixture snapshot's size (tests/fixtures) */
#define FAKEVM_CPUS 1

struct fakevm {
	struct vm vm;
	struct virtio_net *net;
	struct virtq_mem mem; /* guest RAM, checked like the VM's accessor */
};

/* Aborts on failure: a fuzz target cannot go on without its machine.
 * nic: with a virtio-net (a blob then needs its section); be: its
 * back-end (NULL: sends vanish, nothing arrives). */
void fakevm_init(struct fakevm *f, bool nic, const struct virtio_net_backend *be);
void fakevm_destroy(struct fakevm *f);
/* A few bytes out of the UART and a virtio-net pass, after a load: a
 * device state that loads but breaks the device shows here. */
void fakevm_poke(struct fakevm *f);
/* A PCI config access to bus 0 device 1 (the first device plugged in)
 * through ports 0xcf8/0xcfc, as a driver makes it. */
void fakevm_pci_cfg(struct vm *vm, uint32_t off, uint32_t len, uint32_t *v, bool w);

#define FAKEVM_OP_LEN 8

/* A virtio driver program, the input of the virtio device fuzzers: u16
 * count of 8-byte operations (u8 op, u8 size, u16 offset, u32 value), the
 * operations, then guest RAM (copied to GPA 0, at most FAKEVM_MEM). Ops %
 * 6: 0/1 PCI config write/read, 2/3 BAR0 (at bar) write/read, 4 process()
 * under the device-list lock, 5 own(value): the target's own knob. */
void fakevm_run_program(struct fakevm *f, uint32_t bar, const uint8_t *data, size_t size,
			void (*process)(void *ctx), void (*own)(void *ctx, uint32_t v), void *ctx);

#endif
