#include "vmm/core/vm.h"
#include "vmm/core/clock.h"
#include "vmm/core/dirty_ring.h"
#include "devices/conline.h"
#include "devices/exitdev.h"
#include "devices/pci.h"
#include "devices/uart.h"
#include "vmm/core/prealloc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmm/core/kvm.h"
#include "vmm/core/blkdev.h"
#include "vmm/core/netdev.h"
#include "vmm/core/status.h"
#include "vmm/core/vcpu.h"

int vm_layout_slots(uint64_t mem_size, struct vm_slot *slots, int *nslots)
{
	if (mem_size < VM_MIN_MEM || mem_size > VM_MAX_MEM ||
	    mem_size % VM_PAGE_SIZE)
		return -EINVAL;
	memset(slots, 0, sizeof(*slots) * VM_MAX_SLOTS);
	slots[0].id = 0;
	slots[0].gpa = 0;
	slots[0].ram_offset = 0;
	slots[0].size = mem_size < VM_LOW_MEM_END ? mem_size : VM_LOW_MEM_END;
	*nslots = 1;
	if (mem_size > VM_LOW_MEM_END) {
		slots[1].id = 1;
		slots[1].gpa = VM_HIGH_MEM_START;
		slots[1].ram_offset = VM_LOW_MEM_END;
		slots[1].size = mem_size - VM_LOW_MEM_END;
		*nslots = 2;
	}
	return 0;
}

static void uart_irq(void *opaque, int level)
{
	struct vm *vm = opaque;

	kvm_irq_line(vm->vm_fd, COM1_IRQ, level);
}

void vm_console_flush(struct vm *vm, bool force)
{
	bool paused;

	pthread_mutex_lock(&vm->lock);
	paused = vm->pause_count > 0;
	pthread_mutex_unlock(&vm->lock);
	/* A paused guest's partial line may yet migrate: only force writes it. */
	if ((!force && paused) || !vm->console)
		return;
	device_list_lock(&vm->devices);
	conline_flush(vm->console, force, clock_now_ns());
	device_list_unlock(&vm->devices);
}

static void guest_exit(void *opaque, int status, const char *why)
{
	vm_request_stop(opaque, VM_EXIT_GUEST, status, why);
}

static void kick_handler(int sig)
{
	(void)sig; /* only interrupts KVM_RUN */
}

/* The UART feeds the console, which is created after it: list order is
 * blob order, and the UART's section has always come first. */
static void uart_tx(void *opaque, uint8_t byte)
{
	conline_put(((struct vm *)opaque)->console, byte);
}

/* The machine: one call per device, in the order their sections stand in
 * a vmstate blob. */
static int vm_create_devices(struct vm *vm, char *err, size_t errlen)
{
	int ret = device_list_init(&vm->devices, &vm->pio, &vm->mmio);

	if (ret) {
		KVM_ERR(err, errlen, "device_list_init: %s", strerror(-ret));
		return ret;
	}
	ret = uart_create(&vm->devices, COM1_PORT, uart_irq, uart_tx, vm, &vm->com1,
			  err, errlen);
	if (!ret)
		ret = conline_create(&vm->devices, STDOUT_FILENO, &vm->console, err, errlen);
	if (!ret)
		ret = exitdev_create(&vm->devices, guest_exit, vm, err, errlen);
	if (!ret)
		ret = exitdev_sink_create(&vm->devices, EXITDEV_POST_PORT, err, errlen);
	if (!ret)
		ret = pci_host_create(&vm->devices, &vm->pci, err, errlen);
	/* The NIC's back-end thread starts here, but moves nothing before
	 * the guest's driver sets DRIVER_OK. */
	if (!ret && vm->cfg.net.set)
		ret = netdev_create(vm, &vm->cfg.net, &vm->netdev, err, errlen);
	if (!ret && vm->cfg.disk.set)
		ret = blkdev_create(vm, &vm->cfg.disk, &vm->blkdev, err, errlen);
	return ret;
}

int vm_ram_map(uint64_t size, uint8_t **out, char *err, size_t errlen)
{
	/* NORESERVE: untouched guest RAM costs nothing, and migration can
	 * tell untouched pages apart (mincore) and skip them. */
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	*out = NULL;
	if (p == MAP_FAILED) {
		KVM_ERR(err, errlen, "mmap guest RAM (%llu MiB): %s",
			(unsigned long long)(size >> 20), strerror(errno));
		return -ENOMEM;
	}
	/* Guest RAM never goes to a child (vm_destroy_detached). */
	madvise(p, size, MADV_DONTFORK);
	*out = p;
	return 0;
}

/* Zeroed and populated (MAP_POPULATE writes every page in): a bitmap
 * read or written whole never faults. NULL when out of memory. */
static uint64_t *bitmap_alloc(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void bitmap_free(uint64_t **bm, size_t bytes)
{
	if (*bm)
		munmap(*bm, bytes);
	*bm = NULL;
}

static int vm_create_memory(struct vm *vm, char *err, size_t errlen)
{
	int ret = vm_layout_slots(vm->cfg.mem_size, vm->slots, &vm->nslots);

	if (ret) {
		KVM_ERR(err, errlen, "memory size %llu is not usable",
			(unsigned long long)vm->cfg.mem_size);
		return ret;
	}
	if (!vm->ram) {
		ret = vm_ram_map(vm->cfg.mem_size, &vm->ram, err, errlen);
		if (ret)
			return ret;
		vm->ram_size = vm->cfg.mem_size;
		if (vm->cfg.prealloc) {
			ret = prealloc_all(vm->ram, vm->ram_size, err, errlen);
			if (ret)
				return ret;
		}
	}
	for (int i = 0; i < vm->nslots; i++) {
		struct vm_slot *s = &vm->slots[i];

		ret = kvm_set_memslot(vm->vm_fd, s->id, s->flags, s->gpa, s->size,
				      vm->ram + s->ram_offset, err, errlen);
		if (ret)
			return ret;
	}
	vm->bm_bytes = ((vm->ram_size / VM_PAGE_SIZE + 63) / 64 + 1) * 8;
	vm->vmm_dirty = bitmap_alloc(vm->bm_bytes);
	vm->mig_bm = bitmap_alloc(vm->bm_bytes);
	vm->mig_log = bitmap_alloc(vm->bm_bytes);
	vm->sum_bytes = ((vm->ram_size / VM_PAGE_SIZE / VM_DIRTY_GROUP_PAGES + 1) / 64 + 1) * 8;
	vm->vmm_dirty_sum = bitmap_alloc(vm->sum_bytes);
	if (!vm->vmm_dirty || !vm->mig_bm || !vm->mig_log || !vm->vmm_dirty_sum) {
		KVM_ERR(err, errlen, "page bitmaps (3 x %zu KiB): out of memory", vm->bm_bytes >> 10);
		return -ENOMEM;
	}
	return 0;
}

int vm_prepare(struct vm *vm, const struct vm_config *cfg, char *err, size_t errlen)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	struct sigaction sa;
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = *cfg;
	vm->cfg.ram = NULL;
	vm->ram = cfg->ram; /* adopted now: vm_destroy unmaps it, also on failure */
	vm->ram_size = cfg->ram ? cfg->mem_size : 0;
	vm->kvm_fd = vm->vm_fd = vm->notify_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->dring_lock, NULL);
	vm_cond_init(vm);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigaction(SIGUSR1, &sa, NULL);

	ret = kvm_open(err, errlen);
	if (ret < 0)
		goto fail;
	vm->kvm_fd = ret;
	vm->max_vcpus = kvm_check_cap(vm->kvm_fd, KVM_CAP_MAX_VCPUS);
	if (vm->max_vcpus <= 0)
		vm->max_vcpus = kvm_check_cap(vm->kvm_fd, KVM_CAP_NR_VCPUS);
	if (vm->max_vcpus > VM_MAX_CPUS)
		vm->max_vcpus = VM_MAX_CPUS;
	ret = kvm_ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, NULL, "KVM_GET_VCPU_MMAP_SIZE", -1,
			err, errlen);
	if (ret < 0)
		goto fail;
	vm->run_size = ret;
	ret = kvm_ioctl(vm->kvm_fd, KVM_CREATE_VM, NULL, "KVM_CREATE_VM", -1, err, errlen);
	if (ret < 0)
		goto fail;
	vm->vm_fd = ret;
	ret = kvm_ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (void *)(uintptr_t)VM_TSS_ADDR,
			"KVM_SET_TSS_ADDR", -1, err, errlen);
	if (ret)
		goto fail;
	/* The irqchip must exist before any vCPU is created. */
	ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, NULL, "KVM_CREATE_IRQCHIP", -1, err, errlen);
	if (ret)
		goto fail;
	ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2", -1, err, errlen);
	if (ret)
		goto fail;
	ret = vm_create_memory(vm, err, errlen);
	if (ret)
		goto fail;
	return 0;
fail:
	vm_destroy(vm);
	return ret;
}

int vm_finish(struct vm *vm, const struct vm_config *cfg, char *err, size_t errlen)
{
	struct kvm_cpuid2 *cpuid = NULL;
	uint64_t mem = vm->cfg.mem_size;
	bool prealloc = vm->cfg.prealloc;
	int ret;

	if (cfg->mem_size != mem) {
		KVM_ERR(err, errlen, "the VM has %llu MiB, its RAM was made for %llu MiB",
			(unsigned long long)(cfg->mem_size >> 20), (unsigned long long)(mem >> 20));
		ret = -EINVAL;
		goto fail;
	}
	vm->cfg = *cfg;
	vm->cfg.ram = NULL;
	vm->cfg.prealloc = prealloc || cfg->prealloc;
	if (cfg->ncpus < 1 || cfg->ncpus > vm->max_vcpus) {
		KVM_ERR(err, errlen, "--cpus %d: must be between 1 and %d (KVM's limit here)",
			cfg->ncpus, vm->max_vcpus);
		ret = -EINVAL;
		goto fail;
	}
	/* KVM takes the ring only before the first vCPU. */
	if (cfg->dirty_ring) {
		ret = dring_enable(vm, cfg->dirty_ring, err, errlen);
		if (ret)
			goto fail;
	}
	ret = kvm_supported_cpuid(vm->kvm_fd, &cpuid, err, errlen);
	if (ret)
		goto fail;
	vm->vcpus = calloc((size_t)cfg->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		ret = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < cfg->ncpus; i++) {
		ret = vcpu_create(vm, &vm->vcpus[i], i, cpuid, err, errlen);
		if (ret)
			goto fail;
		vm->ncpus++;
	}
	free(cpuid);
	cpuid = NULL;
	ret = vm_create_devices(vm, err, errlen);
	if (ret)
		goto fail;
	vm->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->notify_fd < 0) {
		ret = -errno;
		KVM_ERR(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	return 0;
fail:
	free(cpuid);
	vm_destroy(vm);
	return ret;
}

int vm_create(struct vm *vm, const struct vm_config *cfg, char *err,
	      size_t errlen)
{
	int ret = vm_prepare(vm, cfg, err, errlen);

	return ret ? ret : vm_finish(vm, cfg, err, errlen);
}

void vm_destroy(struct vm *vm)
{
	vm_stop_vcpus(vm);
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
	vm->vcpus = NULL;
	vm->ncpus = 0;
	netdev_destroy(vm->netdev); /* its thread touches the devices */
	vm->netdev = NULL;
	blkdev_destroy(vm->blkdev);
	vm->blkdev = NULL;
	device_list_destroy(&vm->devices); /* and the buses; a no-op if never made */
	vm->pci = NULL;
	vm->com1 = NULL;
	vm->console = NULL;
	if (vm->ram)
		munmap(vm->ram, vm->ram_size);
	vm->ram = NULL;
	bitmap_free(&vm->vmm_dirty, vm->bm_bytes);
	bitmap_free(&vm->mig_bm, vm->bm_bytes);
	bitmap_free(&vm->mig_log, vm->bm_bytes);
	bitmap_free(&vm->vmm_dirty_sum, vm->sum_bytes);
	if (vm->notify_fd >= 0)
		close(vm->notify_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->notify_fd = vm->vm_fd = vm->kvm_fd = -1;
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->dring_lock);
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* The detached child must not keep the caller's pipes, terminal, sockets
 * or migration stream open: it keeps only what KVM teardown needs. */
static void close_all_but_kvm(struct vm *vm, int gate)
{
	int keep[VM_MAX_CPUS + 4], n = 0, next = 0;

	keep[n++] = vm->kvm_fd;
	keep[n++] = vm->vm_fd;
	keep[n++] = gate;
	for (int i = 0; i < vm->ncpus; i++)
		keep[n++] = vm->vcpus[i].fd;
	qsort(keep, (size_t)n, sizeof(keep[0]), cmp_int);
	for (int i = 0; i < n; i++) {
		if (keep[i] < 0)
			continue;
		if (keep[i] > next)
			close_range((unsigned)next, (unsigned)keep[i] - 1, 0);
		next = keep[i] + 1;
	}
	close_range((unsigned)next, ~0u, 0);
	vm->notify_fd = -1;
}

void vm_destroy_detached(struct vm *vm)
{
	int gate[2] = { -1, -1 };
	pid_t pid = -1;
	char c;

	vm_stop_vcpus(vm); /* fork only a single-threaded process */
	netdev_stop(vm->netdev);
	blkdev_stop(vm->blkdev);
	if (pipe2(gate, O_CLOEXEC) == 0)
		pid = fork();
	if (pid == 0) {
		/* The child holds no pipe or terminal a caller waits on, and
		 * waits until the parent has dropped its references, so that
		 * its own close is the last one: the slow one. */
		setsid();
		close_all_but_kvm(vm, gate[0]);
		while (read(gate[0], &c, 1) < 0 && errno == EINTR)
			;
		vm_destroy(vm);
		_exit(0);
	}
	/* With the child holding references these closes are cheap; if fork
	 * failed this is the ordinary, synchronous teardown. */
	vm_destroy(vm);
	if (gate[0] >= 0) {
		close(gate[0]);
		close(gate[1]);
	}
}

int vm_start(struct vm *vm, char *err, size_t errlen)
{
	for (int i = 0; i < vm->ncpus; i++) {
		int ret = vcpu_start_thread(&vm->vcpus[i], err, errlen);

		if (ret) {
			vm_request_stop(vm, VM_EXIT_ERROR, VMM_STATUS_CRASH, err);
			return ret;
		}
	}
	return 0;
}

int vm_wait_entered(struct vm *vm, int timeout_ms)
{
	struct timespec dl = clock_deadline(timeout_ms);
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	while (vm->entered < vm->ncpus && !vm->stopping && !ret)
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &dl) == ETIMEDOUT &&
		    vm->entered < vm->ncpus && !vm->stopping)
			ret = -ETIMEDOUT;
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

void vm_cond_init(struct vm *vm)
{
	pthread_condattr_t a;

	/* vm_pause's deadline must not move with the wall clock. */
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &a);
	pthread_condattr_destroy(&a);
}

int vm_pause(struct vm *vm)
{
	struct timespec dl = clock_deadline(vm->pause_timeout_ms > 0 ? vm->pause_timeout_ms :
					    VM_PAUSE_TIMEOUT_MS);
	bool first;
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	first = __atomic_add_fetch(&vm->pause_count, 1, __ATOMIC_RELEASE) == 1;
	if (first)
		for (int i = 0; i < vm->ncpus; i++)
			vcpu_kick(&vm->vcpus[i]);
	while (vm->parked < vm->threads && !vm->stopping && !ret)
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &dl) == ETIMEDOUT &&
		    vm->parked < vm->threads)
			ret = -ETIMEDOUT;
	if (vm->stopping)
		ret = -ESHUTDOWN;
	pthread_mutex_unlock(&vm->lock);
	/* Back-ends stop with the vCPUs, so that device state is still
	 * when vmstate saves it (and a stopped guest gets no frames). Not
	 * under vm->lock: exits take the device lock, then vm->lock. */
	if (first)
		device_list_quiesce(&vm->devices);
	return ret;
}

void vm_resume(struct vm *vm)
{
	bool last = false;

	pthread_mutex_lock(&vm->lock);
	if (vm->pause_count == 1)
		last = true;
	pthread_mutex_unlock(&vm->lock);
	/* Back-ends go again before the vCPUs, like a fresh start. */
	if (last)
		device_list_resume(&vm->devices);
	pthread_mutex_lock(&vm->lock);
	if (vm->pause_count > 0 &&
	    __atomic_sub_fetch(&vm->pause_count, 1, __ATOMIC_RELEASE) == 0)
		pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason why, int status,
		     const char *msg)
{
	uint64_t one = 1;

	pthread_mutex_lock(&vm->lock);
	if (vm->stop_reason == VM_RUNNING) {
		vm->stop_reason = why;
		vm->exit_status = status;
		snprintf(vm->stop_msg, sizeof(vm->stop_msg), "%s", msg ? msg : "");
	}
	__atomic_store_n(&vm->stopping, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&vm->cond);
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_mutex_unlock(&vm->lock);
	if (vm->notify_fd >= 0 && write(vm->notify_fd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow in practice; nothing to do. */
	}
}

void vm_stop_vcpus(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	__atomic_store_n(&vm->stopping, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&vm->cond);
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_mutex_unlock(&vm->lock);
	for (int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->thread_started) {
			pthread_join(v->thread, NULL);
			v->thread_started = false;
		}
	}
}

uint8_t *vm_gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < vm->nslots; i++) {
		const struct vm_slot *s = &vm->slots[i];

		if (gpa >= s->gpa && gpa - s->gpa <= s->size &&
		    len <= s->size - (gpa - s->gpa))
			return vm->ram + s->ram_offset + (gpa - s->gpa);
	}
	return NULL;
}

void vm_mark_dirty(struct vm *vm, uint64_t ram_offset, uint64_t len)
{
	uint64_t first, last;

	if (len == 0 || ram_offset >= vm->ram_size)
		return;
	if (len > vm->ram_size - ram_offset)
		len = vm->ram_size - ram_offset;
	first = ram_offset / VM_PAGE_SIZE;
	last = (ram_offset + len - 1) / VM_PAGE_SIZE;
	for (uint64_t p = first; p <= last; p++)
		vm_page_dirty(vm, p);
}

int vm_read_guest(struct vm *vm, uint64_t gpa, void *dst, uint64_t len)
{
	uint8_t *p = vm_gpa_to_hva(vm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int vm_write_guest(struct vm *vm, uint64_t gpa, const void *src, uint64_t len)
{
	uint8_t *p = vm_gpa_to_hva(vm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	vm_mark_dirty(vm, (uint64_t)(p - vm->ram), len);
	return 0;
}

int vm_set_dirty_logging(struct vm *vm, bool on, char *err, size_t errlen)
{
	for (int i = 0; i < vm->nslots; i++) {
		struct vm_slot *s = &vm->slots[i];
		uint32_t flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0;
		int ret = kvm_set_memslot(vm->vm_fd, s->id, flags, s->gpa, s->size,
					  vm->ram + s->ram_offset, err, errlen);

		if (ret)
			return ret;
		s->flags = flags;
	}
	return 0;
}
