/* A guest page-table walk: linear address to guest-physical, in whatever
 * paging mode the vCPU is in (none, 32-bit, PAE, 4- or 5-level). Pure:
 * the tables are read through a callback, so it runs on any buffer. */
#ifndef MINIVMM_GWALK_H
#define MINIVMM_GWALK_H

#include <stdint.h>

/* The control registers that choose the mode (kvm_sregs' fields). */
struct gwalk_mode {
	uint64_t cr0, cr3, cr4, efer;
};

/* Reads len (4 or 8) bytes of guest-physical memory at gpa; 0 or -EFAULT
 * when [gpa, gpa+len) is not RAM. */
typedef int (*gwalk_read_fn)(void *ctx, uint64_t gpa, void *buf, unsigned len);

/* Reserved bits are not checked, so a table the CPU would refuse may
 * still translate; PAE's PDPTEs are read from memory, not from the
 * registers the CPU loaded them into.
 * 0 and *gpa; -ENOENT when la is not mapped; -EFAULT when a table the
 * walk needs lies outside RAM (the guest's tables are its own business:
 * any value is walked safely). */
int gwalk_translate(const struct gwalk_mode *m, gwalk_read_fn rd, void *ctx, uint64_t la,
		    uint64_t *gpa);

#endif
