/* Guest page-table walk (gwalk.h). Only what translation needs: present
 * bits, large pages and the address fields. Access rights, accessed and
 * dirty bits are the guest's and are neither checked nor set. */
#include "vmm/core/gwalk.h"

#include <errno.h>

#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LMA (1ull << 10)

#define PTE_P 1ull
#define PTE_PS (1ull << 7)
#define ADDR_MASK 0x000ffffffffff000ull

static int read_entry(gwalk_read_fn rd, void *ctx, uint64_t gpa, unsigned len, uint64_t *e)
{
	uint32_t v32;
	int ret;

	if (len == 4) {
		ret = rd(ctx, gpa, &v32, 4);
		*e = v32;
	} else {
		ret = rd(ctx, gpa, e, 8);
	}
	if (ret)
		return ret;
	return (*e & PTE_P) ? 0 : -ENOENT;
}

/* 64-bit entries, 9 bits per level: 4- and 5-level paging, and PAE below
 * its four PDPTEs. Large pages are allowed at the levels that map 1 GiB
 * and 2 MiB. */
static int walk64(gwalk_read_fn rd, void *ctx, uint64_t table, int levels, uint64_t la,
		  uint64_t *gpa)
{
	for (int l = levels; l >= 1; l--) {
		unsigned shift = 12 + 9 * (unsigned)(l - 1);
		uint64_t e;
		int ret = read_entry(rd, ctx, table + ((la >> shift) & 0x1ff) * 8, 8, &e);

		if (ret)
			return ret;
		if (l == 1 || ((l == 2 || l == 3) && (e & PTE_PS))) {
			uint64_t span = 1ull << shift;

			*gpa = (e & ADDR_MASK & ~(span - 1)) | (la & (span - 1));
			return 0;
		}
		table = e & ADDR_MASK;
	}
	return -ENOENT; /* not reached: level 1 always returns */
}

static int walk_pae(gwalk_read_fn rd, void *ctx, const struct gwalk_mode *m, uint64_t la,
		    uint64_t *gpa)
{
	uint64_t pdpte;
	int ret = read_entry(rd, ctx, (m->cr3 & 0xffffffe0ull) + ((la >> 30) & 3) * 8, 8, &pdpte);

	if (ret)
		return ret;
	return walk64(rd, ctx, pdpte & ADDR_MASK, 2, la & 0x3fffffffull, gpa);
}

static int walk32(gwalk_read_fn rd, void *ctx, const struct gwalk_mode *m, uint64_t la,
		  uint64_t *gpa)
{
	uint64_t pde, pte;
	int ret = read_entry(rd, ctx, (m->cr3 & 0xfffff000ull) + ((la >> 22) & 0x3ff) * 4, 4, &pde);

	if (ret)
		return ret;
	if ((m->cr4 & CR4_PSE) && (pde & PTE_PS)) {
		/* PSE-36: bits 13-20 of the entry are address bits 32-39. */
		*gpa = (pde & 0xffc00000ull) | (((pde >> 13) & 0xff) << 32) | (la & 0x3fffffull);
		return 0;
	}
	ret = read_entry(rd, ctx, (pde & 0xfffff000ull) + ((la >> 12) & 0x3ff) * 4, 4, &pte);
	if (ret)
		return ret;
	*gpa = (pte & 0xfffff000ull) | (la & 0xfffull);
	return 0;
}

int gwalk_translate(const struct gwalk_mode *m, gwalk_read_fn rd, void *ctx, uint64_t la,
		    uint64_t *gpa)
{
	if (!(m->cr0 & CR0_PG)) {
		*gpa = (m->efer & EFER_LMA) ? la : (la & 0xffffffffull);
		return 0;
	}
	if (m->efer & EFER_LMA)
		return walk64(rd, ctx, m->cr3 & ADDR_MASK, (m->cr4 & CR4_LA57) ? 5 : 4, la, gpa);
	la &= 0xffffffffull;
	if (m->cr4 & CR4_PAE)
		return walk_pae(rd, ctx, m, la, gpa);
	return walk32(rd, ctx, m, la, gpa);
}
