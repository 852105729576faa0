/* The guest page-table walk (vmm/core/gwalk.c) on tables built in a RAM
 * buffer: every paging mode with its page sizes, offsets kept, and
 * hostile tables (entries outside RAM, not present, pointing at
 * themselves) answered with an error and no read outside the buffer. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/core/gwalk.h"

#define RAM (4u << 20)
#define P 1ull
#define W 2ull
#define PS (1ull << 7)

#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LMA (1ull << 10)

static uint8_t ram[RAM];
static unsigned reads;

static int rd(void *ctx, uint64_t gpa, void *buf, unsigned len)
{
	(void)ctx;
	assert_true(len == 4 || len == 8);
	reads++;
	if (gpa > RAM || len > RAM - gpa)
		return -EFAULT;
	memcpy(buf, ram + gpa, len);
	return 0;
}

static void put64(uint64_t gpa, uint64_t v)
{
	memcpy(ram + gpa, &v, 8);
}

static void put32(uint64_t gpa, uint32_t v)
{
	memcpy(ram + gpa, &v, 4);
}

static int xlate(const struct gwalk_mode *m, uint64_t la, uint64_t *gpa)
{
	reads = 0;
	return gwalk_translate(m, rd, NULL, la, gpa);
}

static void test_paging_off(void **state)
{
	struct gwalk_mode m = { .cr0 = 0x11 };
	uint64_t gpa;

	(void)state;
	assert_int_equal(xlate(&m, 0x123456789abcull, &gpa), 0);
	assert_int_equal(gpa, 0x56789abcull); /* 32-bit linear addresses */
	assert_int_equal(reads, 0);
}

/* 4-level: PML4 at 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000. */
static struct gwalk_mode four_level(void)
{
	memset(ram, 0, RAM);
	put64(0x1000 + 1 * 8, 0x2000 | P | W);       /* PML4[1]: 512 GiB up */
	put64(0x2000 + 0 * 8, 0x3000 | P | W);       /* PDPT[0] */
	put64(0x2000 + 2 * 8, 0x00000000 | P | PS);  /* PDPT[2]: 1 GiB page at 0 */
	put64(0x3000 + 0 * 8, 0x4000 | P | W);       /* PD[0] */
	put64(0x3000 + 1 * 8, 0x200000 | P | PS);    /* PD[1]: 2 MiB page at 2 MiB */
	put64(0x4000 + 5 * 8, 0x7000 | P | W);       /* PT[5]: 4 KiB page at 0x7000 */
	put64(0x4000 + 6 * 8, 0x8000);               /* PT[6]: not present */
	return (struct gwalk_mode){ .cr0 = CR0_PG | 0x11, .cr3 = 0x1000, .cr4 = CR4_PAE,
				    .efer = EFER_LMA | (1 << 8) };
}

static void test_four_level(void **state)
{
	struct gwalk_mode m = four_level();
	uint64_t base = 1ull << 39, gpa;

	(void)state;
	assert_int_equal(xlate(&m, base + 0x5123, &gpa), 0);
	assert_int_equal(gpa, 0x7123);
	assert_int_equal(reads, 4);
	assert_int_equal(xlate(&m, base + 0x200000 + 0x1234, &gpa), 0);
	assert_int_equal(gpa, 0x201234);
	assert_int_equal(xlate(&m, base + (2ull << 30) + 0x3456789, &gpa), 0);
	assert_int_equal(gpa, 0x3456789);
	assert_int_equal(xlate(&m, base + 0x6000, &gpa), -ENOENT);
	assert_int_equal(xlate(&m, 0x5000, &gpa), -ENOENT); /* PML4[0] empty */
	/* A sign-extended address uses bits 39-47 for its PML4 index. */
	put64(0x1000 + 511 * 8, 0x2000 | P);
	assert_int_equal(xlate(&m, 0xffffff8000005010ull, &gpa), 0);
	assert_int_equal(gpa, 0x7010);
}

static void test_five_level(void **state)
{
	struct gwalk_mode m = four_level();
	uint64_t gpa;

	(void)state;
	put64(0x9000 + 3 * 8, 0x1000 | P); /* PML5[3] -> the PML4 above */
	m.cr3 = 0x9000;
	m.cr4 |= CR4_LA57;
	assert_int_equal(xlate(&m, (3ull << 48) + (1ull << 39) + 0x5abc, &gpa), 0);
	assert_int_equal(gpa, 0x7abc);
	assert_int_equal(reads, 5);
}

static void test_pae(void **state)
{
	struct gwalk_mode m = { .cr0 = CR0_PG | 0x11, .cr3 = 0x1020, .cr4 = CR4_PAE };
	uint64_t gpa;

	(void)state;
	memset(ram, 0, RAM);
	put64(0x1020 + 3 * 8, 0x3000 | P);   /* PDPTE[3]: 3-4 GiB */
	put64(0x3000 + 4 * 8, 0x4000 | P);   /* PD[4] */
	put64(0x3000 + 5 * 8, 0x200000 | P | PS);
	put64(0x4000 + 2 * 8, 0x9000 | P);
	assert_int_equal(xlate(&m, 0xc0802abcull, &gpa), 0);
	assert_int_equal(gpa, 0x9abc);
	assert_int_equal(xlate(&m, 0xc0a54321ull, &gpa), 0);
	assert_int_equal(gpa, 0x254321);
	assert_int_equal(xlate(&m, 0x00002abcull, &gpa), -ENOENT);
}

static void test_legacy32(void **state)
{
	struct gwalk_mode m = { .cr0 = CR0_PG | 0x11, .cr3 = 0x1000 };
	uint64_t gpa;

	(void)state;
	memset(ram, 0, RAM);
	put32(0x1000 + 1 * 4, 0x2000 | P);        /* PDE[1]: 4-8 MiB */
	put32(0x2000 + 3 * 4, 0x5000 | P);
	put32(0x1000 + 2 * 4, 0x00c00000 | P | PS | (1u << 13)); /* 4 MiB page, PSE-36 bit 32 */
	assert_int_equal(xlate(&m, 0x00403abcull, &gpa), 0);
	assert_int_equal(gpa, 0x5abc);
	/* Without CR4.PSE, PS is ignored: the entry is a page table. */
	assert_int_equal(xlate(&m, 0x00812345ull, &gpa), -EFAULT);
	m.cr4 = CR4_PSE;
	assert_int_equal(xlate(&m, 0x00812345ull, &gpa), 0);
	assert_int_equal(gpa, 0x100c12345ull);
}

static void test_hostile_tables(void **state)
{
	struct gwalk_mode m = four_level();
	uint64_t base = 1ull << 39, gpa;

	(void)state;
	/* A table outside RAM, at the top of the physical address space. */
	put64(0x3000 + 0 * 8, 0x000ffffffffff000ull | P);
	assert_int_equal(xlate(&m, base + 0x5000, &gpa), -EFAULT);
	/* CR3 outside RAM. */
	m = four_level();
	m.cr3 = 0x000ffffffffff000ull;
	assert_int_equal(xlate(&m, base, &gpa), -EFAULT);
	/* Every level pointing at itself: the walk still ends after four
	 * reads, with a 4 KiB page inside that table. */
	m = four_level();
	memset(ram + 0x1000, 0, 0x1000);
	for (int i = 0; i < 512; i++)
		put64(0x1000 + (uint64_t)i * 8, 0x1000 | P);
	assert_int_equal(xlate(&m, 0x0000123456789abcull, &gpa), 0);
	assert_int_equal(gpa, 0x1abc);
	assert_int_equal(reads, 4);
	/* The last entry of RAM read as a table entry: in range, no more. */
	m.cr3 = RAM - 0x1000;
	put64(RAM - 8, 0);
	assert_int_equal(xlate(&m, ~0ull, &gpa), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paging_off),
		cmocka_unit_test(test_four_level),
		cmocka_unit_test(test_five_level),
		cmocka_unit_test(test_pae),
		cmocka_unit_test(test_legacy32),
		cmocka_unit_test(test_hostile_tables),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
