#include "vmm/core/vcpu.h"
#include "vmm/core/status.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmm/core/clock.h"
#include "vmm/core/dirty_ring.h"
#include "vmm/core/kvm.h"
#include "vmm/core/vm.h"

/* The kick signal: blocked in every thread, unblocked only inside KVM_RUN
 * (KVM_SET_SIGNAL_MASK), so a kick that lands before KVM_RUN is entered
 * stays pending and makes KVM_RUN return at once instead of being lost. */
#define VCPU_KICK_SIGNAL SIGUSR1

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7

static void set_lvt(struct kvm_lapic_state *l, int reg, uint32_t mode)
{
	uint32_t v;

	memcpy(&v, &l->regs[reg], 4);
	v = (v & ~0x10700u) | (mode << 8); /* delivery mode, unmasked */
	memcpy(&l->regs[reg], &v, 4);
}

static int setup_cpuid(struct vcpu *v, const struct kvm_cpuid2 *sup,
		       char *err, size_t errlen)
{
	size_t sz = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int ret = 0;

	if (!c)
		return -ENOMEM;
	memcpy(c, sup, sz);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x00ffffffu) | ((uint32_t)v->id << 24);
			e->ecx |= 1u << 31; /* hypervisor present */
			break;
		case 0xa: /* no PMU: the guest must not touch its MSRs */
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0xb:
		case 0x1f:
			e->edx = (uint32_t)v->id;
			break;
		default:
			break;
		}
	}
	ret = kvm_ioctl(v->fd, KVM_SET_CPUID2, c, "KVM_SET_CPUID2", v->id, err, errlen);
	free(c);
	return ret < 0 ? ret : 0;
}

static int setup_lapic(struct vcpu *v, char *err, size_t errlen)
{
	struct kvm_lapic_state l;
	int ret;

	/* Virtual-wire mode on the boot CPU: PIC interrupts (the PIT's IRQ0,
	 * the UART's IRQ4) arrive through LINT0 as ExtINT. */
	ret = kvm_ioctl(v->fd, KVM_GET_LAPIC, &l, "KVM_GET_LAPIC", v->id, err, errlen);
	if (ret < 0)
		return ret;
	set_lvt(&l, APIC_LVT0, APIC_MODE_EXTINT);
	set_lvt(&l, APIC_LVT1, APIC_MODE_NMI);
	ret = kvm_ioctl(v->fd, KVM_SET_LAPIC, &l, "KVM_SET_LAPIC", v->id, err, errlen);
	if (ret < 0)
		return ret;
	return 0;
}

int vcpu_create(struct vm *vm, struct vcpu *v, int id,
		const struct kvm_cpuid2 *cpuid, char *err, size_t errlen)
{
	sigset_t mask;
	struct kvm_signal_mask *km;
	int ret;

	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->id = id;
	v->fd = kvm_ioctl(vm->vm_fd, KVM_CREATE_VCPU, (void *)(uintptr_t)id, "KVM_CREATE_VCPU",
			  id, err, errlen);
	if (v->fd < 0)
		return v->fd;
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		ret = -errno;
		KVM_ERR(err, errlen, "mmap(kvm_run): %s", strerror(-ret));
		v->run = NULL;
		goto fail;
	}
	ret = dring_map(v, err, errlen);
	if (ret)
		goto fail;
	ret = setup_cpuid(v, cpuid, err, errlen);
	if (ret)
		goto fail;
	if (id == 0) {
		ret = setup_lapic(v, err, errlen);
		if (ret)
			goto fail;
	}
	/* Inside KVM_RUN every signal but the kick stays as the thread has it. */
	pthread_sigmask(SIG_SETMASK, NULL, &mask);
	sigdelset(&mask, VCPU_KICK_SIGNAL);
	km = calloc(1, sizeof(*km) + 8);
	if (!km) {
		ret = -ENOMEM;
		goto fail;
	}
	km->len = 8; /* the kernel's sigset_t is 64 bits */
	memcpy(km->sigset, &mask, 8);
	ret = kvm_ioctl(v->fd, KVM_SET_SIGNAL_MASK, km, "KVM_SET_SIGNAL_MASK", id, err, errlen);
	free(km);
	if (ret < 0)
		goto fail;
	return 0;
fail:
	vcpu_destroy(v);
	return ret;
}

void vcpu_destroy(struct vcpu *v)
{
	dring_unmap(v);
	if (v->run)
		munmap(v->run, (size_t)v->vm->run_size);
	if (v->fd >= 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}

static void flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
}

int vcpu_set_multiboot_entry(struct vcpu *v, uint32_t eip, uint32_t ebx,
			     char *err, size_t errlen)
{
	struct kvm_sregs s;
	struct kvm_regs r;
	struct kvm_fpu fpu;
	int ret;

	ret = kvm_ioctl(v->fd, KVM_GET_SREGS, &s, "KVM_GET_SREGS", v->id, err, errlen);
	if (ret < 0)
		return ret;
	/* Multiboot: flat 4 GiB code (exec/read) and data (read/write)
	 * segments, PE on, paging off. The guest loads its own GDT. */
	flat_segment(&s.cs, 0x08, 0xb);
	flat_segment(&s.ds, 0x10, 0x3);
	s.es = s.fs = s.gs = s.ss = s.ds;
	s.cr0 = 0x11; /* PE | ET */
	s.cr4 = 0;
	s.efer = 0;
	ret = kvm_ioctl(v->fd, KVM_SET_SREGS, &s, "KVM_SET_SREGS", v->id, err, errlen);
	if (ret < 0)
		return ret;
	memset(&r, 0, sizeof(r));
	r.rip = eip;
	r.rax = 0x2badb002;
	r.rbx = ebx;
	r.rflags = 0x2;
	ret = kvm_ioctl(v->fd, KVM_SET_REGS, &r, "KVM_SET_REGS", v->id, err, errlen);
	if (ret < 0)
		return ret;
	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	ret = kvm_ioctl(v->fd, KVM_SET_FPU, &fpu, "KVM_SET_FPU", v->id, err, errlen);
	if (ret < 0)
		return ret;
	return 0;
}

static void drain_kick(void)
{
	sigset_t set;
	struct timespec zero = { 0, 0 };

	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	while (sigtimedwait(&set, NULL, &zero) > 0)
		;
}

void vcpu_kick(struct vcpu *v)
{
	if (v->thread_started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_dump(struct vcpu *v, int fd)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		dprintf(fd, "vcpu%d: registers unavailable: %s\n", v->id, strerror(errno));
		return;
	}
	dprintf(fd, "vcpu%d: rip=%016llx rsp=%016llx rflags=%08llx\n", v->id,
		r.rip, r.rsp, r.rflags);
	dprintf(fd, "  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n",
		r.rax, r.rbx, r.rcx, r.rdx);
	dprintf(fd, "  rsi=%016llx rdi=%016llx rbp=%016llx r8 =%016llx\n",
		r.rsi, r.rdi, r.rbp, r.r8);
	dprintf(fd, "  cs=%04x(base %llx l%d db%d) ss=%04x cr0=%llx cr3=%llx cr4=%llx efer=%llx\n",
		s.cs.selector, s.cs.base, s.cs.l, s.cs.db, s.ss.selector,
		s.cr0, s.cr3, s.cr4, s.efer);
}

/* The one-line error first, then the registers that explain it. */
static void vcpu_fatal(struct vcpu *v, const char *msg)
{
	dprintf(2, "minivmm: %s\n", msg);
	vcpu_dump(v, 2);
	vm_request_stop(v->vm, VM_EXIT_ERROR, VMM_STATUS_CRASH, msg);
	v->vm->error_reported = true;
}

/* Returns false when the exit ends the VM. */
static bool handle_exit(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct kvm_run *run = v->run;
	char msg[200];

	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		uint8_t *data = (uint8_t *)run + run->io.data_offset;

		for (uint32_t i = 0; i < run->io.count; i++)
			bus_access(&vm->pio, run->io.port, data + i * run->io.size,
				   run->io.size, run->io.direction == KVM_EXIT_IO_OUT);
		return true;
	}
	case KVM_EXIT_MMIO:
		/* Unmapped: reads float high, writes vanish (bus_access). */
		if (run->mmio.len > sizeof(run->mmio.data)) {
			memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
			return true;
		}
		bus_access(&vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
			   run->mmio.is_write);
		return true;
	case KVM_EXIT_DIRTY_RING_FULL:
		if (dring_full(v, msg, sizeof(msg)) < 0) {
			vcpu_fatal(v, msg);
			return false;
		}
		return true;
	case KVM_EXIT_HLT:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SHUTDOWN:
		snprintf(msg, sizeof(msg), "guest shutdown on vcpu%d (triple fault)", v->id);
		vcpu_fatal(v, msg);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		snprintf(msg, sizeof(msg), "guest system event %u (reset/shutdown) on vcpu%d",
			 run->system_event.type, v->id);
		vm_request_stop(vm, VM_EXIT_GUEST, VMM_STATUS_OK, msg);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(msg, sizeof(msg),
			 "KVM_EXIT_INTERNAL_ERROR on vcpu%d: suberror %u%s", v->id,
			 run->internal.suberror,
			 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
				 " (instruction emulation failed)" : "");
		vcpu_fatal(v, msg);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(msg, sizeof(msg), "KVM_EXIT_FAIL_ENTRY on vcpu%d: reason 0x%llx",
			 v->id, (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_fatal(v, msg);
		return false;
	default:
		snprintf(msg, sizeof(msg), "unhandled KVM exit %u on vcpu%d",
			 run->exit_reason, v->id);
		vcpu_fatal(v, msg);
		return false;
	}
}

/* Re-enter KVM_RUN with immediate_exit so the kernel completes a pending
 * I/O instruction: only then is the vCPU's state consistent. */
static void complete_pending_io(struct vcpu *v)
{
	v->run->immediate_exit = 1;
	(void)ioctl(v->fd, KVM_RUN, 0);
	v->run->immediate_exit = 0;
	drain_kick();
}

/* Holds live here rather than in vm.c because the vCPU thread is what
 * takes them. A throttle hold: out of KVM_RUN until the holder's deadline, checked
 * every millisecond so a pause, a stop or the end of the throttle is
 * seen at once (the kick signal is blocked here: it cannot wake us). The
 * thread times the hold itself: that is what the guest lost. */
#define HOLD_POLL_NS 1000000ULL

static void hold(struct vm *vm, uint64_t until)
{
	uint64_t t0 = clock_now_ns(), t = t0, d, max;

	while (until > t && !__atomic_load_n(&vm->stopping, __ATOMIC_ACQUIRE) &&
	       __atomic_load_n(&vm->pause_count, __ATOMIC_ACQUIRE) == 0) {
		struct timespec ts;

		d = until - t < HOLD_POLL_NS ? until - t : HOLD_POLL_NS;
		ts = (struct timespec){ .tv_sec = 0, .tv_nsec = (long)d };
		nanosleep(&ts, NULL);
		t = clock_now_ns();
		until = __atomic_load_n(&vm->hold_until_ns, __ATOMIC_ACQUIRE);
	}
	if (t == t0)
		return;
	d = t - t0;
	__atomic_fetch_add(&vm->hold_total_ns, d, __ATOMIC_RELAXED);
	max = __atomic_load_n(&vm->hold_max_ns, __ATOMIC_RELAXED);
	while (d > max && !__atomic_compare_exchange_n(&vm->hold_max_ns, &max, d, true,
						       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void vm_hold_until(struct vm *vm, uint64_t until_ns)
{
	__atomic_store_n(&vm->hold_until_ns, until_ns, __ATOMIC_RELEASE);
	if (!until_ns)
		return;
	/* Under the lock and only while not stopping: vm_stop_vcpus sets
	 * stopping under it before joining, so no kick reaches a thread
	 * that is gone. */
	pthread_mutex_lock(&vm->lock);
	if (!vm->stopping)
		for (int i = 0; i < vm->ncpus; i++)
			vcpu_kick(&vm->vcpus[i]);
	pthread_mutex_unlock(&vm->lock);
}

void vm_hold_reset_stats(struct vm *vm)
{
	__atomic_store_n(&vm->hold_max_ns, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&vm->hold_total_ns, 0, __ATOMIC_RELAXED);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	bool entered = false;
	char msg[200];

	for (;;) {
		/* Lock-free on the common path: a pause or stop that begins
		 * after these reads has already queued a kick, which makes the
		 * next KVM_RUN return at once, and we come back here. */
		if (__atomic_load_n(&vm->stopping, __ATOMIC_ACQUIRE))
			break;
		if (__atomic_load_n(&vm->pause_count, __ATOMIC_ACQUIRE) > 0) {
			complete_pending_io(v);
			pthread_mutex_lock(&vm->lock);
			vm->parked++;
			pthread_cond_broadcast(&vm->cond);
			while (!vm->stopping && vm->pause_count > 0)
				pthread_cond_wait(&vm->cond, &vm->lock);
			vm->parked--;
			pthread_mutex_unlock(&vm->lock);
			continue;
		}
		{
			uint64_t until = __atomic_load_n(&vm->hold_until_ns, __ATOMIC_ACQUIRE);

			if (until && until > clock_now_ns()) {
				hold(vm, until);
				continue;
			}
		}
		if (!entered) {
			entered = true;
			pthread_mutex_lock(&vm->lock);
			vm->entered++;
			pthread_cond_broadcast(&vm->cond);
			pthread_mutex_unlock(&vm->lock);
		}
		/* What KVM's reset index was when it may decide to stop us on
		 * a full ring (dring_full). */
		if (v->ring)
			v->ring_kr_run = __atomic_load_n(&v->ring_kr, __ATOMIC_ACQUIRE);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				drain_kick();
				continue;
			}
			snprintf(msg, sizeof(msg), "KVM_RUN on vcpu%d: %s", v->id,
				 strerror(errno));
			vm_request_stop(vm, VM_EXIT_ERROR, VMM_STATUS_CRASH, msg);
			break;
		}
		if (!handle_exit(v))
			break;
	}
	pthread_mutex_lock(&vm->lock);
	vm->threads--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int vcpu_start_thread(struct vcpu *v, char *err, size_t errlen)
{
	char name[16];
	int ret;

	pthread_mutex_lock(&v->vm->lock);
	v->vm->threads++;
	pthread_mutex_unlock(&v->vm->lock);
	ret = pthread_create(&v->thread, NULL, vcpu_thread, v);
	if (ret) {
		pthread_mutex_lock(&v->vm->lock);
		v->vm->threads--;
		pthread_mutex_unlock(&v->vm->lock);
		KVM_ERR(err, errlen, "pthread_create(vcpu%d): %s", v->id, strerror(ret));
		return -ret;
	}
	v->thread_started = true;
	snprintf(name, sizeof(name), "vcpu%d", v->id);
	pthread_setname_np(v->thread, name);
	return 0;
}
