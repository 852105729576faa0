/* Boot path: read the kernel file, load it as Multiboot, point the boot
 * vCPU at its entry. The other vCPUs wait for INIT/SIPI (in-kernel LAPIC). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/core/multiboot.h"
#include "vmm/core/vcpu.h"
#include "vmm/core/vm.h"

#define BOOT_MAX_IMAGE (512ULL << 20)

int vm_load_kernel(struct vm *vm, const char *path, const char *append,
		   char *err, size_t errlen)
{
	struct mb_result r;
	struct stat st;
	uint8_t *img;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode) || st.st_size == 0) {
		snprintf(err, errlen, "%s: not a regular, non-empty file", path);
		ret = -EINVAL;
		goto out_close;
	}
	if ((uint64_t)st.st_size > BOOT_MAX_IMAGE) {
		snprintf(err, errlen, "%s: image larger than %llu MiB", path,
			 BOOT_MAX_IMAGE >> 20);
		ret = -EFBIG;
		goto out_close;
	}
	img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (img == MAP_FAILED) {
		ret = -errno;
		snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno));
		goto out_close;
	}
	ret = mb_load(vm->ram, vm->slots[0].size, vm->ram_size, img,
		      (size_t)st.st_size, append ? append : "", &r, err, errlen);
	munmap(img, (size_t)st.st_size);
	if (ret) {
		char msg[256];

		snprintf(msg, sizeof(msg), "%s", err);
		snprintf(err, errlen, "%s: %s", path, msg);
		goto out_close;
	}
	ret = vcpu_set_multiboot_entry(&vm->vcpus[0], r.entry, r.info_addr, err, errlen);
out_close:
	close(fd);
	return ret;
}
