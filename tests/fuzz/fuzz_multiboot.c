/* The Multiboot v1 loader (vmm/core/multiboot.c) on an image from the
 * buffer, into a guest RAM buffer of exactly its size (ASan guards both
 * ends). The first byte picks the RAM size and the command line's length. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/core/multiboot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t sizes[4] = { 1u << 20, 2u << 20, 3u << 20, 4u << 20 };
	struct mb_result r;
	char err[256], cmd[64];
	uint64_t low;
	size_t clen;
	uint8_t *ram;

	if (size < 1)
		return 0;
	low = sizes[data[0] & 3];
	clen = (size_t)(data[0] >> 2) % sizeof(cmd);
	if (clen > size - 1)
		clen = size - 1;
	memcpy(cmd, data + 1, clen);
	cmd[clen] = 0;
	ram = calloc(1, low);
	if (!ram)
		return 0;
	/* Low RAM and the total differ when RAM goes past the 4 GiB hole. */
	if (mb_load(ram, low, data[0] & 0x80 ? low + (1ULL << 32) : low, data + 1 + clen,
		    size - 1 - clen, cmd, &r, err, sizeof(err)) == 0 &&
	    (r.load_end > low || r.load_start > r.load_end || r.info_addr != MB_INFO_ADDR))
		abort();
	free(ram);
	return 0;
}
