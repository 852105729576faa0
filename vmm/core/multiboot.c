#include "vmm/core/multiboot.h"

#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "vmm/core/vm.h"

#define MB_FLAG_PAGE_ALIGN 0x1u
#define MB_FLAG_MEMINFO 0x2u
#define MB_FLAG_VIDEO 0x4u
#define MB_FLAG_AOUT_KLUDGE 0x10000u
#define MB_SUPPORTED_REQUIRED (MB_FLAG_PAGE_ALIGN | MB_FLAG_MEMINFO | MB_FLAG_VIDEO)

#define MBI_MEM 0x1u
#define MBI_CMDLINE 0x4u
#define MBI_MMAP 0x40u
#define MBI_LOADER_NAME 0x200u

struct mb_header {
	uint32_t magic, flags, checksum;
	uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
};

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void wr64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* Checks [addr, addr+len) against low RAM and the loader's own area. */
static int check_range(uint64_t addr, uint64_t len, uint64_t low_size,
		       char *err, size_t errlen)
{
	uint64_t end;

	if (__builtin_add_overflow(addr, len, &end) || end > low_size) {
		snprintf(err, errlen,
			 "segment at 0x%llx (+0x%llx bytes) lies outside guest RAM (%llu MiB)",
			 (unsigned long long)addr, (unsigned long long)len,
			 (unsigned long long)(low_size >> 20));
		return -ERANGE;
	}
	if (len && addr < MB_RESERVED_END && end > MB_INFO_ADDR) {
		snprintf(err, errlen,
			 "segment at 0x%llx overlaps the multiboot info area 0x%x-0x%x",
			 (unsigned long long)addr, MB_INFO_ADDR, MB_RESERVED_END);
		return -ERANGE;
	}
	return 0;
}

static void note_extent(struct mb_result *r, uint64_t addr, uint64_t len)
{
	if (addr < r->load_start)
		r->load_start = addr;
	if (addr + len > r->load_end)
		r->load_end = addr + len;
}

/* One program header, normalised from ELF32 or ELF64. */
struct seg {
	uint32_t type;
	uint64_t offset, paddr, filesz, memsz;
};

static void read_phdr(const uint8_t *p, bool is64, struct seg *s)
{
	if (is64) {
		Elf64_Phdr h;

		memcpy(&h, p, sizeof(h));
		*s = (struct seg){ h.p_type, h.p_offset, h.p_paddr, h.p_filesz, h.p_memsz };
	} else {
		Elf32_Phdr h;

		memcpy(&h, p, sizeof(h));
		*s = (struct seg){ h.p_type, h.p_offset, h.p_paddr, h.p_filesz, h.p_memsz };
	}
}

static int load_elf(uint8_t *ram, uint64_t low_size, const uint8_t *img,
		    size_t len, struct mb_result *r, char *err, size_t errlen)
{
	bool is64 = img[EI_CLASS] == ELFCLASS64;
	uint64_t phoff, entry;
	uint16_t phnum, phentsize, machine;
	int loaded = 0;

	if (img[EI_CLASS] != ELFCLASS32 && !is64) {
		snprintf(err, errlen, "ELF: unknown class %u", img[EI_CLASS]);
		return -ENOEXEC;
	}
	if (img[EI_DATA] != ELFDATA2LSB) {
		snprintf(err, errlen, "ELF: not little-endian");
		return -ENOEXEC;
	}
	if (len < (is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr))) {
		snprintf(err, errlen, "ELF: truncated header");
		return -ENOEXEC;
	}
	if (is64) {
		Elf64_Ehdr h;

		memcpy(&h, img, sizeof(h));
		phoff = h.e_phoff; phnum = h.e_phnum; phentsize = h.e_phentsize;
		machine = h.e_machine; entry = h.e_entry;
	} else {
		Elf32_Ehdr h;

		memcpy(&h, img, sizeof(h));
		phoff = h.e_phoff; phnum = h.e_phnum; phentsize = h.e_phentsize;
		machine = h.e_machine; entry = h.e_entry;
	}
	if (machine != EM_386 && machine != EM_X86_64) {
		snprintf(err, errlen, "ELF: machine %u is not x86", machine);
		return -ENOEXEC;
	}
	if (phnum == 0 || phentsize < (is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr)) ||
	    phoff > len || (uint64_t)phnum * phentsize > len - phoff) {
		snprintf(err, errlen, "ELF: program headers outside the file");
		return -ENOEXEC;
	}
	if (entry > 0xffffffffULL) {
		snprintf(err, errlen, "ELF: entry point 0x%llx is above 4 GiB",
			 (unsigned long long)entry);
		return -ENOEXEC;
	}
	for (uint16_t i = 0; i < phnum; i++) {
		struct seg s;
		int ret;

		read_phdr(img + phoff + (uint64_t)i * phentsize, is64, &s);
		if (s.type != PT_LOAD || s.memsz == 0)
			continue;
		if (s.filesz > s.memsz || s.offset > len || s.filesz > len - s.offset) {
			snprintf(err, errlen, "ELF: segment %u points outside the file", i);
			return -ENOEXEC;
		}
		ret = check_range(s.paddr, s.memsz, low_size, err, errlen);
		if (ret)
			return ret;
		memcpy(ram + s.paddr, img + s.offset, s.filesz);
		memset(ram + s.paddr + s.filesz, 0, s.memsz - s.filesz);
		note_extent(r, s.paddr, s.memsz);
		loaded++;
	}
	if (!loaded) {
		snprintf(err, errlen, "ELF: no loadable segment");
		return -ENOEXEC;
	}
	if (entry < r->load_start || entry >= r->load_end) {
		snprintf(err, errlen, "ELF: entry point 0x%llx is outside the loaded image",
			 (unsigned long long)entry);
		return -ENOEXEC;
	}
	r->entry = (uint32_t)entry;
	return 0;
}

static int load_aout(uint8_t *ram, uint64_t low_size, const uint8_t *img,
		     size_t len, size_t hdr_off, const struct mb_header *h,
		     struct mb_result *r, char *err, size_t errlen)
{
	uint64_t file_off, load_len, bss_end, end;
	int ret;

	/* header_addr corresponds to hdr_off in the file. */
	if (h->load_addr > h->header_addr || h->header_addr - h->load_addr > hdr_off) {
		snprintf(err, errlen, "multiboot: load_addr/header_addr are inconsistent");
		return -ENOEXEC;
	}
	file_off = hdr_off - (h->header_addr - h->load_addr);
	if (h->load_end_addr == 0) {
		load_len = len - file_off;
	} else {
		if (h->load_end_addr < h->load_addr) {
			snprintf(err, errlen, "multiboot: load_end_addr below load_addr");
			return -ENOEXEC;
		}
		load_len = (uint64_t)h->load_end_addr - h->load_addr;
	}
	if (load_len > len - file_off) {
		snprintf(err, errlen, "multiboot: image shorter than load_end_addr says");
		return -ENOEXEC;
	}
	end = h->load_addr + load_len;
	bss_end = h->bss_end_addr ? h->bss_end_addr : end;
	if (bss_end < end) {
		snprintf(err, errlen, "multiboot: bss_end_addr below the loaded image");
		return -ENOEXEC;
	}
	ret = check_range(h->load_addr, bss_end - h->load_addr, low_size, err, errlen);
	if (ret)
		return ret;
	memcpy(ram + h->load_addr, img + file_off, load_len);
	memset(ram + end, 0, bss_end - end);
	note_extent(r, h->load_addr, bss_end - h->load_addr);
	if (h->entry_addr < h->load_addr || h->entry_addr >= bss_end) {
		snprintf(err, errlen, "multiboot: entry_addr 0x%x is outside the image",
			 h->entry_addr);
		return -ENOEXEC;
	}
	r->entry = h->entry_addr;
	return 0;
}

static void add_mmap(uint8_t *ram, uint32_t *off, uint64_t base, uint64_t len,
		     uint32_t type)
{
	uint8_t *e = ram + MB_MMAP_ADDR + *off;

	wr32(e, 20); /* size of the entry, not counting this field */
	wr64(e + 4, base);
	wr64(e + 12, len);
	wr32(e + 20, type);
	*off += 24;
}

static void write_info(uint8_t *ram, uint64_t low_size, uint64_t total_ram,
		       const char *cmdline)
{
	uint8_t *mbi = ram + MB_INFO_ADDR;
	static const char loader[] = "minivmm";
	uint32_t mmap_len = 0;
	uint64_t high = total_ram > low_size ? total_ram - low_size : 0;
	size_t clen = strlen(cmdline);

	memset(mbi, 0, MB_RESERVED_END - MB_INFO_ADDR);
	add_mmap(ram, &mmap_len, 0, 0x9fc00, 1);
	add_mmap(ram, &mmap_len, 0x9fc00, 0x400, 2);
	add_mmap(ram, &mmap_len, 0xf0000, 0x10000, 2);
	add_mmap(ram, &mmap_len, 0x100000, low_size - 0x100000, 1);
	if (high)
		add_mmap(ram, &mmap_len, VM_HIGH_MEM_START, high, 1);
	if (clen >= MB_CMDLINE_MAX)
		clen = MB_CMDLINE_MAX - 1;
	memcpy(ram + MB_CMDLINE_ADDR, cmdline, clen);
	memcpy(ram + MB_LOADER_NAME_ADDR, loader, sizeof(loader));

	wr32(mbi + 0, MBI_MEM | MBI_CMDLINE | MBI_MMAP | MBI_LOADER_NAME);
	wr32(mbi + 4, 640);                                  /* mem_lower, KiB */
	wr32(mbi + 8, (uint32_t)((low_size - 0x100000) >> 10)); /* mem_upper */
	wr32(mbi + 16, MB_CMDLINE_ADDR);
	wr32(mbi + 44, mmap_len);
	wr32(mbi + 48, MB_MMAP_ADDR);
	wr32(mbi + 64, MB_LOADER_NAME_ADDR);
}

int mb_load(uint8_t *low_ram, uint64_t low_size, uint64_t total_ram,
	    const uint8_t *img, size_t img_len, const char *cmdline,
	    struct mb_result *out, char *err, size_t errlen)
{
	size_t search = img_len < MB_SEARCH_LEN ? img_len : MB_SEARCH_LEN;
	struct mb_header h;
	size_t off;
	int ret;

	memset(out, 0, sizeof(*out));
	out->load_start = UINT64_MAX;
	if (low_size < 2ULL << 20) {
		snprintf(err, errlen, "guest RAM too small for a multiboot kernel");
		return -EINVAL;
	}
	if (strlen(cmdline) >= MB_CMDLINE_MAX) {
		snprintf(err, errlen, "command line longer than %u bytes", MB_CMDLINE_MAX - 1);
		return -E2BIG;
	}
	for (off = 0; off + 12 <= search; off += 4) {
		if (rd32(img + off) == MB_HEADER_MAGIC &&
		    rd32(img + off) + rd32(img + off + 4) + rd32(img + off + 8) == 0)
			break;
	}
	if (off + 12 > search) {
		snprintf(err, errlen, "not a Multiboot image (no header in the first %d bytes)",
			 MB_SEARCH_LEN);
		return -ENOEXEC;
	}
	memset(&h, 0, sizeof(h));
	memcpy(&h, img + off, img_len - off < sizeof(h) ? img_len - off : sizeof(h));
	if ((h.flags & 0xffff) & ~MB_SUPPORTED_REQUIRED) {
		snprintf(err, errlen, "multiboot: image requires unsupported features (flags 0x%x)",
			 h.flags);
		return -ENOTSUP;
	}
	if (img_len >= 4 && memcmp(img, ELFMAG, SELFMAG) == 0 &&
	    !(h.flags & MB_FLAG_AOUT_KLUDGE)) {
		ret = load_elf(low_ram, low_size, img, img_len, out, err, errlen);
	} else if (h.flags & MB_FLAG_AOUT_KLUDGE) {
		if (img_len - off < sizeof(h)) {
			snprintf(err, errlen, "multiboot: header truncated");
			return -ENOEXEC;
		}
		ret = load_aout(low_ram, low_size, img, img_len, off, &h, out, err, errlen);
	} else {
		snprintf(err, errlen, "multiboot: neither ELF nor a.out-kludge addresses");
		return -ENOEXEC;
	}
	if (ret)
		return ret;
	write_info(low_ram, low_size, total_ram, cmdline);
	out->info_addr = MB_INFO_ADDR;
	return 0;
}
