/* The vmstate blob format (docs/vmstate.md): the section table, the writer
 * and the parser that validates a whole blob before any of it is used.
 * Saving is in vmstate_save.c, loading in vmstate_load.c. */
#include "migrate/state/vmstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/proto/stream.h"
#include "migrate/state/vmstate_int.h"
#include "vmm/core/kvm.h"

/* KVM's structs are the x86-64 kernel ABI and are copied as they are: on
 * x86 that is already little-endian. The sizes are part of the format. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "x86 only");
_Static_assert(sizeof(struct kvm_pit_state2) == 112, "ABI");
_Static_assert(sizeof(struct kvm_clock_data) == 48, "ABI");
_Static_assert(sizeof(struct kvm_irqchip) == 520, "ABI");
_Static_assert(sizeof(struct kvm_mp_state) == 4, "ABI");
_Static_assert(sizeof(struct kvm_regs) == 144, "ABI");
_Static_assert(sizeof(struct kvm_sregs) == 312, "ABI");
_Static_assert(sizeof(struct kvm_fpu) == 416, "ABI");
_Static_assert(sizeof(struct kvm_xcrs) == 392, "ABI");
_Static_assert(sizeof(struct kvm_debugregs) == 128, "ABI");
_Static_assert(sizeof(struct kvm_lapic_state) == 1024, "ABI");
_Static_assert(sizeof(struct kvm_vcpu_events) == 64, "ABI");
_Static_assert(sizeof(struct kvm_xsave) == 4096, "ABI");
_Static_assert(sizeof(struct kvm_msr_entry) == 16, "ABI");

/* ---- section table ------------------------------------------------- */

#define SEC(t, n, pc, sl, sz, fl) \
	.type = (t), .name = (n), .per_cpu = (pc), .slot = (sl), .size = (sz), .need_flag = (fl)
#define IOCS(g, s) .get = (g), .set = (s), .get_name = #g, .set_name = #s

/* vmstate's own sections; device sections are the device list's
 * (vmstate_dev.c), saved first. The order is Firecracker's, and load
 * relies on it as much as save. */
const struct vmstate_secdesc vmstate_secdescs[] = {
	{ SEC(VMSTATE_SEC_PIT2, "PIT2", false, VS_PIT2, sizeof(struct kvm_pit_state2), VMSTATE_F_PIT2),
	  IOCS(KVM_GET_PIT2, KVM_SET_PIT2) },
	/* Load adjusts the clock before setting it (vmstate_load.c). */
	{ SEC(VMSTATE_SEC_CLOCK, "CLOCK", false, VS_CLOCK, sizeof(struct kvm_clock_data), VMSTATE_F_CLOCK),
	  IOCS(KVM_GET_CLOCK, KVM_SET_CLOCK) },
	/* Irqchips last among the VM sections that load sets:
	 * KVM_SET_IRQCHIP re-evaluates the PIC output and re-delivers pending
	 * IOAPIC interrupts into the LAPICs, which must already hold their
	 * restored state. */
	{ SEC(VMSTATE_SEC_PIC_MASTER, "PIC_MASTER", false, VS_PIC_M, sizeof(struct kvm_irqchip), 0),
	  IOCS(KVM_GET_IRQCHIP, KVM_SET_IRQCHIP), .chip = KVM_IRQCHIP_PIC_MASTER },
	{ SEC(VMSTATE_SEC_PIC_SLAVE, "PIC_SLAVE", false, VS_PIC_S, sizeof(struct kvm_irqchip), 0),
	  IOCS(KVM_GET_IRQCHIP, KVM_SET_IRQCHIP), .chip = KVM_IRQCHIP_PIC_SLAVE },
	{ SEC(VMSTATE_SEC_IOAPIC, "IOAPIC", false, VS_IOAPIC, sizeof(struct kvm_irqchip), 0),
	  IOCS(KVM_GET_IRQCHIP, KVM_SET_IRQCHIP), .chip = KVM_IRQCHIP_IOAPIC },
	{ SEC(VMSTATE_SEC_TSC_KHZ, "TSC_KHZ", false, VS_TSC_KHZ, 4, 0) },
	/* MP_STATE first: reading it runs kvm_apic_accept_events(), which
	 * may change vCPU and LAPIC state that the later reads must see. */
	{ SEC(VMSTATE_SEC_MP_STATE, "MP_STATE", true, CS_MP, sizeof(struct kvm_mp_state), VMSTATE_F_MP_STATE),
	  IOCS(KVM_GET_MP_STATE, KVM_SET_MP_STATE) },
	/* REGS before VCPU_EVENTS: "SET_REGS clears pending exceptions
	 * unconditionally". */
	{ SEC(VMSTATE_SEC_REGS, "REGS", true, CS_REGS, sizeof(struct kvm_regs), 0),
	  IOCS(KVM_GET_REGS, KVM_SET_REGS) },
	{ SEC(VMSTATE_SEC_SREGS, "SREGS", true, CS_SREGS, sizeof(struct kvm_sregs), 0),
	  IOCS(KVM_GET_SREGS, KVM_SET_SREGS) },
	{ SEC(VMSTATE_SEC_XSAVE, "XSAVE", true, CS_XSAVE, 0, VMSTATE_F_XSAVE) },
	{ SEC(VMSTATE_SEC_FPU, "FPU", true, CS_FPU, sizeof(struct kvm_fpu), VMSTATE_F_FPU),
	  IOCS(KVM_GET_FPU, KVM_SET_FPU) },
	{ SEC(VMSTATE_SEC_XCRS, "XCRS", true, CS_XCRS, sizeof(struct kvm_xcrs), VMSTATE_F_XCRS),
	  IOCS(KVM_GET_XCRS, KVM_SET_XCRS) },
	{ SEC(VMSTATE_SEC_DEBUGREGS, "DEBUGREGS", true, CS_DR, sizeof(struct kvm_debugregs), VMSTATE_F_DEBUGREGS),
	  IOCS(KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS) },
	/* LAPIC after SREGS (which restores the APIC base) and before the
	 * MSRs (TSC_DEADLINE only sticks on a configured LAPIC). */
	{ SEC(VMSTATE_SEC_LAPIC, "LAPIC", true, CS_LAPIC, sizeof(struct kvm_lapic_state), 0),
	  IOCS(KVM_GET_LAPIC, KVM_SET_LAPIC) },
	{ SEC(VMSTATE_SEC_MSRS, "MSRS", true, CS_MSRS, 0, 0) },
	/* Last: "should probably be last to save" (Firecracker); it holds
	 * the pending exception/interrupt/NMI that the reads above leave. */
	{ SEC(VMSTATE_SEC_VCPU_EVENTS, "VCPU_EVENTS", true, CS_EVENTS, sizeof(struct kvm_vcpu_events), VMSTATE_F_VCPU_EVENTS),
	  IOCS(KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS) },
};
const size_t vmstate_nsecdescs = sizeof(vmstate_secdescs) / sizeof(vmstate_secdescs[0]);

static const struct vmstate_secdesc *secdesc_find(uint32_t type)
{
	for (size_t i = 0; i < vmstate_nsecdescs; i++)
		if (vmstate_secdescs[i].type == type)
			return &vmstate_secdescs[i];
	return NULL;
}

bool vmstate_is_dev_type(uint32_t type)
{
	if (secdesc_find(type))
		return false;
	return (type & VMSTATE_SEC_OPTIONAL) ||
	       (type >= VMSTATE_SEC_DEV_FIRST && type <= VMSTATE_SEC_DEV_LAST);
}

const char *vmstate_sec_name(uint32_t type)
{
	const struct vmstate_secdesc *d = secdesc_find(type);

	if (d)
		return d->name;
	return vmstate_is_dev_type(type) ? "device" : "unknown";
}

int vmstate_walk(bool per_cpu, uint32_t flags, const struct vmstate_handlers *h,
		 void *ctx)
{
	for (size_t i = 0; i < vmstate_nsecdescs; i++) {
		const struct vmstate_secdesc *d = &vmstate_secdescs[i];
		int ret;

		if (d->per_cpu != per_cpu || !vmstate_sec_in(d, flags))
			continue;
		if (d->type == VMSTATE_SEC_XSAVE)
			ret = h->xsave(d, ctx);
		else if (d->type == VMSTATE_SEC_MSRS)
			ret = h->msrs(d, ctx);
		else
			ret = h->plain(d, ctx);
		if (ret)
			return ret;
	}
	return 0;
}

/* ---- writer --------------------------------------------------------- */

static int wb_grow(struct vmstate_wbuf *b, size_t need)
{
	if (b->cap - b->len < need) {
		size_t ncap = b->cap ? b->cap : 16384;
		uint8_t *np;

		while (ncap - b->len < need)
			ncap *= 2;
		np = realloc(b->p, ncap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = ncap;
	}
	return 0;
}

int vmstate_wb_init(struct vmstate_wbuf *b)
{
	memset(b, 0, sizeof(*b));
	/* The header is written last, when nsections is known. */
	if (wb_grow(b, VMSTATE_HDR_SIZE))
		return -ENOMEM;
	b->len = VMSTATE_HDR_SIZE;
	return 0;
}

int vmstate_wb_put(struct vmstate_wbuf *b, uint32_t type, uint32_t vcpu,
		   const void *data, size_t len)
{
	size_t need = VMSTATE_SEC_HDR_SIZE + len;

	if (len > UINT32_MAX)
		return -E2BIG;
	if (wb_grow(b, need))
		return -ENOMEM;
	le_put32(b->p + b->len, type);
	le_put32(b->p + b->len + 4, vcpu);
	le_put32(b->p + b->len + 8, (uint32_t)len);
	memcpy(b->p + b->len + VMSTATE_SEC_HDR_SIZE, data, len);
	b->len += need;
	b->nsec++;
	return 0;
}

void vmstate_wb_finish(struct vmstate_wbuf *b, uint32_t ncpus,
		       uint64_t mem_size, uint32_t flags)
{
	memcpy(b->p, VMSTATE_MAGIC, 8);
	le_put32(b->p + 8, VMSTATE_VERSION);
	le_put32(b->p + 12, VMSTATE_HDR_SIZE);
	le_put32(b->p + 16, ncpus);
	le_put32(b->p + 20, b->nsec);
	le_put64(b->p + 24, mem_size);
	le_put32(b->p + 32, flags);
	le_put32(b->p + 36, 0);
}

/* ---- parse and validate -------------------------------------------- */

static int check_msrs(const struct vmstate_secref *s, uint32_t cpu, char *err,
		      size_t errlen)
{
	uint32_t n;

	if (s->len < MSRS_HDR) {
		KVM_ERR(err, errlen, "vmstate: vcpu%u MSRS section too short (%u bytes)", cpu, s->len);
		return -EINVAL;
	}
	n = le_get32(s->p);
	if (n > VMSTATE_MAX_MSRS || le_get32(s->p + 4) != 0 ||
	    s->len != MSRS_HDR + 16 * n) {
		KVM_ERR(err, errlen, "vmstate: vcpu%u MSRS section: count %u does not match %u bytes",
			cpu, n, s->len);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *ent = s->p + MSRS_HDR + 16 * i;
		uint32_t idx = le_get32(ent);

		/* Only allow-listed MSRs: a blob must not be able to poke
		 * arbitrary host-visible MSRs through KVM_SET_MSRS. */
		if (!vmstate_msr_allowed(idx) || le_get32(ent + 4) != 0) {
			KVM_ERR(err, errlen, "vmstate: vcpu%u MSR 0x%x is not on the allow-list", cpu, idx);
			return -EINVAL;
		}
		for (uint32_t j = 0; j < i; j++)
			if (le_get32(s->p + MSRS_HDR + 16 * j) == idx) {
				KVM_ERR(err, errlen, "vmstate: vcpu%u MSR 0x%x appears twice", cpu, idx);
				return -EINVAL;
			}
	}
	return 0;
}

static int check_payload(const struct vmstate_secdesc *d,
			 const struct vmstate_secref *s, uint32_t cpu,
			 char *err, size_t errlen)
{
	if (d->size && s->len != d->size) {
		KVM_ERR(err, errlen, "vmstate: %s section is %u bytes, expected %u",
			d->name, s->len, d->size);
		return -EINVAL;
	}
	switch (d->type) {
	case VMSTATE_SEC_XSAVE:
		if (s->len < sizeof(struct kvm_xsave) || s->len > VMSTATE_MAX_XSAVE) {
			KVM_ERR(err, errlen, "vmstate: vcpu%u XSAVE section is %u bytes (%zu..%u allowed)",
				cpu, s->len, sizeof(struct kvm_xsave), VMSTATE_MAX_XSAVE);
			return -EINVAL;
		}
		return 0;
	case VMSTATE_SEC_MSRS:
		return check_msrs(s, cpu, err, errlen);
	case VMSTATE_SEC_XCRS:
		if (le_get32(s->p) > KVM_MAX_XCRS) {
			KVM_ERR(err, errlen, "vmstate: vcpu%u XCRS count %u > %d", cpu,
				le_get32(s->p), KVM_MAX_XCRS);
			return -EINVAL;
		}
		return 0;
	case VMSTATE_SEC_PIC_MASTER:
	case VMSTATE_SEC_PIC_SLAVE:
	case VMSTATE_SEC_IOAPIC:
		if (le_get32(s->p) != d->chip) {
			KVM_ERR(err, errlen, "vmstate: %s section names chip %u", d->name,
				le_get32(s->p));
			return -EINVAL;
		}
		return 0;
	default:
		return 0;
	}
}

static int parse_header(const uint8_t *blob, size_t len,
			struct vmstate_parsed *ps, char *err, size_t errlen)
{
	uint32_t version, hdr_size;

	if (!blob || len < VMSTATE_HDR_SIZE) {
		KVM_ERR(err, errlen, "vmstate: blob of %zu bytes is shorter than its header", len);
		return -EINVAL;
	}
	if (memcmp(blob, VMSTATE_MAGIC, 8) != 0) {
		KVM_ERR(err, errlen, "vmstate: bad magic (not a minivmm vmstate blob)");
		return -EINVAL;
	}
	version = le_get32(blob + 8);
	hdr_size = le_get32(blob + 12);
	if (version != VMSTATE_VERSION || hdr_size != VMSTATE_HDR_SIZE) {
		KVM_ERR(err, errlen, "vmstate: version %u (header %u bytes) not supported; this build reads version %d",
			version, hdr_size, VMSTATE_VERSION);
		return -EPROTO;
	}
	ps->ncpus = le_get32(blob + 16);
	ps->nsec = le_get32(blob + 20);
	ps->mem_size = le_get64(blob + 24);
	ps->flags = le_get32(blob + 32);
	if (ps->ncpus < 1 || ps->ncpus > VM_MAX_CPUS) {
		KVM_ERR(err, errlen, "vmstate: vCPU count %u out of range 1..%d", ps->ncpus, VM_MAX_CPUS);
		return -EINVAL;
	}
	/* Found by fuzz_vmstate: a zero size passed the parser, and a file
	 * restore sizes the new VM from it. */
	if (ps->mem_size == 0 || ps->mem_size % 4096) {
		KVM_ERR(err, errlen, "vmstate: memory size %llu is not a positive number of pages",
			(unsigned long long)ps->mem_size);
		return -EINVAL;
	}
	if ((ps->flags & ~VMSTATE_F_ALL) || le_get32(blob + 36) != 0 ||
	    !(ps->flags & VMSTATE_F_XSAVE) == !(ps->flags & VMSTATE_F_FPU)) {
		KVM_ERR(err, errlen, "vmstate: invalid header flags 0x%x", ps->flags);
		return -EINVAL;
	}
	return 0;
}

/* Every section the header's flags make mandatory, for every vCPU. */
static int check_complete(const struct vmstate_parsed *ps, char *err,
			  size_t errlen)
{
	for (size_t k = 0; k < vmstate_nsecdescs; k++) {
		const struct vmstate_secdesc *d = &vmstate_secdescs[k];

		if (d->type & VMSTATE_SEC_OPTIONAL)
			continue;
		if (!vmstate_sec_in(d, ps->flags))
			continue;
		for (uint32_t c = 0; c < (d->per_cpu ? ps->ncpus : 1); c++) {
			if (!(d->per_cpu ? ps->cpu[c][d->slot].p : ps->vm[d->slot].p)) {
				if (d->per_cpu)
					KVM_ERR(err, errlen, "vmstate: vcpu%u has no %s section", c, d->name);
				else
					KVM_ERR(err, errlen, "vmstate: no %s section", d->name);
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* A section outside the table: a device's if it is VM-scope and in the
 * device range (or optional), kept for the device list to match. */
static int parse_other(struct vmstate_parsed *ps, uint32_t type, uint32_t vcpu,
		       const uint8_t *p, uint32_t len, char *err, size_t errlen)
{
	bool optional = type & VMSTATE_SEC_OPTIONAL;

	if (!vmstate_is_dev_type(type)) {
		KVM_ERR(err, errlen, "vmstate: unknown mandatory section type 0x%x", type);
		return -EPROTO;
	}
	if (vcpu != VMSTATE_VM_SCOPE) {
		if (optional)
			return 0; /* not a device's: someone's per-vCPU extra */
		KVM_ERR(err, errlen, "vmstate: device section 0x%x has bad vcpu index %u", type, vcpu);
		return -EINVAL;
	}
	for (int k = 0; k < ps->ndev; k++)
		if (ps->dev[k].type == type) {
			KVM_ERR(err, errlen, "vmstate: duplicate device section 0x%x", type);
			return -EINVAL;
		}
	if (ps->ndev == VMSTATE_MAX_DEVSECS) {
		KVM_ERR(err, errlen, "vmstate: more than %d device sections", VMSTATE_MAX_DEVSECS);
		return -EINVAL;
	}
	ps->dev[ps->ndev++] = (struct vmstate_devsec){ type, { p, len } };
	return 0;
}

int vmstate_parse(const uint8_t *blob, size_t len, struct vmstate_parsed *ps,
		  char *err, size_t errlen)
{
	size_t off = VMSTATE_HDR_SIZE;
	int ret;

	memset(ps, 0, sizeof(*ps));
	ret = parse_header(blob, len, ps, err, errlen);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < ps->nsec; i++) {
		const struct vmstate_secdesc *d;
		struct vmstate_secref *slot;
		uint32_t type, vcpu, slen;

		if (len - off < VMSTATE_SEC_HDR_SIZE) {
			KVM_ERR(err, errlen, "vmstate: truncated at section %u of %u (offset %zu)",
				i, ps->nsec, off);
			return -EINVAL;
		}
		type = le_get32(blob + off);
		vcpu = le_get32(blob + off + 4);
		slen = le_get32(blob + off + 8);
		off += VMSTATE_SEC_HDR_SIZE;
		if (slen > len - off) {
			KVM_ERR(err, errlen, "vmstate: section %u (%s) claims %u bytes, %zu left",
				i, vmstate_sec_name(type), slen, len - off);
			return -EINVAL;
		}
		d = secdesc_find(type);
		if (!d) {
			ret = parse_other(ps, type, vcpu, blob + off, slen, err, errlen);
			if (ret)
				return ret;
			off += slen;
			continue;
		}
		if (d->per_cpu ? vcpu >= ps->ncpus : vcpu != VMSTATE_VM_SCOPE) {
			KVM_ERR(err, errlen, "vmstate: %s section has bad vcpu index %u", d->name, vcpu);
			return -EINVAL;
		}
		if (!vmstate_sec_in(d, ps->flags)) {
			KVM_ERR(err, errlen, "vmstate: %s section present but its header flag is not set",
				d->name);
			return -EINVAL;
		}
		slot = d->per_cpu ? &ps->cpu[vcpu][d->slot] : &ps->vm[d->slot];
		if (slot->p) {
			KVM_ERR(err, errlen, "vmstate: duplicate %s section", d->name);
			return -EINVAL;
		}
		slot->p = blob + off;
		slot->len = slen;
		ret = check_payload(d, slot, d->per_cpu ? vcpu : 0, err, errlen);
		if (ret)
			return ret;
		off += slen;
	}
	if (off != len) {
		KVM_ERR(err, errlen, "vmstate: %zu trailing bytes after %u sections", len - off, ps->nsec);
		return -EINVAL;
	}
	return check_complete(ps, err, errlen);
}

int vmstate_check(const uint8_t *blob, size_t len, uint32_t *ncpus,
		  uint64_t *mem_size, char *err, size_t errlen)
{
	struct vmstate_parsed *ps = malloc(sizeof(*ps));
	int ret;

	if (!ps)
		return -ENOMEM;
	ret = vmstate_parse(blob, len, ps, err, errlen);
	if (!ret) {
		if (ncpus)
			*ncpus = ps->ncpus;
		if (mem_size)
			*mem_size = ps->mem_size;
	}
	free(ps);
	return ret;
}
