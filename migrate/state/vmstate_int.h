/* What the vmstate files share and nothing outside them uses: the section
 * table, the blob writer and parser (vmstate.c), and what both directions
 * ask of KVM: capabilities, ioctls, MSRs (vmstate_kvm.c). Saving is in
 * vmstate_save.c, loading in vmstate_load.c. */
#ifndef MINIVMM_VMSTATE_INT_H
#define MINIVMM_VMSTATE_INT_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/state/vmstate.h"
#include "vmm/core/vm.h"

#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MSRS_HDR 8 /* u32 count, u32 reserved */

/* ---- section table (vmstate.c) -------------------------------------- */

/* Where a parsed section lands: VS_* in parsed.vm, CS_* in parsed.cpu[i]. */
enum { VS_PIT2, VS_CLOCK, VS_PIC_M, VS_PIC_S, VS_IOAPIC, VS_TSC_KHZ, VS_N };
enum { CS_MP, CS_REGS, CS_SREGS, CS_XSAVE, CS_FPU, CS_XCRS, CS_DR, CS_LAPIC,
       CS_MSRS, CS_EVENTS, CS_N };

struct vmstate_secdesc {
	uint32_t type;
	const char *name;
	bool per_cpu;
	int slot;
	uint32_t size;	    /* exact payload size; 0 = checked by its parser */
	uint32_t need_flag; /* header flag that makes it mandatory; 0 = always */
	/* The ioctls that read and write the payload as it is; 0 for the
	 * sections save and load handle themselves. */
	unsigned long get, set;
	const char *get_name, *set_name;
	uint32_t chip; /* kvm_irqchip.chip_id of an irqchip section */
};

/* In blob order: save writes and load applies the KVM sections of one
 * scope in the order they stand in this table. */
extern const struct vmstate_secdesc vmstate_secdescs[];
extern const size_t vmstate_nsecdescs;

/* Whether a blob with these header flags carries section d. */
static inline bool vmstate_sec_in(const struct vmstate_secdesc *d, uint32_t flags)
{
	return !d->need_flag || (flags & d->need_flag);
}

/* What save and load do per section: plain is one ioctl of a fixed struct
 * (or nothing, for sections without that ioctl); XSAVE and MSRS differ. */
struct vmstate_handlers {
	int (*plain)(const struct vmstate_secdesc *d, void *ctx);
	int (*xsave)(const struct vmstate_secdesc *d, void *ctx);
	int (*msrs)(const struct vmstate_secdesc *d, void *ctx);
};

/* Runs h on every section of one scope that a blob with these flags
 * carries, in table order; stops at the first error. */
int vmstate_walk(bool per_cpu, uint32_t flags, const struct vmstate_handlers *h,
		 void *ctx);

/* ---- blob writer (vmstate.c) ---------------------------------------- */

struct vmstate_wbuf {
	uint8_t *p;
	size_t len, cap;
	uint32_t nsec;
};

/* Starts a blob with room for the header, which vmstate_wb_finish fills. */
int vmstate_wb_init(struct vmstate_wbuf *b);
int vmstate_wb_put(struct vmstate_wbuf *b, uint32_t type, uint32_t vcpu,
		   const void *data, size_t len);
void vmstate_wb_finish(struct vmstate_wbuf *b, uint32_t ncpus,
		       uint64_t mem_size, uint32_t flags);

/* ---- parser (vmstate.c) --------------------------------------------- */

struct vmstate_secref {
	const uint8_t *p;
	uint32_t len;
};

/* A VM-scope section outside the table: some device's. */
struct vmstate_devsec {
	uint32_t type;
	struct vmstate_secref s;
};

struct vmstate_parsed {
	uint32_t ncpus, flags, nsec;
	uint64_t mem_size;
	struct vmstate_secref vm[VS_N];
	struct vmstate_secref cpu[VM_MAX_CPUS][CS_N];
	struct vmstate_devsec dev[VMSTATE_MAX_DEVSECS]; /* in blob order */
	int ndev;
};

/* Validates the whole blob (docs/vmstate.md) and points *ps into it. */
int vmstate_parse(const uint8_t *blob, size_t len, struct vmstate_parsed *ps,
		  char *err, size_t errlen);

/* Whether type may name a device section (docs/vmstate.md). */
bool vmstate_is_dev_type(uint32_t type);

/* ---- device sections (vmstate_dev.c) -------------------------------- */

/* Every device's section, in list order, under the device lock. */
int vmstate_save_devices(struct device_list *l, struct vmstate_wbuf *b,
			 char *err, size_t errlen);
/* Matches the blob's device sections with l's devices and has each
 * device check its payload; touches nothing. */
int vmstate_check_devices(struct device_list *l, const struct vmstate_parsed *ps,
			  char *err, size_t errlen);
/* Loads what vmstate_check_devices passed, under the device lock. */
int vmstate_load_devices(struct device_list *l, const struct vmstate_parsed *ps,
			 char *err, size_t errlen);

/* ---- KVM (vmstate_kvm.c) -------------------------------------------- */

/* Every fixed-size KVM struct a section carries, for the table-driven
 * get/set paths. */
union vmstate_kvm_buf {
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	struct kvm_irqchip ic;
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dr;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
};

struct vmstate_caps {
	/* VMSTATE_F_*: the header flags a blob saved here carries, and the
	 * most a blob loaded here may ask for. */
	uint32_t flags;
	size_t xsave_size; /* 0: no XSAVE, use KVM_GET/SET_FPU */
	bool xsave2;
	uint32_t clock_flags; /* KVM_CAP_ADJUST_CLOCK bits */
	bool tsc_khz, tsc_control, kvmclock_ctrl;
};

void vmstate_probe_caps(struct vm *vm, struct vmstate_caps *c);

/* ---- MSRs (vmstate_kvm.c) ------------------------------------------- */

bool vmstate_msr_allowed(uint32_t index);
/* The MSRs to save: allow-list ∩ what this KVM offers, TSC_DEADLINE last. */
int vmstate_msr_list(struct vm *vm, struct kvm_msr_entry **out, uint32_t *nout,
		     char *err, size_t errlen);
/* KVM_GET_MSRS or KVM_SET_MSRS for all n entries; a refused MSR is an
 * error that names it. */
int vmstate_msr_io(int fd, unsigned long req, const char *what,
		   struct kvm_msr_entry *e, uint32_t n, int cpu, char *err,
		   size_t errlen);

#endif
