#include "vmm/core/netdev.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devices/virtio/net.h"
#include "vmm/core/kvm.h"
#include "vmm/core/tap.h"
#include "vmm/core/vm.h"

/* ---- guest memory for devices ---------------------------------------- */

static int mem_read(void *opaque, uint64_t gpa, void *buf, uint64_t len)
{
	uint8_t *p = vm_gpa_to_hva(opaque, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
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

/* ---- interrupt and notification hooks (under the device lock) -------- */

static void signal_fd(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0) {
		/* An eventfd counter cannot overflow in practice. */
	}
}

static void net_irq(void *opaque, int irq, int level)
{
	struct netdev *nd = opaque;

	nd->irq_level = level;
	if (nd->irq_fd < 0) {
		kvm_irq_line(nd->vm->vm_fd, (uint32_t)irq, level);
		return;
	}
	/* A resampling irqfd holds the line until the guest's EOI, then
	 * drops it and tells us on resample_fd, where we raise it again if
	 * the device still wants it: lowering needs no call. */
	if (level)
		signal_fd(nd->irq_fd);
}

static void net_wake(void *opaque, int q)
{
	(void)q;
	signal_fd(((struct netdev *)opaque)->wake_fd);
}

static ssize_t net_send(void *opaque, const void *frame, size_t len)
{
	return tap_send((void *)(intptr_t)((struct netdev *)opaque)->tap_fd, frame, len);
}

static ssize_t net_recv(void *opaque, void *buf, size_t cap)
{
	return tap_recv((void *)(intptr_t)((struct netdev *)opaque)->tap_fd, buf, cap);
}

static void notify_map(void *opaque, int q, uint64_t gpa, bool on)
{
	struct netdev *nd = opaque;
	struct kvm_ioeventfd ev = {
		.addr = gpa, .len = 2, .fd = nd->kick_fd[q],
		.flags = on ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	if (!nd->use_ioeventfd || q < 0 || q >= 3)
		return;
	/* The driver writes the queue index as 16 bits (4.1.5.2); a wider
	 * or narrower write still exits and takes the MMIO path. */
	if (ioctl(nd->vm->vm_fd, KVM_IOEVENTFD, &ev) < 0)
		fprintf(stderr, "minivmm: KVM_IOEVENTFD %s queue %d at 0x%llx: %s\n",
			on ? "assign" : "deassign", q, (unsigned long long)gpa, strerror(errno));
}

/* ---- the I/O thread --------------------------------------------------- */

static void drain(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing pending */
	}
}

/* When a migrated guest's MAC is announced from the new tap, as QEMU's
 * announce-self: one RARP at once, then four more spaced out, so a switch
 * that missed one still learns the port within a second. */
static const int announce_ms[] = { 0, 50, 200, 450, 800 };
#define ANNOUNCE_ROUNDS ((int)(sizeof(announce_ms) / sizeof(announce_ms[0])))
#define ETH_P_RARP_ 0x8035

static void arm_announce(struct netdev *nd, int delay_ms)
{
	struct itimerspec its = { .it_value = { .tv_sec = delay_ms / 1000,
						.tv_nsec = (delay_ms % 1000) * 1000000L + 1 } };

	timerfd_settime(nd->announce_fd, 0, &its, NULL);
}

/* A RARP request (opcode 3) for our own MAC, broadcast, padded to the
 * Ethernet minimum: what a switch needs to learn the port. */
static void send_rarp(struct netdev *nd)
{
	uint8_t f[60] = { 0 };

	memset(f, 0xff, 6);
	memcpy(f + 6, nd->announce_mac, 6);
	f[12] = ETH_P_RARP_ >> 8;
	f[13] = ETH_P_RARP_ & 0xff;
	f[14] = 0; f[15] = 1;       /* htype Ethernet */
	f[16] = 0x08; f[17] = 0x00; /* ptype IPv4 */
	f[18] = 6; f[19] = 4;       /* hlen, plen */
	f[20] = 0; f[21] = 3;       /* op: reverse request */
	memcpy(f + 22, nd->announce_mac, 6); /* sha; spa 0 */
	memcpy(f + 32, nd->announce_mac, 6); /* tha; tpa 0 */
	(void)tap_send((void *)(intptr_t)nd->tap_fd, f, sizeof(f));
}

static void on_announce(struct netdev *nd)
{
	int r = nd->announce_round;

	if (r >= ANNOUNCE_ROUNDS)
		return;
	send_rarp(nd);
	nd->announce_round = r + 1;
	if (r + 1 < ANNOUNCE_ROUNDS)
		arm_announce(nd, announce_ms[r + 1] - announce_ms[r]);
}

/* virtio_net_backend.announce, under the device lock. */
static void net_announce(void *opaque, const uint8_t mac[6])
{
	struct netdev *nd = opaque;

	memcpy(nd->announce_mac, mac, 6);
	/* The first one now, not from the I/O thread: the caller tells the
	 * other side next (READY) and counts on the bridge knowing already. */
	send_rarp(nd);
	nd->announce_round = 1;
	arm_announce(nd, announce_ms[1]);
}

static void *io_thread(void *arg)
{
	struct netdev *nd = arg;
	struct epoll_event evs[8];

	while (!__atomic_load_n(&nd->stop, __ATOMIC_ACQUIRE)) {
		int n = epoll_wait(nd->epfd, evs, 8, -1);
		bool more;

		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd != nd->tap_fd)
				drain(fd);
			if (fd == nd->announce_fd)
				on_announce(nd);
			if (fd == nd->resample_fd) {
				device_list_lock(&nd->vm->devices);
				if (nd->irq_level)
					signal_fd(nd->irq_fd);
				device_list_unlock(&nd->vm->devices);
			}
		}
		/* Whatever woke us, every queue gets a look; the lock is let
		 * go between batches so vCPU exits are not starved. */
		do {
			device_list_lock(&nd->vm->devices);
			more = virtio_net_process(nd->net);
			device_list_unlock(&nd->vm->devices);
		} while (more && !__atomic_load_n(&nd->stop, __ATOMIC_ACQUIRE));
	}
	return NULL;
}

static int watch(struct netdev *nd, int fd, uint32_t events, char *err, size_t errlen)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };

	if (epoll_ctl(nd->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
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

/* An irqfd on the device's IRQ, if KVM can resample it (INTx is level
 * triggered: an irqfd without resampling would be an edge). */
static int setup_irqfd(struct netdev *nd, int irq, char *err, size_t errlen)
{
	struct kvm_irqfd req;
	int ret;

	if (kvm_check_cap(nd->vm->vm_fd, KVM_CAP_IRQFD) <= 0 ||
	    kvm_check_cap(nd->vm->vm_fd, KVM_CAP_IRQFD_RESAMPLE) <= 0)
		return 0;
	if ((ret = new_eventfd(&nd->irq_fd, err, errlen)) ||
	    (ret = new_eventfd(&nd->resample_fd, err, errlen)))
		return ret;
	memset(&req, 0, sizeof(req));
	req.fd = (uint32_t)nd->irq_fd;
	req.gsi = (uint32_t)irq;
	req.flags = KVM_IRQFD_FLAG_RESAMPLE;
	req.resamplefd = (uint32_t)nd->resample_fd;
	ret = kvm_ioctl(nd->vm->vm_fd, KVM_IRQFD, &req, "KVM_IRQFD", -1, err, errlen);
	if (ret < 0)
		return ret;
	return watch(nd, nd->resample_fd, EPOLLIN, err, errlen);
}

int netdev_create(struct vm *vm, const struct net_opts *o, struct netdev **out,
		  char *err, size_t errlen)
{
	struct netdev *nd = calloc(1, sizeof(*nd));
	struct virtio_net_conf conf;
	int ret;

	*out = NULL;
	if (!nd) {
		snprintf(err, errlen, "netdev_create: out of memory");
		return -ENOMEM;
	}
	nd->vm = vm;
	nd->tap_fd = nd->epfd = nd->wake_fd = nd->irq_fd = nd->resample_fd = nd->announce_fd = -1;
	nd->announce_round = ANNOUNCE_ROUNDS;
	for (int q = 0; q < 3; q++)
		nd->kick_fd[q] = -1;
	ret = tap_open(o->tap, o->bridge, err, errlen);
	if (ret < 0)
		goto fail;
	nd->tap_fd = ret;
	nd->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (nd->epfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
		goto fail;
	}
	nd->announce_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (nd->announce_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "timerfd_create: %s", strerror(errno));
		goto fail;
	}
	if ((ret = watch(nd, nd->announce_fd, EPOLLIN, err, errlen)) ||
	    (ret = new_eventfd(&nd->wake_fd, err, errlen)) ||
	    (ret = watch(nd, nd->wake_fd, EPOLLIN, err, errlen)) ||
	    /* Edge-triggered: frames wait in the tap while the guest has no
	     * buffers, and the RX kick, not the tap, says when to go on. */
	    (ret = watch(nd, nd->tap_fd, EPOLLIN | EPOLLET, err, errlen)))
		goto fail;
	nd->use_ioeventfd = kvm_check_cap(vm->vm_fd, KVM_CAP_IOEVENTFD) > 0;
	for (int q = 0; q < 3 && nd->use_ioeventfd; q++)
		if ((ret = new_eventfd(&nd->kick_fd[q], err, errlen)) ||
		    (ret = watch(nd, nd->kick_fd[q], EPOLLIN, err, errlen)))
			goto fail;

	memset(&conf, 0, sizeof(conf));
	if (o->mac_given)
		memcpy(conf.mac, o->mac, 6);
	else
		virtio_net_mac_from_name(vm->cfg.name, conf.mac);
	conf.mem = (struct virtq_mem){ mem_read, mem_write, mem_check, vm };
	conf.be = (struct virtio_net_backend){ net_send, net_recv, net_wake, net_announce, nd };
	conf.irq = net_irq;
	conf.irq_opaque = nd;
	conf.notify_map = notify_map;
	conf.notify_opaque = nd;
	ret = virtio_net_create(&vm->devices, vm->pci, &conf, &nd->net, err, errlen);
	if (ret)
		goto fail;
	ret = setup_irqfd(nd, nd->net->vp.pci.irq_num, err, errlen);
	if (ret)
		goto fail;
	ret = pthread_create(&nd->thread, NULL, io_thread, nd);
	if (ret) {
		snprintf(err, errlen, "pthread_create (net I/O): %s", strerror(ret));
		ret = -ret;
		goto fail;
	}
	nd->thread_started = true;
	*out = nd;
	return 0;
fail:
	netdev_destroy(nd);
	return ret;
}

void netdev_stop(struct netdev *nd)
{
	if (!nd || !nd->thread_started)
		return;
	__atomic_store_n(&nd->stop, true, __ATOMIC_RELEASE);
	signal_fd(nd->wake_fd);
	pthread_join(nd->thread, NULL);
	nd->thread_started = false;
}

void netdev_destroy(struct netdev *nd)
{
	if (!nd)
		return;
	netdev_stop(nd);
	/* KVM drops the irqfd and ioeventfds with their eventfds. */
	int *fds[] = { &nd->tap_fd, &nd->epfd, &nd->wake_fd, &nd->irq_fd, &nd->resample_fd,
		       &nd->announce_fd,
		       &nd->kick_fd[0], &nd->kick_fd[1], &nd->kick_fd[2] };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (*fds[i] >= 0)
			close(*fds[i]);
	free(nd);
}
