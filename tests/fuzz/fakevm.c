#include "tests/fuzz/fakevm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "devices/conline.h"
#include "devices/pci.h"
#include "devices/uart.h"
#include "devices/virtio/virtio_pci.h"
#include "migrate/proto/stream.h"
#include "tests/fuzz/kvmstub.h"
#include "vmm/core/vcpu.h"

static void no_irq(void *opaque, int level)
{
	(void)opaque;
	(void)level;
}

static void no_pci_irq(void *opaque, int irq, int level)
{
	(void)opaque;
	(void)irq;
	(void)level;
}

static void tx(void *opaque, uint8_t byte)
{
	conline_put(((struct vm *)opaque)->console, byte);
}

static int ram_check(void *o, uint64_t gpa, uint64_t len)
{
	struct vm *vm = o;

	return gpa <= vm->ram_size && len <= vm->ram_size - gpa ? 0 : -EFAULT;
}

static int ram_read(void *o, uint64_t gpa, void *buf, uint64_t len)
{
	struct vm *vm = o;

	if (ram_check(o, gpa, len))
		return -EFAULT;
	memcpy(buf, vm->ram + gpa, len);
	return 0;
}

static int ram_write(void *o, uint64_t gpa, const void *buf, uint64_t len)
{
	struct vm *vm = o;

	if (ram_check(o, gpa, len))
		return -EFAULT;
	memcpy(vm->ram + gpa, buf, len);
	return 0;
}

static ssize_t be_send(void *o, const void *frame, size_t len)
{
	(void)o;
	(void)frame;
	return (ssize_t)len;
}

static ssize_t be_recv(void *o, void *buf, size_t cap)
{
	(void)o;
	(void)buf;
	(void)cap;
	return -EAGAIN;
}

static void be_wake(void *o, int q)
{
	(void)o;
	(void)q;
}

static void die(const char *what, const char *err)
{
	fprintf(stderr, "fakevm: %s: %s\n", what, err);
	abort();
}

void fakevm_init(struct fakevm *f, bool nic, const struct virtio_net_backend *be)
{
	struct vm *vm = &f->vm;
	struct virtio_net_conf nc = { .mac = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 } };
	char err[256] = "";
	int null;

	memset(f, 0, sizeof(*f));
	/* /dev/kvm answers capability checks only; the VM and vCPU fds are
	 * the stub's (kvmstub.h), so no fuzzed state reaches the kernel. */
	vm->kvm_fd = kvmstub_kvm_fd();
	vm->vm_fd = kvmstub_fd();
	vm->notify_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	snprintf(vm->cfg.name, sizeof(vm->cfg.name), "fuzz");
	vm->cfg.mem_size = FAKEVM_MEM;
	vm->cfg.ncpus = FAKEVM_CPUS;
	if (vm_ram_map(FAKEVM_MEM, &vm->ram, err, sizeof(err)))
		die("RAM", err);
	vm->ram_size = FAKEVM_MEM;
	vm->vcpus = calloc(FAKEVM_CPUS, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		die("vCPUs", "out of memory");
	for (int i = 0; i < FAKEVM_CPUS; i++)
		vm->vcpus[i] = (struct vcpu){ .vm = vm, .id = i, .fd = kvmstub_fd() };
	vm->ncpus = FAKEVM_CPUS;
	f->mem = (struct virtq_mem){ ram_read, ram_write, ram_check, vm };
	null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (device_list_init(&vm->devices, &vm->pio, &vm->mmio))
		die("device list", "init");
	/* The order of vm_create_devices: it is the blob's order. */
	if (uart_create(&vm->devices, COM1_PORT, no_irq, tx, vm, &vm->com1, err, sizeof(err)) ||
	    conline_create(&vm->devices, null, &vm->console, err, sizeof(err)) ||
	    pci_host_create(&vm->devices, &vm->pci, err, sizeof(err)))
		die("devices", err);
	if (!nic)
		return;
	nc.mem = f->mem;
	nc.be = be ? *be : (struct virtio_net_backend){ .send = be_send, .recv = be_recv,
							 .wake = be_wake };
	nc.irq = no_pci_irq;
	if (virtio_net_create(&vm->devices, vm->pci, &nc, &f->net, err, sizeof(err)))
		die("virtio-net", err);
}

void fakevm_poke(struct fakevm *f)
{
	struct vm *vm = &f->vm;

	/* bus_access takes the device lock itself; the NIC pass wants it held. */
	for (int i = 0; i < 300; i++) {
		uint8_t b = i % 64 == 63 ? '\n' : 'x', lsr = 0;

		bus_access(&vm->pio, COM1_PORT, &b, 1, true);
		bus_access(&vm->pio, COM1_PORT + 5, &lsr, 1, false);
	}
	device_list_lock(&vm->devices);
	for (int i = 0; f->net && i < 4 && virtio_net_process(f->net); i++)
		;
	device_list_unlock(&vm->devices);
}

void fakevm_pci_cfg(struct vm *vm, uint32_t off, uint32_t len, uint32_t *v, bool w)
{
	uint32_t a = 0x80000000u | 1u << 11 | (off & 0xfc);

	bus_access(&vm->pio, PCI_CONF_ADDR_PORT, (uint8_t *)&a, 4, true);
	bus_access(&vm->pio, PCI_CONF_DATA_PORT + (off & 3), (uint8_t *)v, len, w);
}

void fakevm_destroy(struct fakevm *f)
{
	struct vm *vm = &f->vm;
	int fd = vm->console ? vm->console->fd : -1;

	device_list_destroy(&vm->devices);
	if (fd >= 0)
		close(fd);
	free(vm->vcpus);
	munmap(vm->ram, vm->ram_size);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
}

void fakevm_run_program(struct fakevm *f, uint32_t bar, const uint8_t *data, size_t size,
			void (*process)(void *ctx), void (*own)(void *ctx, uint32_t v), void *ctx)
{
	struct vm *vm = &f->vm;
	size_t plen, ram_len;

	if (size < 2)
		return;
	plen = (size_t)le_get16(data) * FAKEVM_OP_LEN;
	if (plen > size - 2)
		plen = (size - 2) / FAKEVM_OP_LEN * FAKEVM_OP_LEN;
	ram_len = size - 2 - plen;
	if (ram_len > FAKEVM_MEM)
		ram_len = FAKEVM_MEM;
	memcpy(vm->ram, data + 2 + plen, ram_len);
	for (size_t i = 0; i < plen; i += FAKEVM_OP_LEN) {
		const uint8_t *op = data + 2 + i;
		uint32_t len = 1u << (op[1] & 3), off = le_get16(op + 2), v = le_get32(op + 4);

		if (len == 8)
			len = 4;
		switch (op[0] % 6) {
		case 0:
		case 1:
			fakevm_pci_cfg(vm, off % 256, len, &v, op[0] % 6 == 0);
			break;
		case 2:
		case 3:
			bus_access(&vm->mmio, bar + off % VIRTIO_PCI_BAR_SIZE, (uint8_t *)&v, len,
				   op[0] % 6 == 2);
			break;
		case 4:
			device_list_lock(&vm->devices);
			process(ctx);
			device_list_unlock(&vm->devices);
			break;
		case 5:
			own(ctx, v);
			break;
		}
	}
}
