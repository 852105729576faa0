/* The guest page-table walk (vmm/core/gwalk.c) on tables the input
 * writes: the first 40 bytes are CR0, CR3, CR4, EFER and the linear
 * address, the rest is guest RAM (ASan guards its end). The source walks
 * a running guest's tables at a post-copy switch (vmm/core/hotpages.c). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/core/gwalk.h"

struct ram {
	const uint8_t *p;
	size_t len;
	unsigned reads;
};

static int rd(void *ctx, uint64_t gpa, void *buf, unsigned len)
{
	struct ram *r = ctx;

	if (len != 4 && len != 8)
		abort();
	if (++r->reads > 5) /* deeper than any mode's tables */
		abort();
	if (gpa > r->len || len > r->len - gpa)
		return -EFAULT;
	memcpy(buf, r->p + gpa, len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gwalk_mode m;
	struct ram r = { 0 };
	uint64_t la, gpa;
	uint8_t *copy;
	int ret;

	if (size < 40)
		return 0;
	memcpy(&m.cr0, data, 8);
	memcpy(&m.cr3, data + 8, 8);
	memcpy(&m.cr4, data + 16, 8);
	memcpy(&m.efer, data + 24, 8);
	memcpy(&la, data + 32, 8);
	copy = malloc(size - 40 + 1); /* +1: an empty RAM still allocates */
	if (!copy)
		return 0;
	memcpy(copy, data + 40, size - 40);
	r.p = copy;
	r.len = size - 40;
	ret = gwalk_translate(&m, rd, &r, la, &gpa);
	if (ret != 0 && ret != -ENOENT && ret != -EFAULT)
		abort();
	free(copy);
	return 0;
}
