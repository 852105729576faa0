/* What every virtio device's back-end needs of KVM, written once (net and
 * blk use it): the guest-memory accessor the device model gets, an I/O
 * thread's epoll set with a wake eventfd, KVM_IOEVENTFD on each queue's
 * notify register, KVM_IRQFD with a resample fd for the level-triggered
 * INTx line (KVM_IRQ_LINE without those capabilities). The device's own
 * descriptors (a tap, a timer) join the same epoll set. */
#ifndef MINIVMM_VIO_H
#define MINIVMM_VIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/virtio/virtqueue.h"

struct vm;

#define VIO_MAX_QUEUES 4

struct vio {
	struct vm *vm;
	int nq;
	int epfd;
	int wake_fd;                 /* eventfd: "process" (MMIO notify, resume, stop) */
	int kick_fd[VIO_MAX_QUEUES]; /* per queue: the ioeventfds */
	int irq_fd, resample_fd;     /* irqfd, or -1 for KVM_IRQ_LINE */
	bool use_ioeventfd;
	bool irq_level;              /* what the device last asked for */
	bool stop;
	bool thread_started;
	pthread_t thread;
};

/* Epoll set, wake eventfd and (when KVM has KVM_CAP_IOEVENTFD) one kick
 * eventfd per queue. On failure v can be given to vio_fini. */
int vio_init(struct vio *v, struct vm *vm, int nqueues, char *err, size_t errlen);
/* An irqfd on irq when KVM can resample it (after the device exists:
 * its IRQ is chosen when it is plugged in). */
int vio_setup_irqfd(struct vio *v, int irq, char *err, size_t errlen);
int vio_watch(struct vio *v, int fd, uint32_t events, char *err, size_t errlen);
/* Guest RAM for the device model: reads and writes checked against the
 * slots, writes recorded for migration. */
struct virtq_mem vio_mem(struct vm *vm);

/* Device hooks (opaque = the struct vio), called under the device lock. */
void vio_irq(void *opaque, int irq, int level);
void vio_wake(void *opaque, int q);
void vio_notify_map(void *opaque, int q, uint64_t gpa, bool on);

/* One wait of the I/O thread: drains its own eventfds, re-raises a
 * resampled line the device still holds, and returns in fds (up to max)
 * the other descriptors that fired. -errno on an epoll failure. */
int vio_wait(struct vio *v, int *fds, int max);
bool vio_stopping(struct vio *v);
/* Starts fn(arg) as the I/O thread; vio_stop ends it (idempotent). */
int vio_start(struct vio *v, void *(*fn)(void *), void *arg, const char *what, char *err,
	      size_t errlen);
void vio_stop(struct vio *v);
/* Called on an I/O thread: asks the scheduler for a short slice, so that
 * the thread, woken by a guest's kick, runs at once instead of queueing
 * behind a busy vCPU thread. 0, or -errno where the kernel has no custom
 * slices (before Linux 6.12: the thread then runs as before). */
int vio_prefer_latency(void);
/* Stops the thread, closes every descriptor (KVM drops the irqfd and the
 * ioeventfds with them). */
void vio_fini(struct vio *v);
void vio_signal(int fd);
void vio_drain(int fd);

#endif
