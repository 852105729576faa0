/* CPU compatibility check for migration (see cpucompat.h). The
 * rule: every CPUID feature bit the guest was given on the source must be
 * offered by the target, because the guest may already use it; the target
 * may offer more (the guest never looked). */
#include "migrate/state/cpucompat.h"

#include <stdarg.h>
#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/core/kvm.h"
#include "vmm/core/vcpu.h"
#include "vmm/core/vm.h"

/* Firecracker's (and QEMU's) tolerance: closer than this needs no scaling. */
#define TSC_TOL_PPM 250

enum reg { R_L1_ECX, R_L1_EDX, R_L7_EBX, R_L7_ECX, R_L7_EDX, R_E1_ECX,
	   R_E1_EDX, R_N };

static const char *const reg_names[R_N] = {
	"leaf1_ecx", "leaf1_edx", "leaf7_ebx", "leaf7_ecx", "leaf7_edx",
	"ext1_ecx", "ext1_edx",
};

/* Bits KVM changes at run time to mirror guest control registers: they
 * say what the guest switched on, not what the CPU offers. */
static const uint32_t dynamic_bits[R_N] = {
	[R_L1_ECX] = 1u << 27 /* OSXSAVE */ | 1u << 31 /* hypervisor */,
	[R_L1_EDX] = 1u << 9 /* APIC, cleared while APIC_BASE disables it */,
	[R_L7_ECX] = 1u << 4 /* OSPKE */,
};

static const struct feat {
	enum reg reg;
	uint8_t bit;
	const char *name;
} feats[] = {
	{ R_L1_EDX, 0, "FPU" }, { R_L1_EDX, 4, "TSC" }, { R_L1_EDX, 5, "MSR" },
	{ R_L1_EDX, 6, "PAE" }, { R_L1_EDX, 8, "CX8" }, { R_L1_EDX, 11, "SEP" },
	{ R_L1_EDX, 12, "MTRR" }, { R_L1_EDX, 13, "PGE" }, { R_L1_EDX, 15, "CMOV" },
	{ R_L1_EDX, 16, "PAT" }, { R_L1_EDX, 19, "CLFSH" }, { R_L1_EDX, 23, "MMX" },
	{ R_L1_EDX, 24, "FXSR" }, { R_L1_EDX, 25, "SSE" }, { R_L1_EDX, 26, "SSE2" },
	{ R_L1_ECX, 0, "SSE3" }, { R_L1_ECX, 1, "PCLMULQDQ" }, { R_L1_ECX, 9, "SSSE3" },
	{ R_L1_ECX, 12, "FMA" }, { R_L1_ECX, 13, "CX16" }, { R_L1_ECX, 17, "PCID" },
	{ R_L1_ECX, 19, "SSE4.1" }, { R_L1_ECX, 20, "SSE4.2" }, { R_L1_ECX, 21, "X2APIC" },
	{ R_L1_ECX, 22, "MOVBE" }, { R_L1_ECX, 23, "POPCNT" },
	{ R_L1_ECX, 24, "TSC_DEADLINE" }, { R_L1_ECX, 25, "AES" }, { R_L1_ECX, 26, "XSAVE" },
	{ R_L1_ECX, 28, "AVX" }, { R_L1_ECX, 29, "F16C" }, { R_L1_ECX, 30, "RDRAND" },
	{ R_L7_EBX, 0, "FSGSBASE" }, { R_L7_EBX, 1, "TSC_ADJUST" }, { R_L7_EBX, 3, "BMI1" },
	{ R_L7_EBX, 4, "HLE" }, { R_L7_EBX, 5, "AVX2" }, { R_L7_EBX, 7, "SMEP" },
	{ R_L7_EBX, 8, "BMI2" }, { R_L7_EBX, 9, "ERMS" }, { R_L7_EBX, 10, "INVPCID" },
	{ R_L7_EBX, 11, "RTM" }, { R_L7_EBX, 16, "AVX512F" }, { R_L7_EBX, 18, "RDSEED" },
	{ R_L7_EBX, 19, "ADX" }, { R_L7_EBX, 20, "SMAP" }, { R_L7_EBX, 23, "CLFLUSHOPT" },
	{ R_L7_EBX, 24, "CLWB" }, { R_L7_EBX, 29, "SHA" },
	{ R_L7_ECX, 2, "UMIP" }, { R_L7_ECX, 3, "PKU" }, { R_L7_ECX, 9, "VAES" },
	{ R_L7_ECX, 10, "VPCLMULQDQ" }, { R_L7_ECX, 22, "RDPID" },
	{ R_L7_EDX, 10, "MD_CLEAR" }, { R_L7_EDX, 26, "IBRS" }, { R_L7_EDX, 27, "STIBP" },
	{ R_L7_EDX, 29, "ARCH_CAPABILITIES" }, { R_L7_EDX, 31, "SSBD" },
	{ R_E1_ECX, 0, "LAHF_LM" }, { R_E1_ECX, 2, "SVM" }, { R_E1_ECX, 5, "LZCNT" },
	{ R_E1_ECX, 6, "SSE4A" }, { R_E1_ECX, 8, "PREFETCHW" },
	{ R_E1_EDX, 11, "SYSCALL" }, { R_E1_EDX, 20, "NX" }, { R_E1_EDX, 26, "PDPE1GB" },
	{ R_E1_EDX, 27, "RDTSCP" }, { R_E1_EDX, 29, "LM" },
};
#define NFEATS (sizeof(feats) / sizeof(feats[0]))

static uint32_t *reg_ptr(struct cpucompat *c, enum reg r)
{
	uint32_t *const p[R_N] = {
		&c->leaf1_ecx, &c->leaf1_edx, &c->leaf7_ebx, &c->leaf7_ecx,
		&c->leaf7_edx, &c->ext1_ecx, &c->ext1_edx,
	};

	return p[r];
}

static uint32_t reg_val(const struct cpucompat *c, enum reg r)
{
	return *reg_ptr((struct cpucompat *)c, r);
}

/* ---- reading it from KVM -------------------------------------------- */

static const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid2 *t,
						 uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < t->nent; i++)
		if (t->entries[i].function == fn &&
		    (!(t->entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
		     t->entries[i].index == idx))
			return &t->entries[i];
	return NULL;
}

/* The fields come from the guest's table; the patches vcpu_create makes
 * (APIC id, hypervisor bit, no PMU leaf) touch none of them but the
 * hypervisor bit, which the check ignores. */
static int from_table(const struct kvm_cpuid2 *t, struct cpucompat *c,
		      char *err, size_t errlen)
{
	const struct kvm_cpuid_entry2 *e = cpuid_find(t, 0, 0);

	if (!e) {
		KVM_ERR(err, errlen, "cpucompat: CPUID table has no leaf 0");
		return -ENODATA;
	}
	memcpy(c->vendor, &e->ebx, 4);
	memcpy(c->vendor + 4, &e->edx, 4);
	memcpy(c->vendor + 8, &e->ecx, 4);
	c->vendor[12] = 0;
	if ((e = cpuid_find(t, 1, 0))) {
		c->leaf1_ecx = e->ecx;
		c->leaf1_edx = e->edx;
	}
	if ((e = cpuid_find(t, 7, 0))) {
		c->leaf7_ebx = e->ebx;
		c->leaf7_ecx = e->ecx;
		c->leaf7_edx = e->edx;
	}
	if ((e = cpuid_find(t, 0xd, 0))) {
		c->xcr0_lo = e->eax;
		c->xcr0_hi = e->edx;
		c->xsave_size = e->ecx;
	}
	if ((e = cpuid_find(t, 0x80000001, 0))) {
		c->ext1_ecx = e->ecx;
		c->ext1_edx = e->edx;
	}
	if ((e = cpuid_find(t, 0x80000008, 0)))
		c->phys_bits = e->eax & 0xff;
	return 0;
}

static void tsc_from_vcpu(int kvm_fd, int vcpu_fd, struct cpucompat *c)
{
	if (kvm_check_cap(kvm_fd, KVM_CAP_GET_TSC_KHZ) > 0) {
		int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);

		if (khz > 0) {
			c->tsc_khz = (uint32_t)khz;
			c->flags |= CPUCOMPAT_F_TSC_KHZ;
		}
	}
	if (kvm_check_cap(kvm_fd, KVM_CAP_TSC_CONTROL) > 0)
		c->flags |= CPUCOMPAT_F_TSC_SCALING;
}

/* What a vCPU reports, not what was handed to KVM_SET_CPUID2: on
 * kvm_pvm the two differ (KVM_GET_CPUID2 shows host features such as
 * SSE3/AVX that KVM_GET_SUPPORTED_CPUID leaves out), and the reported
 * table is the one the guest can act on. Both sides read it this way. */
static int vcpu_cpuid(int vcpu_fd, struct cpucompat *c, char *err, size_t errlen)
{
	struct kvm_cpuid2 *t = NULL;
	int ret;

	/* KVM_GET_CPUID2 answers E2BIG until the buffer holds every entry. */
	for (uint32_t nent = 64;; nent *= 2) {
		t = calloc(1, sizeof(*t) + nent * sizeof(t->entries[0]));
		if (!t)
			return -ENOMEM;
		t->nent = nent;
		if (ioctl(vcpu_fd, KVM_GET_CPUID2, t) == 0)
			break;
		ret = -errno;
		free(t);
		t = NULL;
		if (ret != -E2BIG || nent >= 4096) {
			KVM_ERR(err, errlen, "KVM_GET_CPUID2: %s", strerror(-ret));
			return ret;
		}
	}
	ret = from_table(t, c, err, errlen);
	free(t);
	return ret;
}

int cpucompat_get(struct vm *vm, struct cpucompat *c, char *err, size_t errlen)
{
	int ret;

	memset(c, 0, sizeof(*c));
	if (vm->ncpus < 1) {
		KVM_ERR(err, errlen, "cpucompat: VM has no vCPUs");
		return -EINVAL;
	}
	ret = vcpu_cpuid(vm->vcpus[0].fd, c, err, errlen);
	if (ret)
		return ret;
	tsc_from_vcpu(vm->kvm_fd, vm->vcpus[0].fd, c);
	return 0;
}

/* ---- wire format ----------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* The u32 fields in wire order. */
#define FIELDS(c)                                                          \
	{ &(c)->leaf1_ecx, &(c)->leaf1_edx, &(c)->leaf7_ebx, &(c)->leaf7_ecx, \
	  &(c)->leaf7_edx, &(c)->ext1_ecx, &(c)->ext1_edx, &(c)->xcr0_lo,     \
	  &(c)->xcr0_hi, &(c)->xsave_size, &(c)->phys_bits, &(c)->tsc_khz,    \
	  &(c)->flags }

int cpucompat_encode(const struct cpucompat *c, uint8_t *buf, size_t len)
{
	const uint32_t *const f[] = FIELDS(c);

	_Static_assert(sizeof(f) / sizeof(f[0]) == 13, "CPUCOMPAT_WIRE_SIZE");
	if (len < CPUCOMPAT_WIRE_SIZE)
		return -ENOSPC;
	put32(buf, CPUCOMPAT_VERSION);
	put32(buf + 4, CPUCOMPAT_WIRE_SIZE);
	memcpy(buf + 8, c->vendor, 12);
	for (size_t i = 0; i < 13; i++)
		put32(buf + 20 + 4 * i, *f[i]);
	return CPUCOMPAT_WIRE_SIZE;
}

int cpucompat_decode(struct cpucompat *c, const uint8_t *buf, size_t len,
		     char *err, size_t errlen)
{
	uint32_t *const f[] = FIELDS(c);

	memset(c, 0, sizeof(*c));
	if (!buf || len < 8) {
		KVM_ERR(err, errlen, "cpucompat: %zu bytes, too short", len);
		return -EINVAL;
	}
	if (get32(buf) != CPUCOMPAT_VERSION) {
		KVM_ERR(err, errlen, "cpucompat: version %u, expected %d", get32(buf),
			CPUCOMPAT_VERSION);
		return -EPROTO;
	}
	if (get32(buf + 4) != CPUCOMPAT_WIRE_SIZE || len != CPUCOMPAT_WIRE_SIZE) {
		KVM_ERR(err, errlen, "cpucompat: size %u in %zu bytes, expected %d",
			get32(buf + 4), len, CPUCOMPAT_WIRE_SIZE);
		return -EINVAL;
	}
	for (int i = 0; i < 12; i++) {
		/* It ends up in messages: printable ASCII only. */
		if (buf[8 + i] < 0x20 || buf[8 + i] > 0x7e) {
			KVM_ERR(err, errlen, "cpucompat: vendor string is not printable");
			memset(c, 0, sizeof(*c));
			return -EINVAL;
		}
		c->vendor[i] = (char)buf[8 + i];
	}
	c->vendor[12] = 0;
	for (size_t i = 0; i < 13; i++)
		*f[i] = get32(buf + 20 + 4 * i);
	if (c->flags & ~CPUCOMPAT_F_ALL) {
		KVM_ERR(err, errlen, "cpucompat: unknown flags 0x%x", c->flags);
		memset(c, 0, sizeof(*c));
		return -EINVAL;
	}
	return 0;
}

/* ---- the decision ------------------------------------------------------ */

/* Appends to a message buffer without overflowing it. */
static void addf(char *buf, size_t len, size_t *pos, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void addf(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!buf || *pos >= len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
	va_end(ap);
	if (n > 0)
		*pos = *pos + (size_t)n < len ? *pos + (size_t)n : len;
}

int cpucompat_check(const struct cpucompat *s, const struct cpucompat *t,
		    char *why, size_t whylen)
{
	size_t pos = 0;
	bool bad = false, first = true;

	if (why && whylen)
		why[0] = 0;
	if (strncmp(s->vendor, t->vendor, 12) != 0) {
		addf(why, whylen, &pos, "CPU vendor differs: source %.12s, target %.12s",
		     s->vendor, t->vendor);
		return -ENOTSUP;
	}
	for (int r = 0; r < R_N; r++) {
		uint32_t missing = reg_val(s, r) & ~reg_val(t, r) & ~dynamic_bits[r];

		for (int bit = 0; bit < 32; bit++) {
			const char *name = NULL;

			if (!(missing & (1u << bit)))
				continue;
			for (size_t k = 0; k < NFEATS; k++)
				if (feats[k].reg == (enum reg)r && feats[k].bit == bit)
					name = feats[k].name;
			addf(why, whylen, &pos, "%s", first ? "target CPU lacks features the guest has: " : ", ");
			if (name)
				addf(why, whylen, &pos, "%s", name);
			else
				addf(why, whylen, &pos, "%s bit %d", reg_names[r], bit);
			first = false;
			bad = true;
		}
	}
	if ((s->xcr0_lo & ~t->xcr0_lo) || (s->xcr0_hi & ~t->xcr0_hi)) {
		addf(why, whylen, &pos, "%sXSAVE components 0x%llx missing on the target",
		     bad ? "; " : "",
		     (unsigned long long)(((uint64_t)(s->xcr0_hi & ~t->xcr0_hi) << 32) |
					  (s->xcr0_lo & ~t->xcr0_lo)));
		bad = true;
	}
	if (s->xsave_size > t->xsave_size) {
		addf(why, whylen, &pos, "%sXSAVE area %u bytes, target holds %u",
		     bad ? "; " : "", s->xsave_size, t->xsave_size);
		bad = true;
	}
	if (s->phys_bits > t->phys_bits) {
		addf(why, whylen, &pos, "%sguest has %u physical address bits, target %u",
		     bad ? "; " : "", s->phys_bits, t->phys_bits);
		bad = true;
	}
	/* Only when both sides know their frequency; a target that cannot
	 * measure its own cannot judge (and the KVM without GET_TSC_KHZ is
	 * too old to scale anyway). */
	if ((s->flags & CPUCOMPAT_F_TSC_KHZ) && (t->flags & CPUCOMPAT_F_TSC_KHZ) &&
	    !(t->flags & CPUCOMPAT_F_TSC_SCALING)) {
		uint64_t d = s->tsc_khz > t->tsc_khz ? s->tsc_khz - t->tsc_khz
						     : t->tsc_khz - s->tsc_khz;

		if (s->tsc_khz == 0 || d * 1000000ULL > (uint64_t)s->tsc_khz * TSC_TOL_PPM) {
			addf(why, whylen, &pos,
			     "%sTSC frequency %u kHz on the source, %u kHz on the target (more than %d ppm apart) and the target KVM cannot scale it (no KVM_CAP_TSC_CONTROL)",
			     bad ? "; " : "", s->tsc_khz, t->tsc_khz, TSC_TOL_PPM);
			bad = true;
		}
	}
	return bad ? -ENOTSUP : 0;
}

/* ---- test override ------------------------------------------------------ */

static int set_field(struct cpucompat *c, const char *name, char op,
		     const char *val, char *err, size_t errlen)
{
	static const char *const names[] = {
		"leaf1_ecx", "leaf1_edx", "leaf7_ebx", "leaf7_ecx", "leaf7_edx",
		"ext1_ecx", "ext1_edx", "xcr0_lo", "xcr0_hi", "xsave_size",
		"phys_bits", "tsc_khz", "flags",
	};
	uint32_t *const f[] = FIELDS(c);
	unsigned long long v;
	char *end;

	if (strcmp(name, "vendor") == 0) {
		if (op != '=' || strlen(val) != 12) {
			KVM_ERR(err, errlen, "cpucompat override: vendor=NAME needs 12 characters");
			return -EINVAL;
		}
		memcpy(c->vendor, val, 12);
		c->vendor[12] = 0;
		return 0;
	}
	errno = 0;
	v = strtoull(val, &end, 0);
	if (errno || end == val || *end || v > UINT32_MAX) {
		KVM_ERR(err, errlen, "cpucompat override: bad value '%s' for %s", val, name);
		return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i]) != 0)
			continue;
		if (op == '+')
			*f[i] |= (uint32_t)v;
		else if (op == '-')
			*f[i] &= ~(uint32_t)v;
		else
			*f[i] = (uint32_t)v;
		return 0;
	}
	KVM_ERR(err, errlen, "cpucompat override: unknown field '%s'", name);
	return -EINVAL;
}

static int set_feature(struct cpucompat *c, const char *name, bool on,
		       char *err, size_t errlen)
{
	for (size_t k = 0; k < NFEATS; k++) {
		if (strcasecmp(name, feats[k].name) != 0)
			continue;
		if (on)
			*reg_ptr(c, feats[k].reg) |= 1u << feats[k].bit;
		else
			*reg_ptr(c, feats[k].reg) &= ~(1u << feats[k].bit);
		return 0;
	}
	KVM_ERR(err, errlen, "cpucompat override: unknown feature '%s'", name);
	return -EINVAL;
}

int cpucompat_override(struct cpucompat *c, const char *spec, char *err,
		       size_t errlen)
{
	char *copy, *tok, *save = NULL;
	int ret = 0;

	if (!spec)
		return 0;
	copy = strdup(spec);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && !ret; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (!eq && (tok[0] == '-' || tok[0] == '+')) {
			ret = set_feature(c, tok + 1, tok[0] == '+', err, errlen);
		} else if (eq && eq > tok) {
			char op = '=';

			if (eq[-1] == '+' || eq[-1] == '-') {
				op = eq[-1];
				eq[-1] = 0;
			}
			*eq = 0;
			ret = set_field(c, tok, op, eq + 1, err, errlen);
		} else {
			KVM_ERR(err, errlen, "cpucompat override: cannot parse '%s'", tok);
			ret = -EINVAL;
		}
	}
	free(copy);
	return ret;
}
