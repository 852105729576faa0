/* Multiboot/ELF loading, including truncated and hostile images. */
#include <elf.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/core/multiboot.h"

#define RAM_SIZE (8u << 20)
#define LOAD_ADDR 0x100000u

struct fixture {
	uint8_t *ram;
	uint8_t img[16384];
	size_t len;
	char err[256];
	struct mb_result r;
};

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* An ELF32 with one PT_LOAD at LOAD_ADDR whose first bytes after the
 * headers hold a multiboot header; code is a few marker bytes. */
static size_t make_elf(uint8_t *b, uint32_t paddr, uint32_t filesz, uint32_t memsz,
		       uint32_t entry, uint32_t mbflags)
{
	Elf32_Ehdr *e = (Elf32_Ehdr *)b;
	Elf32_Phdr *ph = (Elf32_Phdr *)(b + sizeof(*e));
	uint8_t *mb = b + 0x100;

	memset(b, 0, 16384);
	memcpy(e->e_ident, ELFMAG, SELFMAG);
	e->e_ident[EI_CLASS] = ELFCLASS32;
	e->e_ident[EI_DATA] = ELFDATA2LSB;
	e->e_ident[EI_VERSION] = EV_CURRENT;
	e->e_type = ET_EXEC;
	e->e_machine = EM_386;
	e->e_version = EV_CURRENT;
	e->e_entry = entry;
	e->e_phoff = sizeof(*e);
	e->e_phentsize = sizeof(*ph);
	e->e_phnum = 1;
	e->e_ehsize = sizeof(*e);
	ph->p_type = PT_LOAD;
	ph->p_offset = 0;
	ph->p_paddr = ph->p_vaddr = paddr;
	ph->p_filesz = filesz;
	ph->p_memsz = memsz;
	put32(mb, MB_HEADER_MAGIC);
	put32(mb + 4, mbflags);
	put32(mb + 8, (uint32_t)-(MB_HEADER_MAGIC + mbflags));
	memcpy(b + 0x200, "\xf4\xeb\xfe", 3);
	return filesz;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->ram = calloc(1, RAM_SIZE);
	assert_non_null(f->ram);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free(f->ram);
	free(f);
	return 0;
}

static int load(struct fixture *f, const char *cmdline)
{
	return mb_load(f->ram, RAM_SIZE, RAM_SIZE, f->img, f->len, cmdline, &f->r,
		       f->err, sizeof(f->err));
}

static void test_valid_elf(void **state)
{
	struct fixture *f = *state;
	uint32_t v;

	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x3000, LOAD_ADDR + 0x200, 0x3);
	memset(f->ram + LOAD_ADDR + 0x1000, 0xaa, 0x2000); /* bss must be zeroed */
	assert_int_equal(load(f, "wss=16 rate=max"), 0);
	assert_int_equal(f->r.entry, LOAD_ADDR + 0x200);
	assert_int_equal(f->r.info_addr, MB_INFO_ADDR);
	assert_memory_equal(f->ram + LOAD_ADDR + 0x200, "\xf4\xeb\xfe", 3);
	assert_int_equal(f->ram[LOAD_ADDR + 0x2fff], 0);
	memcpy(&v, f->ram + MB_INFO_ADDR, 4);
	assert_true(v & 0x1);   /* mem_lower/mem_upper */
	assert_true(v & 0x4);   /* cmdline */
	assert_true(v & 0x40);  /* mmap */
	memcpy(&v, f->ram + MB_INFO_ADDR + 8, 4);
	assert_int_equal(v, (RAM_SIZE - 0x100000) / 1024);
	memcpy(&v, f->ram + MB_INFO_ADDR + 16, 4);
	assert_string_equal((char *)f->ram + v, "wss=16 rate=max");
	memcpy(&v, f->ram + MB_INFO_ADDR + 44, 4);
	assert_int_equal(v % 24, 0);
	assert_true(v >= 4 * 24);
}

static void test_mmap_lists_high_ram(void **state)
{
	struct fixture *f = *state;
	uint32_t len, addr;
	uint64_t base, size;
	int found = 0;

	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, LOAD_ADDR + 0x200, 0x3);
	/* Pretend RAM continues above 4 GiB: the map must say so. */
	assert_int_equal(mb_load(f->ram, RAM_SIZE, RAM_SIZE + (1ull << 30), f->img, f->len,
				 "", &f->r, f->err, sizeof(f->err)), 0);
	memcpy(&len, f->ram + MB_INFO_ADDR + 44, 4);
	memcpy(&addr, f->ram + MB_INFO_ADDR + 48, 4);
	for (uint32_t off = 0; off < len; off += 24) {
		memcpy(&base, f->ram + addr + off + 4, 8);
		memcpy(&size, f->ram + addr + off + 12, 8);
		if (base == (4ull << 30) && size == (1ull << 30))
			found = 1;
	}
	assert_true(found);
}

static void test_not_multiboot(void **state)
{
	struct fixture *f = *state;

	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, LOAD_ADDR + 0x200, 0x3);
	memset(f->img + 0x100, 0, 12);
	assert_int_equal(load(f, ""), -ENOEXEC);
	assert_non_null(strstr(f->err, "not a Multiboot image"));
}

static void test_bad_checksum(void **state)
{
	struct fixture *f = *state;

	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, LOAD_ADDR + 0x200, 0x3);
	f->img[0x108] ^= 1;
	assert_int_equal(load(f, ""), -ENOEXEC);
}

static void test_not_elf(void **state)
{
	struct fixture *f = *state;

	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, LOAD_ADDR + 0x200, 0x3);
	f->img[1] = 'X'; /* ELF magic broken, no a.out kludge: nothing to load */
	assert_int_equal(load(f, ""), -ENOEXEC);
	assert_non_null(strstr(f->err, "neither ELF"));
}

static void test_segment_outside_ram(void **state)
{
	struct fixture *f = *state;

	f->len = make_elf(f->img, RAM_SIZE - 0x800, 0x1000, 0x1000, RAM_SIZE - 0x800, 0x3);
	assert_int_equal(load(f, ""), -ERANGE);
	assert_non_null(strstr(f->err, "outside guest RAM"));
	/* Wrapping arithmetic must not sneak past the check. */
	f->len = make_elf(f->img, 0xfffff000u, 0x1000, 0xffffffffu, 0xfffff000u, 0x3);
	assert_int_equal(load(f, ""), -ERANGE);
}

static void test_segment_over_info_area(void **state)
{
	struct fixture *f = *state;

	f->len = make_elf(f->img, 0x1000, 0x1000, 0x1000, 0x1200, 0x3);
	assert_int_equal(load(f, ""), -ERANGE);
	assert_non_null(strstr(f->err, "multiboot info"));
}

static void test_truncated_images(void **state)
{
	struct fixture *f = *state;
	size_t full = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, LOAD_ADDR + 0x200, 0x3);

	/* Every prefix must fail cleanly (ASan would catch an overread). */
	for (size_t n = 0; n < full; n += (n < 0x140 ? 1 : 97)) {
		uint8_t *copy = malloc(n ? n : 1);

		assert_non_null(copy);
		memcpy(copy, f->img, n);
		assert_int_not_equal(mb_load(f->ram, RAM_SIZE, RAM_SIZE, copy, n, "", &f->r,
					     f->err, sizeof(f->err)), 0);
		free(copy);
	}
}

static void test_hostile_phdrs(void **state)
{
	struct fixture *f = *state;
	Elf32_Ehdr *e = (Elf32_Ehdr *)f->img;
	Elf32_Phdr *ph = (Elf32_Phdr *)(f->img + sizeof(*e));

	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, LOAD_ADDR + 0x200, 0x3);
	e->e_phoff = 0xfffffff0u;
	assert_int_equal(load(f, ""), -ENOEXEC);
	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, LOAD_ADDR + 0x200, 0x3);
	e->e_phnum = 0xffff;
	assert_int_equal(load(f, ""), -ENOEXEC);
	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, LOAD_ADDR + 0x200, 0x3);
	ph->p_filesz = 0x2000; /* more than the file holds, more than memsz */
	assert_int_equal(load(f, ""), -ENOEXEC);
	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, LOAD_ADDR + 0x200, 0x3);
	ph->p_offset = 0xfffff000u;
	assert_int_equal(load(f, ""), -ENOEXEC);
	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, 0x500000, 0x3);
	assert_int_equal(load(f, ""), -ENOEXEC); /* entry outside the image */
	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, LOAD_ADDR + 0x200, 0x3);
	e->e_machine = EM_ARM;
	assert_int_equal(load(f, ""), -ENOEXEC);
}

static void test_unsupported_flags(void **state)
{
	struct fixture *f = *state;

	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, LOAD_ADDR + 0x200, 0x3 | 0x8);
	assert_int_equal(load(f, ""), -ENOTSUP);
}

static void test_aout_kludge(void **state)
{
	struct fixture *f = *state;
	uint8_t *mb;

	/* A raw binary: header at file offset 0x40, loaded at LOAD_ADDR. */
	memset(f->img, 0, sizeof(f->img));
	mb = f->img + 0x40;
	put32(mb, MB_HEADER_MAGIC);
	put32(mb + 4, 0x10003);
	put32(mb + 8, (uint32_t)-(MB_HEADER_MAGIC + 0x10003));
	put32(mb + 12, LOAD_ADDR + 0x40);  /* header_addr */
	put32(mb + 16, LOAD_ADDR);         /* load_addr */
	put32(mb + 20, LOAD_ADDR + 0x800); /* load_end_addr */
	put32(mb + 24, LOAD_ADDR + 0x2000);/* bss_end_addr */
	put32(mb + 28, LOAD_ADDR + 0x100); /* entry */
	f->img[0x100] = 0xf4;
	f->len = 0x800;
	assert_int_equal(load(f, ""), 0);
	assert_int_equal(f->r.entry, LOAD_ADDR + 0x100);
	assert_int_equal(f->ram[LOAD_ADDR + 0x100], 0xf4);
	/* load_end beyond the file */
	put32(mb + 20, LOAD_ADDR + 0x4000);
	assert_int_equal(load(f, ""), -ENOEXEC);
	/* header_addr below load_addr */
	put32(mb + 20, LOAD_ADDR + 0x800);
	put32(mb + 12, LOAD_ADDR - 0x40);
	assert_int_equal(load(f, ""), -ENOEXEC);
}

static void test_cmdline_too_long(void **state)
{
	struct fixture *f = *state;
	char *cmd = malloc(MB_CMDLINE_MAX + 10);

	assert_non_null(cmd);
	memset(cmd, 'a', MB_CMDLINE_MAX + 9);
	cmd[MB_CMDLINE_MAX + 9] = '\0';
	f->len = make_elf(f->img, LOAD_ADDR, 0x1000, 0x1000, LOAD_ADDR + 0x200, 0x3);
	assert_int_equal(load(f, cmd), -E2BIG);
	free(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_valid_elf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mmap_lists_high_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_multiboot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_checksum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_elf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_over_info_area, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_phdrs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsupported_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_aout_kludge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmdline_too_long, setup, teardown),
	};
	return cmocka_run_group_tests_name("multiboot", tests, NULL, NULL);
}
