/* userfaultfd wrappers. Registration needs either root (CAP_SYS_PTRACE)
 * or vm.unprivileged_userfaultfd=1, because KVM's own accesses to guest
 * RAM (its instruction emulator on kvm_pvm, or the MMU on real hardware)
 * fault from the kernel, not from user mode: UFFD_USER_MODE_ONLY would
 * make them fail, so it is never used here. */
#include "migrate/postcopy/uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int uffd_open_register(uint8_t *base, uint64_t len, int *out, char *err, size_t errlen)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_THREAD_ID };
	struct uffdio_register reg = {
		.range = { .start = (uint64_t)(uintptr_t)base, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK), ret;

	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "userfaultfd: %s%s", strerror(errno),
			 errno == EPERM ? " (needs root or vm.unprivileged_userfaultfd=1)" : "");
		return ret;
	}
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		ret = -errno;
		snprintf(err, errlen, "UFFDIO_API: %s", strerror(errno));
		goto fail;
	}
	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
		ret = -errno;
		snprintf(err, errlen, "UFFDIO_REGISTER (guest RAM, %llu MiB): %s",
			 (unsigned long long)(len >> 20), strerror(errno));
		goto fail;
	}
	if (!(reg.ioctls & (1ULL << _UFFDIO_COPY)) || !(reg.ioctls & (1ULL << _UFFDIO_ZEROPAGE))) {
		ret = -EOPNOTSUPP;
		snprintf(err, errlen, "UFFDIO_REGISTER: no UFFDIO_COPY/ZEROPAGE on guest RAM");
		goto fail;
	}
	*out = fd;
	return 0;
fail:
	close(fd);
	return ret;
}

void uffd_close(int fd, uint8_t *base, uint64_t len)
{
	struct uffdio_range r = { .start = (uint64_t)(uintptr_t)base, .len = len };

	if (fd < 0)
		return;
	/* Unregistered, a missing page reads as zero again (and faults
	 * nobody): the VM may outlive the post-copy phase. */
	(void)ioctl(fd, UFFDIO_UNREGISTER, &r);
	close(fd);
}

int uffd_read_fault(int fd, uint64_t *addr, uint32_t *tid)
{
	struct uffd_msg m;

	for (;;) {
		ssize_t n = read(fd, &m, sizeof(m));

		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		if (n != (ssize_t)sizeof(m))
			return -EIO;
		if (m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		*addr = m.arg.pagefault.address & ~4095ULL;
		*tid = m.arg.pagefault.feat.ptid;
		return 1;
	}
}

static int done(int r, int64_t got, uint64_t len, uint64_t *placed)
{
	if (placed)
		*placed = r == 0 ? len : 0;
	if (r == 0)
		return 0;
	if (errno == EEXIST)
		return 1;
	/* A run that stopped part way (at a page that was there, or on a
	 * failure the next call will tell) placed what came before it. */
	if (errno == EAGAIN && got > 0 && (uint64_t)got < len) {
		if (placed)
			*placed = (uint64_t)got;
		return -EAGAIN;
	}
	return -errno;
}

int uffd_copy(int fd, uint64_t dst, const void *src, uint64_t len, uint64_t *placed)
{
	struct uffdio_copy c = { .dst = dst, .src = (uint64_t)(uintptr_t)src, .len = len };

	return done(ioctl(fd, UFFDIO_COPY, &c), c.copy, len, placed);
}

int uffd_zero(int fd, uint64_t dst, uint64_t len, uint64_t *placed)
{
	struct uffdio_zeropage z = { .range = { .start = dst, .len = len } };

	return done(ioctl(fd, UFFDIO_ZEROPAGE, &z), z.zeropage, len, placed);
}

int uffd_wake(int fd, uint64_t dst, uint64_t len)
{
	struct uffdio_range r = { .start = dst, .len = len };

	return ioctl(fd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}
