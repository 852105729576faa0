#include "tests/fuzz/kvmstub.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fake = -1, kvm = -2;

int kvmstub_fd(void)
{
	if (fake < 0)
		fake = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fake < 0)
		abort();
	return fake;
}

int kvmstub_kvm_fd(void)
{
	if (kvm == -2)
		kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	return kvm;
}

static long real_ioctl(int fd, unsigned long req, void *arg)
{
	return syscall(SYS_ioctl, fd, req, arg);
}

/* ASan's interceptor of the same name is weak: this one wins. */
int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (fd != fake || fake < 0 || _IOC_TYPE(req) != KVMIO)
		return (int)real_ioctl(fd, req, arg);
	switch (req) {
	case KVM_CHECK_EXTENSION:
		return kvmstub_kvm_fd() < 0 ? 0 : (int)real_ioctl(kvmstub_kvm_fd(), req, arg);
	case KVM_SET_MSRS:
	case KVM_GET_MSRS:
		return (int)((struct kvm_msrs *)arg)->nmsrs;
	case KVM_GET_TSC_KHZ:
		return 0;
	}
	/* A pure GET reads zeroes; an in/out one (KVM_GET_IRQCHIP names its
	 * chip) keeps what the caller put in. */
	if (_IOC_DIR(req) == _IOC_READ && arg && _IOC_SIZE(req))
		memset(arg, 0, _IOC_SIZE(req));
	return 0;
}
