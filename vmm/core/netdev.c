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
#include "vmm/core/vio.h"
#include "vmm/core/vm.h"

static void net_wake(void *opaque, int q)
{
	vio_wake(&((struct netdev *)opaque)->io, q);
}

static ssize_t net_send(void *opaque, const void *frame, size_t len)
{
	return tap_send((void *)(intptr_t)((struct netdev *)opaque)->tap_fd, frame, len);
}

static ssize_t net_recv(void *opaque, void *buf, size_t cap)
{
	return tap_recv((void *)(intptr_t)((struct netdev *)opaque)->tap_fd, buf, cap);
}

/* ---- the I/O thread --------------------------------------------------- */

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
	/* The guest's own gratuitous ARP (GUEST_ANNOUNCE) comes with the
	 * second round, not as the guest resumes: the bridge learned the
	 * port from the first RARP already, and a guest that handles the
	 * announce first answers the frames that waited for it a PIT tick or
	 * more later (docs/benchmarks.md, issue 9's switchover trace). */
	if (r == 1) {
		device_list_lock(&nd->vm->devices);
		virtio_net_announce(nd->net);
		device_list_unlock(&nd->vm->devices);
	}
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
	int fds[8];

	/* A hint: without it frames still flow, only later under load. */
	(void)vio_prefer_latency();
	while (!vio_stopping(&nd->io)) {
		int n = vio_wait(&nd->io, fds, 8);
		bool more;

		if (n < 0)
			break;
		for (int i = 0; i < n; i++)
			if (fds[i] == nd->announce_fd) {
				vio_drain(fds[i]);
				on_announce(nd);
			}
		/* Whatever woke us, every queue gets a look; the lock is let
		 * go between batches so vCPU exits are not starved. */
		do {
			device_list_lock(&nd->vm->devices);
			more = virtio_net_process(nd->net);
			device_list_unlock(&nd->vm->devices);
		} while (more && !vio_stopping(&nd->io));
	}
	return NULL;
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
	nd->tap_fd = nd->announce_fd = -1;
	nd->announce_round = ANNOUNCE_ROUNDS;
	ret = vio_init(&nd->io, vm, VIRTIO_NET_NQUEUES, err, errlen);
	if (ret)
		goto fail;
	ret = tap_open(o->tap, o->bridge, err, errlen);
	if (ret < 0)
		goto fail;
	nd->tap_fd = ret;
	nd->announce_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (nd->announce_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "timerfd_create: %s", strerror(errno));
		goto fail;
	}
	if ((ret = vio_watch(&nd->io, nd->announce_fd, EPOLLIN, err, errlen)) ||
	    /* Edge-triggered: frames wait in the tap while the guest has no
	     * buffers, and the RX kick, not the tap, says when to go on. */
	    (ret = vio_watch(&nd->io, nd->tap_fd, EPOLLIN | EPOLLET, err, errlen)))
		goto fail;

	memset(&conf, 0, sizeof(conf));
	if (o->mac_given)
		memcpy(conf.mac, o->mac, 6);
	else
		virtio_net_mac_from_name(vm->cfg.name, conf.mac);
	conf.mem = vio_mem(vm);
	conf.be = (struct virtio_net_backend){ net_send, net_recv, net_wake, net_announce, nd };
	conf.irq = vio_irq;
	conf.irq_opaque = &nd->io;
	conf.notify_map = vio_notify_map;
	conf.notify_opaque = &nd->io;
	ret = virtio_net_create(&vm->devices, vm->pci, &conf, &nd->net, err, errlen);
	if (ret)
		goto fail;
	ret = vio_setup_irqfd(&nd->io, nd->net->vp.pci.irq_num, err, errlen);
	if (!ret)
		ret = vio_start(&nd->io, io_thread, nd, "net", err, errlen);
	if (ret)
		goto fail;
	*out = nd;
	return 0;
fail:
	netdev_destroy(nd);
	return ret;
}

void netdev_stop(struct netdev *nd)
{
	if (nd)
		vio_stop(&nd->io);
}

void netdev_destroy(struct netdev *nd)
{
	if (!nd)
		return;
	vio_fini(&nd->io); /* KVM drops the irqfd and ioeventfds with their eventfds */
	if (nd->tap_fd >= 0)
		close(nd->tap_fd);
	if (nd->announce_fd >= 0)
		close(nd->announce_fd);
	free(nd);
}
