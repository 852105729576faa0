/* Machine state of a paused VM as one versioned, self-describing,
 * little-endian blob: device state, VM-level KVM state (PIT, kvmclock,
 * PIC/IOAPIC) and every vCPU's KVM state. Guest RAM is not in it: the
 * migration engine moves RAM separately. Format: docs/vmstate.md. */
#ifndef MINIVMM_VMSTATE_H
#define MINIVMM_VMSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

#define VMSTATE_MAGIC "MVMSTATE" /* 8 bytes, no NUL in the blob */
#define VMSTATE_VERSION 1
#define VMSTATE_HDR_SIZE 40
#define VMSTATE_SEC_HDR_SIZE 12
#define VMSTATE_VM_SCOPE 0xffffffffu /* section vcpu field: not per-vCPU */

/* Header flags: which optional KVM state this blob carries. The saving
 * side sets a bit when its KVM offers the capability; the loader then
 * requires those sections (per vCPU or VM-wide) and refuses the blob if
 * its own KVM lacks the capability, so both sides skip the same things. */
#define VMSTATE_F_XSAVE (1u << 0)	/* XSAVE section per vCPU */
#define VMSTATE_F_FPU (1u << 1)		/* FPU section instead of XSAVE */
#define VMSTATE_F_XCRS (1u << 2)
#define VMSTATE_F_DEBUGREGS (1u << 3)
#define VMSTATE_F_VCPU_EVENTS (1u << 4)
#define VMSTATE_F_MP_STATE (1u << 5)
#define VMSTATE_F_CLOCK (1u << 6)
#define VMSTATE_F_PIT2 (1u << 7)
#define VMSTATE_F_ALL ((1u << 8) - 1)

/* Section types. Bit 31 set = optional: a loader that does not know the
 * type skips it. Unknown types without bit 31 make the blob unloadable.
 * The KVM sections below are vmstate's own; every other VM-scope section
 * is a device's (types 0x0001..0x00ff if mandatory, any optional type):
 * vmstate knows no device, it hands them to the VM's device list, whose
 * devices own their types (the UART 0x0001, the console 0x80000002) and
 * judge their payloads. */
enum vmstate_sec {
	VMSTATE_SEC_DEV_FIRST = 0x0001,
	VMSTATE_SEC_DEV_LAST = 0x00ff,
	VMSTATE_SEC_PIT2 = 0x0101,
	VMSTATE_SEC_CLOCK = 0x0102,
	VMSTATE_SEC_PIC_MASTER = 0x0103,
	VMSTATE_SEC_PIC_SLAVE = 0x0104,
	VMSTATE_SEC_IOAPIC = 0x0105,
	VMSTATE_SEC_MP_STATE = 0x0201,
	VMSTATE_SEC_REGS = 0x0202,
	VMSTATE_SEC_SREGS = 0x0203,
	VMSTATE_SEC_XSAVE = 0x0204,
	VMSTATE_SEC_FPU = 0x0205,
	VMSTATE_SEC_XCRS = 0x0206,
	VMSTATE_SEC_DEBUGREGS = 0x0207,
	VMSTATE_SEC_LAPIC = 0x0208,
	VMSTATE_SEC_MSRS = 0x0209,
	VMSTATE_SEC_VCPU_EVENTS = 0x020a,
	VMSTATE_SEC_OPTIONAL = 0x80000000u,
	/* VM scope, u32 guest TSC kHz (informational for the loader's check) */
	VMSTATE_SEC_TSC_KHZ = 0x80000001u,
};

/* At most this many device sections in one blob. */
#define VMSTATE_MAX_DEVSECS 64

/* Upper bounds a loader enforces before allocating or copying. */
#define VMSTATE_MAX_MSRS 512
#define VMSTATE_MAX_XSAVE (1u << 20)

struct vmstate_load_opts {
	/* Advance kvmclock by the wall-clock time since the save
	 * (KVM_CLOCK_REALTIME; both hosts' CLOCK_REALTIME must agree). Off:
	 * the guest's kvmclock continues from the saved value. */
	bool clock_realtime;
};

/* Serialises a paused VM (vm_pause() returned, or vCPU threads never
 * started). *out is malloc'ed; the caller frees it. -EBUSY if a vCPU is
 * running. */
int vmstate_save(struct vm *vm, uint8_t **out, size_t *outlen, char *err,
		 size_t errlen);

/* Loads a blob into a VM made by vm_create() with the same memory size and
 * vCPU count whose vCPU threads have not been started. The whole blob is
 * validated before anything is applied; if an ioctl fails while applying,
 * the VM is left half-loaded and must be destroyed. */
int vmstate_load(struct vm *vm, const uint8_t *blob, size_t len, char *err,
		 size_t errlen);
int vmstate_load_opts(struct vm *vm, const uint8_t *blob, size_t len,
		      const struct vmstate_load_opts *opts, char *err,
		      size_t errlen);

/* Validates a blob without a VM (format, sizes, counts, MSR indices).
 * Device sections are only checked for shape (scope, type range, no
 * duplicates): their payloads are the devices' to judge, at load.
 * On success fills *ncpus and *mem_size from the header. */
int vmstate_check(const uint8_t *blob, size_t len, uint32_t *ncpus,
		  uint64_t *mem_size, char *err, size_t errlen);

/* What the devices got after their state was saved while the guest stayed
 * paused (devices/device.h save_late): entries u32 section type, u32
 * length, bytes; *outlen 0 when there is nothing. The VM must be paused. */
int vmstate_save_late(struct vm *vm, uint8_t **out, size_t *outlen, char *err,
		      size_t errlen);
/* Hands each entry to the device owning that section type; an entry no
 * device here owns, or that it refuses, is an error. */
int vmstate_load_late(struct vm *vm, const uint8_t *blob, size_t len, char *err,
		      size_t errlen);

/* Name of a section type for messages ("LAPIC", "type 0x1234"). */
const char *vmstate_sec_name(uint32_t type);

#endif
