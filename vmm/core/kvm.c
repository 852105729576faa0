#include "vmm/core/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static const struct {
	long cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
};

int kvm_check_cap(int fd, long cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

int kvm_open(char *err, size_t errlen)
{
	int fd, ver, e;
	size_t i;

	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		if (e == ENOENT)
			KVM_ERR(err, errlen, "/dev/kvm: not present (is the kvm module loaded?)");
		else
			KVM_ERR(err, errlen, "/dev/kvm: %s", strerror(e));
		return -e;
	}
	ver = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION) {
		KVM_ERR(err, errlen, "KVM_GET_API_VERSION: got %d, need %d", ver,
			KVM_API_VERSION);
		close(fd);
		return -ENOTSUP;
	}
	for (i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++) {
		if (!kvm_check_cap(fd, required_caps[i].cap)) {
			KVM_ERR(err, errlen, "KVM lacks %s", required_caps[i].name);
			close(fd);
			return -ENOTSUP;
		}
	}
	return fd;
}

int kvm_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out, char *err,
			size_t errlen)
{
	/* The kernel answers E2BIG until the buffer is large enough. */
	for (int nent = 64; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) +
					      nent * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = nent;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			*out = c;
			return 0;
		}
		int e = errno;
		free(c);
		if (e != E2BIG) {
			KVM_ERR(err, errlen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(e));
			return -e;
		}
	}
	KVM_ERR(err, errlen, "KVM_GET_SUPPORTED_CPUID: table too large");
	return -E2BIG;
}

int kvm_set_memslot(int vm_fd, uint32_t slot, uint32_t flags, uint64_t gpa,
		    uint64_t size, void *hva, char *err, size_t errlen)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
	};

	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
		int e = errno;
		KVM_ERR(err, errlen, "KVM_SET_USER_MEMORY_REGION(slot %u): %s", slot,
			strerror(e));
		return -e;
	}
	return 0;
}

int kvm_irq_line(int vm_fd, uint32_t irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level };

	return ioctl(vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

int kvm_ioctl(int fd, unsigned long req, void *arg, const char *what, int cpu,
	      char *err, size_t errlen)
{
	int r = ioctl(fd, req, arg);

	if (r < 0) {
		int e = errno;

		if (cpu >= 0)
			KVM_ERR(err, errlen, "%s (vcpu%d): %s", what, cpu, strerror(e));
		else
			KVM_ERR(err, errlen, "%s: %s", what, strerror(e));
		return -e;
	}
	return r;
}
