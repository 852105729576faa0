#include "vmm/core/vio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "devices/device.h"
#include "vmm/core/kvm.h"
#include "vmm/core/vm.h"

static int mem_read(void *opaque, uint64_t gpa, void *buf, uint64_t len)
{
	return vm_read_guest(opaque, gpa, buf, len);
}

static int mem_write(void *opaque, uint64_t gpa, const void *buf, uint64_t len)
{
	/* vm_write_guest records the pages: KVM's dirty log cannot see
	 * what the VMM writes, and migration must send them. */
	return vm_write_guest(opaque, gpa, buf, len);
}

static int mem_check(void *opaque, uint64_t gpa, uint64_t len)
{
	return vm_gpa_to_hva(opaque, gpa, len) ? 0 : -EFAULT;
}

struct virtq_mem vio_mem(struct vm *vm)
{
	return (struct virtq_mem){ mem_read, mem_write, mem_check, vm };
}

void vio_signal(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0) {
		/* An eventfd counter cannot overflow in practice. */
	}
}

void vio_drain(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing pending */
	}
}

void vio_irq(void *opaque, int irq, int level)
{
	struct vio *v = opaque;

	v->irq_level = level;
	if (v->irq_fd < 0) {
		kvm_irq_line(v->vm->vm_fd, (uint32_t)irq, level);
		return;
	}
	/* A resampling irqfd holds the line until the guest's EOI, then
	 * drops it and tells us on resample_fd, where we raise it again if
	 * the device still wants it: lowering needs no call. */
	if (level)
		vio_signal(v->irq_fd);
}

void vio_wake(void *opaque, int q)
{
	(void)q;
	vio_signal(((struct vio *)opaque)->wake_fd);
}

void vio_notify_map(void *opaque, int q, uint64_t gpa, bool on)
{
	struct vio *v = opaque;
	struct kvm_ioeventfd ev = {
		.addr = gpa, .len = 2,
		.flags = on ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	if (!v->use_ioeventfd || q < 0 || q >= v->nq)
		return;
	ev.fd = v->kick_fd[q];
	/* The driver writes the queue index as 16 bits (4.1.5.2); a wider
	 * or narrower write still exits and takes the MMIO path. */
	if (ioctl(v->vm->vm_fd, KVM_IOEVENTFD, &ev) < 0)
		fprintf(stderr, "minivmm: KVM_IOEVENTFD %s queue %d at 0x%llx: %s\n",
			on ? "assign" : "deassign", q, (unsigned long long)gpa, strerror(errno));
}

int vio_watch(struct vio *v, int fd, uint32_t events, char *err, size_t errlen)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };

	if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static int new_eventfd(int *fd, char *err, size_t errlen)
{
	*fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (*fd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

int vio_init(struct vio *v, struct vm *vm, int nqueues, char *err, size_t errlen)
{
	int ret;

	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->nq = nqueues;
	v->epfd = v->wake_fd = v->irq_fd = v->resample_fd = -1;
	for (int q = 0; q < VIO_MAX_QUEUES; q++)
		v->kick_fd[q] = -1;
	if (nqueues < 1 || nqueues > VIO_MAX_QUEUES) {
		snprintf(err, errlen, "vio_init: %d queues", nqueues);
		return -EINVAL;
	}
	v->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (v->epfd < 0) {
		snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
		return -errno;
	}
	if ((ret = new_eventfd(&v->wake_fd, err, errlen)) ||
	    (ret = vio_watch(v, v->wake_fd, EPOLLIN, err, errlen)))
		return ret;
	v->use_ioeventfd = kvm_check_cap(vm->vm_fd, KVM_CAP_IOEVENTFD) > 0;
	for (int q = 0; q < nqueues && v->use_ioeventfd; q++)
		if ((ret = new_eventfd(&v->kick_fd[q], err, errlen)) ||
		    (ret = vio_watch(v, v->kick_fd[q], EPOLLIN, err, errlen)))
			return ret;
	return 0;
}

int vio_setup_irqfd(struct vio *v, int irq, char *err, size_t errlen)
{
	struct kvm_irqfd req;
	int ret;

	/* INTx is level-triggered: an irqfd without resampling would be an
	 * edge. */
	if (kvm_check_cap(v->vm->vm_fd, KVM_CAP_IRQFD) <= 0 ||
	    kvm_check_cap(v->vm->vm_fd, KVM_CAP_IRQFD_RESAMPLE) <= 0)
		return 0;
	if ((ret = new_eventfd(&v->irq_fd, err, errlen)) ||
	    (ret = new_eventfd(&v->resample_fd, err, errlen)))
		return ret;
	memset(&req, 0, sizeof(req));
	req.fd = (uint32_t)v->irq_fd;
	req.gsi = (uint32_t)irq;
	req.flags = KVM_IRQFD_FLAG_RESAMPLE;
	req.resamplefd = (uint32_t)v->resample_fd;
	ret = kvm_ioctl(v->vm->vm_fd, KVM_IRQFD, &req, "KVM_IRQFD", -1, err, errlen);
	if (ret < 0)
		return ret;
	return vio_watch(v, v->resample_fd, EPOLLIN, err, errlen);
}

static bool own_fd(const struct vio *v, int fd)
{
	if (fd == v->wake_fd)
		return true;
	for (int q = 0; q < v->nq; q++)
		if (fd == v->kick_fd[q])
			return true;
	return false;
}

int vio_wait(struct vio *v, int *fds, int max)
{
	struct epoll_event evs[8];
	int n = epoll_wait(v->epfd, evs, 8, -1), out = 0;

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		int fd = evs[i].data.fd;

		if (own_fd(v, fd)) {
			vio_drain(fd);
		} else if (fd == v->resample_fd) {
			vio_drain(fd);
			device_list_lock(&v->vm->devices);
			if (v->irq_level)
				vio_signal(v->irq_fd);
			device_list_unlock(&v->vm->devices);
		} else if (out < max) {
			fds[out++] = fd;
		}
	}
	return out;
}

bool vio_stopping(struct vio *v)
{
	return __atomic_load_n(&v->stop, __ATOMIC_ACQUIRE);
}

int vio_start(struct vio *v, void *(*fn)(void *), void *arg, const char *what, char *err,
	      size_t errlen)
{
	int ret = pthread_create(&v->thread, NULL, fn, arg);

	if (ret) {
		snprintf(err, errlen, "pthread_create (%s I/O): %s", what, strerror(ret));
		return -ret;
	}
	v->thread_started = true;
	return 0;
}

void vio_stop(struct vio *v)
{
	if (!v->thread_started)
		return;
	__atomic_store_n(&v->stop, true, __ATOMIC_RELEASE);
	vio_signal(v->wake_fd);
	pthread_join(v->thread, NULL);
	v->thread_started = false;
}

/* The shortest slice EEVDF accepts. A wakee with a shorter slice than the
 * running task preempts it (kernel 6.12's PREEMPT_SHORT); its CPU share is
 * unchanged. A vCPU thread in KVM's emulator is always runnable, and a
 * woken I/O thread was seen to wait 1-2 ms behind it on a 2-core host
 * (docs/benchmarks.md, issue 9's switchover trace). */
#define VIO_SLICE_NS 100000ull

/* The kernel's struct sched_attr (SCHED_ATTR_SIZE_VER0): its header
 * clashes with glibc's struct sched_param. */
struct vio_sched_attr {
	uint32_t size, sched_policy;
	uint64_t sched_flags;
	int32_t sched_nice;
	uint32_t sched_priority;
	uint64_t sched_runtime, sched_deadline, sched_period;
};

int vio_prefer_latency(void)
{
	struct vio_sched_attr a = { .size = sizeof(a), .sched_policy = SCHED_OTHER,
				    .sched_runtime = VIO_SLICE_NS };
	int nice;

	/* sched_setattr sets the nice value too: keep the thread's own (a
	 * minivmm started under nice stays there). */
	errno = 0;
	nice = getpriority(PRIO_PROCESS, (id_t)gettid());
	if (nice == -1 && errno)
		return -errno;
	a.sched_nice = nice;
	return syscall(SYS_sched_setattr, 0, &a, 0) < 0 ? -errno : 0;
}

void vio_fini(struct vio *v)
{
	int *fds[] = { &v->epfd, &v->wake_fd, &v->irq_fd, &v->resample_fd };

	vio_stop(v);
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
	for (int q = 0; q < VIO_MAX_QUEUES; q++)
		if (v->kick_fd[q] >= 0) {
			close(v->kick_fd[q]);
			v->kick_fd[q] = -1;
		}
}
