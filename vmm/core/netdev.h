/* The VM's NIC: a virtio-net device model fed by a tap, its back-end on
 * an I/O thread of its own (epoll on the tap and the queues' eventfds),
 * and the KVM fast paths: KVM_IOEVENTFD on each queue's notify register,
 * KVM_IRQFD (with a resample fd, as INTx is level-triggered) for the
 * interrupt. Without those capabilities the MMIO exit wakes the thread
 * and KVM_IRQ_LINE drives the line. */
#ifndef MINIVMM_NETDEV_H
#define MINIVMM_NETDEV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/core/netopt.h"
#include "vmm/core/vio.h"

struct vm;
struct virtio_net;

struct netdev {
	struct vio io; /* epoll, wake, ioeventfds, irqfd, the I/O thread */
	struct vm *vm;
	struct virtio_net *net; /* on the device list, which owns it */
	int tap_fd;
	int announce_fd; /* timerfd: the next RARP after a migration */
	int announce_round;
	uint8_t announce_mac[6];
};

/* Opens the tap, creates the device on vm's device list and PCI bus,
 * wires it to KVM and starts the I/O thread. */
int netdev_create(struct vm *vm, const struct net_opts *o, struct netdev **out,
		  char *err, size_t errlen);
/* Stops the I/O thread (idempotent; before a fork). */
void netdev_stop(struct netdev *nd);
/* Stops it and closes the descriptors; the device itself goes with the
 * device list. */
void netdev_destroy(struct netdev *nd);

#endif
