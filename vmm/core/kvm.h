/* Thin wrappers over /dev/kvm system and VM ioctls. Each returns 0 (or a
 * non-negative value) or -errno and writes what failed into err. */
#ifndef MINIVMM_KVM_H
#define MINIVMM_KVM_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#define KVM_ERR(err, errlen, ...) snprintf((err), (errlen), __VA_ARGS__)

/* Opens /dev/kvm, checks the API version and the capabilities minivmm
 * cannot work without. Returns the fd or -errno. */
int kvm_open(char *err, size_t errlen);
int kvm_check_cap(int fd, long cap);
/* Allocates the supported CPUID table (caller frees). */
int kvm_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out, char *err,
			size_t errlen);
int kvm_set_memslot(int vm_fd, uint32_t slot, uint32_t flags, uint64_t gpa,
		    uint64_t size, void *hva, char *err, size_t errlen);
int kvm_irq_line(int vm_fd, uint32_t irq, int level);
/* The one ioctl wrapper: returns ioctl()'s non-negative result, or -errno
 * with "WHAT: reason" (or "WHAT (vcpuN): reason" when cpu >= 0) in err. */
int kvm_ioctl(int fd, unsigned long req, void *arg, const char *what, int cpu,
	      char *err, size_t errlen);

#endif
