/* CPU compatibility for migration: what the source's HELLO carries about
 * the CPU its guest was given, and the target's decision whether it can
 * honour it (same vendor, every feature bit, XSAVE components, physical
 * address width, TSC frequency). */
#ifndef MINIVMM_CPUCOMPAT_H
#define MINIVMM_CPUCOMPAT_H

#include <stddef.h>
#include <stdint.h>

struct vm;

#define CPUCOMPAT_VERSION 1
/* u32 version, u32 size, 12 vendor bytes, 13 u32 fields */
#define CPUCOMPAT_WIRE_SIZE (4 + 4 + 12 + 13 * 4)

/* flags */
#define CPUCOMPAT_F_TSC_KHZ (1u << 0)	  /* tsc_khz is known */
#define CPUCOMPAT_F_TSC_SCALING (1u << 1) /* this KVM can scale (KVM_CAP_TSC_CONTROL) */
#define CPUCOMPAT_F_ALL ((1u << 2) - 1)

struct cpucompat {
	char vendor[13];	    /* CPUID 0: "GenuineIntel", "AuthenticAMD" */
	uint32_t leaf1_ecx, leaf1_edx;
	uint32_t leaf7_ebx, leaf7_ecx, leaf7_edx; /* CPUID 7.0 */
	uint32_t ext1_ecx, ext1_edx;		   /* CPUID 0x80000001 */
	uint32_t xcr0_lo, xcr0_hi; /* CPUID 0xD.0 EAX/EDX: XSAVE components */
	uint32_t xsave_size;	   /* CPUID 0xD.0 ECX: area for all of them */
	uint32_t phys_bits;	   /* CPUID 0x80000008 EAX[7:0] */
	uint32_t tsc_khz;	   /* KVM_GET_TSC_KHZ on vCPU 0 */
	uint32_t flags;
};

/* Fills c from the CPUID vCPU 0 was given (KVM_GET_CPUID2) and its TSC
 * frequency. Works on a VM whose vCPUs have not run. */
int cpucompat_get(struct vm *vm, struct cpucompat *c, char *err, size_t errlen);

/* Fixed little-endian layout of CPUCOMPAT_WIRE_SIZE bytes. encode returns
 * the bytes written or -ENOSPC; decode rejects a wrong length, version or
 * size, unknown flags and a non-printable vendor. */
int cpucompat_encode(const struct cpucompat *c, uint8_t *buf, size_t len);
int cpucompat_decode(struct cpucompat *c, const uint8_t *buf, size_t len,
		     char *err, size_t errlen);

/* 0 if target can run a guest that ran with source; else -ENOTSUP and a
 * reason naming what differs ("target lacks NX, LM"). */
int cpucompat_check(const struct cpucompat *source,
		    const struct cpucompat *target, char *why, size_t whylen);

/* Edits c for tests that need a "different" CPU on this one machine.
 * spec is comma-separated: FIELD=VALUE (vendor=GenuineIntel, tsc_khz=..,
 * leaf1_edx=0x..), FIELD+=BITS / FIELD-=BITS to set / clear bits, and
 * -NAME / +NAME for a named feature (-nx, -lm, +avx512f). */
int cpucompat_override(struct cpucompat *c, const char *spec, char *err,
		       size_t errlen);

#endif
