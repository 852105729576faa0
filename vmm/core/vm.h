/* The VM object: everything minivmm knows about one guest. It is passed to
 * every module that needs it; there is no other global state. */
#ifndef MINIVMM_VM_H
#define MINIVMM_VM_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "devices/bus.h"
#include "devices/device.h"
#include "vmm/core/dirty_ring.h"
#include "vmm/core/diskopt.h"
#include "vmm/core/netopt.h"

#define VM_PAGE_SIZE 4096ULL
#define VM_PAGE_SHIFT 12
#define VM_NAME_MAX 64
#define VM_APPEND_MAX 4096
#define VM_MAX_CPUS 64
#define VM_MIN_MEM (2ULL << 20)
#define VM_MAX_MEM (1ULL << 40)
/* RAM above this would overlap the 32-bit device hole (LAPIC, IOAPIC,
 * TSS); the rest of it is mapped from 4 GiB up. */
#define VM_LOW_MEM_END (3ULL << 30)
#define VM_HIGH_MEM_START (4ULL << 30)
#define VM_TSS_ADDR 0xfffbd000ULL
#define VM_MAX_SLOTS 2

#define COM1_PORT 0x3f8
#define COM1_IRQ 4

struct vm_config {
	char name[VM_NAME_MAX];
	uint64_t mem_size;
	int ncpus;
	bool prealloc;  /* populate all of RAM before the guest runs */
	uint32_t dirty_ring; /* --dirty-tracking ring: entries per vCPU; 0: bitmap */
	/* A mapping from vm_ram_map() of mem_size bytes for the VM to adopt
	 * (a migration target maps and populates RAM before it knows the
	 * rest of the VM), or NULL. vm_create owns it from the call on,
	 * also when it fails. */
	uint8_t *ram;
	/* --net: a virtio-net NIC on a tap (vmm/core/netdev.c). */
	struct net_opts net;
	/* --disk: a virtio-blk disk on a raw image (vmm/core/blkdev.c). */
	struct disk_opts disk;
};

/* One KVM memory slot; all slots are views of the single RAM mapping, so
 * a "RAM offset" (0 .. mem_size) is the natural page index for migration. */
struct vm_slot {
	uint32_t id;
	uint64_t gpa;
	uint64_t size;
	uint64_t ram_offset;
	uint32_t flags;
};

struct vcpu;
struct uart;
struct conline;
struct monitor;
struct mig;
struct evloop;
struct pci_host;
struct netdev;
struct blkdev;

enum vm_stop_reason {
	VM_RUNNING = 0,
	VM_EXIT_GUEST,    /* guest asked: debug-exit port or power-off */
	VM_EXIT_SIGNAL,   /* SIGINT/SIGTERM */
	VM_EXIT_QUIT,     /* monitor quit */
	VM_EXIT_MIGRATED, /* the guest now runs on the target */
	VM_EXIT_ERROR,    /* triple fault, emulation failure, ... */
};

struct vm {
	struct vm_config cfg;
	int kvm_fd;
	int vm_fd;
	int run_size;
	int max_vcpus;

	uint8_t *ram;
	uint64_t ram_size;
	struct vm_slot slots[VM_MAX_SLOTS];
	int nslots;

	struct vcpu *vcpus;
	int ncpus;

	/* Every device is on the list (which owns it) and behind these two
	 * buses, all under the list's one lock. The VM keeps typed pointers
	 * only to what its own back-ends feed: stdin goes to COM1, and the
	 * run loop flushes the console's stale partial line. */
	struct bus pio, mmio;
	struct device_list devices;
	struct uart *com1;
	struct conline *console; /* guest serial output, a line at a time */
	struct pci_host *pci;    /* bus 0, for the PCI devices */
	struct netdev *netdev;   /* the NIC's back-end, or NULL */
	struct blkdev *blkdev;   /* the disk's back-end, or NULL */

	/* Run control: vCPUs run while pause_count == 0 and !stopping. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int pause_count;
	int parked;    /* vCPU threads currently parked */
	/* How long vm_pause waits for every vCPU to park (0: VM_PAUSE_TIMEOUT_MS). */
	int pause_timeout_ms;
	int threads;   /* vCPU threads alive */
	int entered;   /* vCPU threads that have reached KVM_RUN once */
	bool stopping; /* vCPU threads must exit */
	bool user_paused; /* `stop` from the monitor */
	enum vm_stop_reason stop_reason;
	int exit_status;
	char stop_msg[256];
	bool error_reported; /* stop_msg already went to stderr */
	int notify_fd; /* eventfd: wakes the main loop on a stop */

	/* Holds (migration throttling): while clock_now_ns() < hold_until_ns
	 * a vCPU thread stays out of KVM_RUN; the holder kicks the vCPUs
	 * after setting it. Each thread times its own hold and adds it here
	 * (all atomics, no lock: the vCPU fast path reads hold_until_ns). */
	uint64_t hold_until_ns;
	uint64_t hold_max_ns;   /* longest single hold of any vCPU */
	uint64_t hold_total_ns; /* sum over vCPUs */

	/* Pages the VMM itself wrote into guest RAM (bit per RAM page), which
	 * KVM's dirty log cannot see. Migration ORs it into each round. */
	uint64_t *vmm_dirty;
	/* Migration's page bitmap and the copy KVM_GET_DIRTY_LOG writes
	 * (slot i's words at its ram_offset's word): made with the VM and
	 * populated, like vmm_dirty, so that no migration pays the first
	 * touch of fresh memory on its clock (docs/migration.md). All three
	 * are bm_bytes long (a word per 64 pages, plus one), freed with the VM. */
	uint64_t *mig_bm, *mig_log;
	size_t bm_bytes;
	/* A bit per 64 words of vmm_dirty (4096 pages), set after the word:
	 * a reader takes only the groups marked (vm_page_dirty). */
	uint64_t *vmm_dirty_sum;
	size_t sum_bytes;
	/* --dirty-tracking ring: entries per vCPU (0: the per-slot bitmap),
	 * and how often a full ring stopped a vCPU. */
	uint32_t dring_entries;
	uint64_t dring_full_exits;
	bool dring_lost;        /* a ring overflowed: its pages may be untracked */
	/* A ring overflowed once in the VM's life: KVM's view of it may still
	 * differ from ours, so no later migration trusts the rings either. */
	bool dring_suspect;
	uint64_t dring_resyncs; /* full exits that had to move KVM's reset index blind */
	/* Why this migration lost tracking (the first reason wins), and the
	 * KVM_RESET_DIRTY_RINGS calls that failed (EINTR included), the last
	 * one's errno. */
	enum dring_loss dring_loss;
	uint64_t dring_reset_errors;
	int dring_reset_errno;
	uint32_t dring_reset_fail_run; /* failed resets in a row (dring_lock) */
	/* KVM_RESET_DIRTY_RINGS: its count or -errno. NULL: the ioctl; the
	 * unit tests' fake KVM goes here. */
	int (*dring_reset_fn)(struct vm *vm);
	pthread_mutex_t dring_lock; /* harvests and KVM_RESET_DIRTY_RINGS, one at a time */

	struct monitor *mon;
	struct mig *mig;
};

/* Maps size bytes of guest RAM the way vm_create does. */
int vm_ram_map(uint64_t size, uint8_t **out, char *err, size_t errlen);

/* Creates the KVM VM, RAM, irqchip, PIT, vCPUs (threads not started) and
 * devices. On failure returns -errno with a message in err. */
/* vm_create in two steps, so that a migration target can build what
 * grows with RAM (the KVM VM and its memory slots) while it waits, before
 * it knows the rest. vm_prepare uses cfg's mem_size, ram and prealloc;
 * vm_finish the rest (mem_size must match). Either destroys the VM when
 * it fails. */
int vm_prepare(struct vm *vm, const struct vm_config *cfg, char *err, size_t errlen);
int vm_finish(struct vm *vm, const struct vm_config *cfg, char *err, size_t errlen);
int vm_create(struct vm *vm, const struct vm_config *cfg, char *err,
	      size_t errlen);
void vm_destroy(struct vm *vm);
/* vm_destroy without waiting for KVM's own teardown of the VM (RCU grace
 * periods, docs/architecture.md, "Pausing, resuming, stopping"): a
 * detached child process inherits the KVM file descriptors and drops the
 * last reference, so the caller can report the guest's exit status at
 * once. */
void vm_destroy_detached(struct vm *vm);

/* Loads a Multiboot kernel and sets the boot vCPU's entry state. */
int vm_load_kernel(struct vm *vm, const char *path, const char *append,
		   char *err, size_t errlen);

/* Starts the vCPU threads; they run unless the VM is paused. */
int vm_start(struct vm *vm, char *err, size_t errlen);
/* Waits until every vCPU thread vm_start made has called KVM_RUN (or the
 * VM stops): a thread that exists need not have run yet on a busy host.
 * 0, or -ETIMEDOUT after timeout_ms. */
int vm_wait_entered(struct vm *vm, int timeout_ms);
/* Pause nests: every vm_pause needs a vm_resume. vm_pause returns once
 * every vCPU is parked outside KVM_RUN with its pending I/O completed, so
 * vCPU state may then be read or written from any thread. */
int vm_pause(struct vm *vm);
/* vm->cond on the monotonic clock (vm_create does it). */
void vm_cond_init(struct vm *vm);
/* A vCPU inside one long emulated instruction (rep stosq over gigabytes
 * with interrupts off) does not leave KVM_RUN until it is done: vm_pause
 * gives up after this with -ETIMEDOUT, the pause still counted (the
 * caller resumes as after a success) so a migration fails and the guest
 * goes on. */
#define VM_PAUSE_TIMEOUT_MS 5000
void vm_resume(struct vm *vm);

/* Asks the VM to stop for good (thread-safe; the first reason wins). */
void vm_request_stop(struct vm *vm, enum vm_stop_reason why, int status,
		     const char *msg);
/* Stops and joins the vCPU threads. */
void vm_stop_vcpus(struct vm *vm);

/* Host pointer for [gpa, gpa+len) if it lies inside one slot, else NULL. */
uint8_t *vm_gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len);
/* Copies [gpa, gpa+len) of guest RAM into dst; -EFAULT unless it lies in one slot. */
int vm_read_guest(struct vm *vm, uint64_t gpa, void *dst, uint64_t len);
/* Writes guest memory and records the pages in vmm_dirty. */
int vm_write_guest(struct vm *vm, uint64_t gpa, const void *src, uint64_t len);
void vm_mark_dirty(struct vm *vm, uint64_t ram_offset, uint64_t len);

#define VM_DIRTY_GROUP_PAGES 4096u /* pages per vmm_dirty_sum bit */

/* RAM page pg into vmm_dirty, then its group into vmm_dirty_sum (release:
 * a reader that clears the group's bit and then reads the word sees it;
 * one that cleared it before finds the bit set again next time). */
static inline void vm_page_dirty(struct vm *vm, uint64_t pg)
{
	uint64_t g = pg / VM_DIRTY_GROUP_PAGES;

	__atomic_fetch_or(&vm->vmm_dirty[pg / 64], 1ULL << (pg % 64), __ATOMIC_RELAXED);
	if (vm->vmm_dirty_sum)
		__atomic_fetch_or(&vm->vmm_dirty_sum[g / 64], 1ULL << (g % 64), __ATOMIC_RELEASE);
}

/* Hold every vCPU out of KVM_RUN until until_ns (0: release them now). */
void vm_hold_until(struct vm *vm, uint64_t until_ns);
/* Zeroes the hold figures (a migration starts). */
void vm_hold_reset_stats(struct vm *vm);

/* Writes out a pending partial console line: always when force, else
 * only once it is stale and the VM is running (a paused guest's partial
 * line may yet migrate). */
void vm_console_flush(struct vm *vm, bool force);

/* Re-registers every slot with or without KVM_MEM_LOG_DIRTY_PAGES. */
int vm_set_dirty_logging(struct vm *vm, bool on, char *err, size_t errlen);

/* Lays out the slots for cfg->mem_size (pure: used by tests too). */
int vm_layout_slots(uint64_t mem_size, struct vm_slot *slots, int *nslots);

#endif
