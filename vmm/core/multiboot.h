/* Multiboot v1 loader: parses an image (ELF32/ELF64 or the a.out-kludge
 * address fields) and writes it plus the multiboot information structure
 * into guest RAM. Pure: it only touches the buffer it is given, so the
 * unit tests feed it hostile images without /dev/kvm. */
#ifndef MINIVMM_MULTIBOOT_H
#define MINIVMM_MULTIBOOT_H

#include <stddef.h>
#include <stdint.h>

#define MB_HEADER_MAGIC 0x1badb002u
#define MB_BOOT_MAGIC 0x2badb002u
#define MB_SEARCH_LEN 8192
/* Where the loader puts its own structures in guest RAM. */
#define MB_INFO_ADDR 0x1000u
#define MB_MMAP_ADDR 0x1100u
#define MB_LOADER_NAME_ADDR 0x1f00u
#define MB_CMDLINE_ADDR 0x2000u
#define MB_CMDLINE_MAX 0x2000u
#define MB_RESERVED_END (MB_CMDLINE_ADDR + MB_CMDLINE_MAX)

struct mb_result {
	uint32_t entry;
	uint32_t info_addr;
	uint64_t load_start; /* lowest byte the kernel occupies */
	uint64_t load_end;   /* one past the highest (bss included) */
};

/* low_ram: guest RAM from GPA 0 (low_size bytes); total_ram: all RAM (for
 * the memory map, which also lists RAM above 4 GiB). */
int mb_load(uint8_t *low_ram, uint64_t low_size, uint64_t total_ram,
	    const uint8_t *img, size_t img_len, const char *cmdline,
	    struct mb_result *out, char *err, size_t errlen);

#endif
