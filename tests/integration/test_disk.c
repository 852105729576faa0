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

/* ---- shared storage ------------------------------------------------ */

static long last_seq(struct proc *p, size_t from)
{
	long last = -1, seq;

	for (size_t i = from; i < p->nlines; i++)
		if (sscanf(p->lines[i].text, "seq=%ld", &seq) == 1)
			last = seq;
	return last;
}

/* A second VM on img is refused: someone holds its lock. */
static void expect_locked(const char *img)
{
	char mon[128];
	const char *argv[] = { NULL, "--kernel", DISK_ELF, "--mem", "64M", "--name", "dk-probe",
			       "--monitor", mon, "--disk", img, NULL };
	struct proc b;

	tmp_path(mon, sizeof(mon), "probe.sock");
	assert_int_equal(proc_run(&b, argv, 10000), 2);
	assert_true(proc_stderr_has(&b, "the image is in use by another VM"));
	proc_free(&b);
}

/* The disk guest migrates on shared storage: both sides name one image. */
static void test_shared_storage(void **state)
{
	char img[128], mon[128], addr[32];
	const char *extra[] = { "--migrate", addr, "--migrate-after", "1.5", NULL };
	struct proc s, t;
	long last, first = -1;

	(void)state;
	tmp_path(img, sizeof(img), "shared.img");
	tmp_path(mon, sizeof(mon), "s.sock");
	make_image(img, IMG_SIZE);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_port());
	/* The target names no disk: it takes the source's path. */
	h_spawn_target(&t, addr, NULL);
	spawn_guest(&s, img, "dk-shared", mon, extra);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	assert_true(proc_stderr_has(&s, "completed"));
	last = last_seq(&s, 0);
	assert_true(proc_wait_line(&t, 0, "seq=", T_BOOT) >= 0);
	assert_true(proc_wait_stderr(&t, "taken over from the source", 1000));
	sscanf(t.lines[proc_wait_line(&t, 0, "seq=", 1000)].text, "seq=%ld", &first);
	if (first != last + 1)
		fail_msg("heartbeat: source ended at seq=%ld, target began at seq=%ld", last, first);
	/* What the source wrote before the pause and the target after. */
	assert_true(proc_wait_line(&t, t.nlines, "seq=", 5000) >= 0);
	expect_verify(&t, true);
	/* The target holds the image now. */
	expect_locked(img);
	proc_send(&t, "q");
	assert_int_equal(proc_wait_exit(&t, 30000), 1);
	proc_free(&s);
	proc_free(&t);
	unlink(img);
}

/* A migration that fails for the disk's sake: the source keeps its guest,
 * its disk (lock included) and its data. */
static void shared_refused(const char *target_disk, off_t target_size, const char *why)
{
	static int n;
	char tag[16];
	char img[128], mon[128], addr[32], reply[4096];
	const char *topts[] = { "--disk", target_disk, NULL };
	struct proc s, t;
	size_t from;

	snprintf(tag, sizeof(tag), "src%d.img", n++);
	tmp_path(img, sizeof(img), tag);
	tmp_path(mon, sizeof(mon), "r.sock");
	make_image(img, IMG_SIZE);
	if (target_size)
		make_image(target_disk, target_size);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_port());
	h_spawn_target(&t, addr, topts);
	spawn_guest(&s, img, "dk-refused", mon, NULL);
	snprintf(reply, sizeof(reply), "migrate %s", addr);
	assert_int_equal(h_monitor(mon, reply, reply, sizeof(reply)), 0);
	if (!proc_wait_stderr(&s, "the guest keeps running here", T_MIG))
		fail_msg("the migration did not fail: %s", s.err ? s.err : "");
	if (!proc_stderr_has(&s, why))
		fail_msg("expected '%s' in: %s", why, s.err);
	/* The guest runs on and writes on: heartbeats with writes growing. */
	from = s.nlines;
	assert_true(proc_wait_line(&s, from, "seq=", 5000) >= 0);
	assert_true(proc_wait_line(&s, s.nlines + 3, "seq=", 5000) >= 0);
	expect_verify(&s, true);
	expect_locked(img);
	assert_int_equal(proc_count_prefix(&t, 0, "seq="), 0);
	proc_send(&s, "q");
	assert_int_equal(proc_wait_exit(&s, 30000), 1);
	proc_kill(&t, SIGTERM);
	proc_wait_exit(&t, 10000);
	proc_free(&s);
	proc_free(&t);
	unlink(img);
	unlink(target_disk);
}

static void test_target_without_image(void **state)
{
	char other[128];

	(void)state;
	tmp_path(other, sizeof(other), "missing.img");
	unlink(other);
	shared_refused(other, 0, "the VM's disk");
}

static void test_target_other_size(void **state)
{
	char other[128];

	(void)state;
	tmp_path(other, sizeof(other), "small.img");
	shared_refused(other, IMG_SIZE / 2, "here is 8388608 bytes");
}

/* Same size, another file: caught by the digest before READY, after the
 * source let go of its lock, which it takes back. */
static void test_target_other_file(void **state)
{
	char other[128];

	(void)state;
	tmp_path(other, sizeof(other), "other.img");
	shared_refused(other, IMG_SIZE, "not the image the source flushed");
}

/* ---- the disk streamed (--migrate-disk) ------------------------------ */

/* An image of mib MiB full of data (not holes: the bulk pass reads and
 * sends every byte). */
static void make_filled_image(const char *path, int mib)
{
	static uint8_t buf[1 << 20];
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

	assert_true(fd >= 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	for (int i = 0; i < mib; i++)
		assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
}

/* The migrated guest on the target: its verify passes on its disk, and it
 * exits with the guest's status; then both ends and both images go. */
static void finish_on_target(struct proc *s, struct proc *t, const char *img, const char *dst)
{
	assert_true(proc_wait_line(t, t->nlines, "seq=", 5000) >= 0);
	expect_verify(t, true);
	expect_locked(dst);
	proc_send(t, "q");
	assert_int_equal(proc_wait_exit(t, 30000), 1);
	proc_free(s);
	proc_free(t);
	unlink(img);
	unlink(dst);
}


static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* The guest writing while its disk travels in the stream to a path the
 * target creates. */
static void test_streamed(void **state)
{
	char img[128], dst[128], mon[128], addr[32];
	const char *extra[] = { "--migrate", addr, "--migrate-after", "1.5", "--migrate-disk", NULL };
	const char *topts[] = { "--disk", dst, NULL };
	struct proc s, t;

	(void)state;
	tmp_path(img, sizeof(img), "stream-src.img");
	tmp_path(dst, sizeof(dst), "stream-dst.img");
	tmp_path(mon, sizeof(mon), "st.sock");
	make_image(img, IMG_SIZE);
	unlink(dst);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_port());
	h_spawn_target(&t, addr, topts);
	/* Created at HELLO, before any RAM, at the source's size. */
	spawn_guest(&s, img, "dk-stream", mon, extra);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	assert_true(proc_stderr_has(&s, "disk copied"));
	assert_true(proc_wait_line(&t, 0, "seq=", T_BOOT) >= 0);
	assert_true(proc_wait_stderr(&t, "received from the source", 1000));
	assert_int_equal(file_size(dst), IMG_SIZE);
	/* dfresh=1: the blocks never written must have come over as zeros,
	 * the written ones with their last generation. */
	finish_on_target(&s, &t, img, dst);
}

/* The target dies in the bulk pass (the copy paced to take seconds): the
 * source's guest runs on, its disk intact. Started from the monitor, with
 * disk-copy set there. */
static void test_streamed_target_killed(void **state)
{
	char img[128], dst[128], mon[128], addr[32], cmd[128], reply[4096];
	const char *topts[] = { "--disk", dst, NULL };
	const char *extra[] = { "--max-bandwidth", "8M", NULL };
	struct proc s, t;

	(void)state;
	tmp_path(img, sizeof(img), "kill-src.img");
	tmp_path(dst, sizeof(dst), "kill-dst.img");
	tmp_path(mon, sizeof(mon), "k.sock");
	/* 64 MiB of data to copy at 8 MB/s: the bulk pass takes ~8 s. */
	make_filled_image(img, 64);
	unlink(dst);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_port());
	h_spawn_target(&t, addr, topts);
	{
		const char *argv[] = { NULL, "--kernel", DISK_ELF, "--mem", "64M", "--name", "dk-kill",
				       "--monitor", mon, "--disk", img, "--max-bandwidth", "8M",
				       "--append", "dwrite=300 dpattern=random dblocks=1024", NULL };

		(void)extra;
		assert_int_equal(proc_spawn(&s, argv), 0);
		assert_true(proc_wait_line(&s, 0, "seq=5 ", T_BOOT) >= 0);
	}
	assert_int_equal(h_monitor(mon, "migrate_set_parameter disk-copy on", reply, sizeof(reply)),
			 0);
	snprintf(cmd, sizeof(cmd), "migrate %s", addr);
	assert_int_equal(h_monitor(mon, cmd, reply, sizeof(reply)), 0);
	usleep(1500 * 1000);
	assert_int_equal(h_monitor(mon, "info migrate", reply, sizeof(reply)), 0);
	if (!strstr(reply, "status: active") || !strstr(reply, "round: 0"))
		fail_msg("not in the bulk pass 1.5 s in: %s", reply);
	proc_kill(&t, SIGKILL);
	proc_wait_exit(&t, 10000);
	if (!proc_wait_stderr(&s, "the guest keeps running here", T_MIG))
		fail_msg("the source did not give up: %s", s.err ? s.err : "");
	assert_true(proc_wait_line(&s, s.nlines + 3, "seq=", 5000) >= 0);
	expect_verify(&s, true);
	expect_locked(img);
	proc_send(&s, "q");
	assert_int_equal(proc_wait_exit(&s, 30000), 1);
	proc_free(&s);
	proc_free(&t);
	unlink(img);
	unlink(dst);
}


/* The disk's bulk pass runs on the main stream and the RAM's data
 * channels are quiet meanwhile: a pass longer than the target's idle
 * bound (300 s; 4 s here by MINIVMM_TEST_IDLE_MS, against an 8 s pass:
 * 16 MiB at 2 MB/s) must not fail them (it did: a 100 GiB disk at
 * 1 Gbit/s could not move). */
static void test_streamed_quiet_channels(void **state)
{
	char img[128], dst[128], mon[128], addr[32];
	const char *argv[] = { NULL, "--kernel", DISK_ELF, "--mem", "64M", "--name", "dk-quiet",
			       "--monitor", mon, "--disk", img, "--append",
			       "dwrite=100 dpattern=random dblocks=1024", "--migrate", addr,
			       "--migrate-after", "1", "--migrate-disk", "--max-bandwidth", "2M",
			       NULL };
	const char *topts[] = { "--disk", dst, NULL };
	struct proc s, t;

	(void)state;
	tmp_path(img, sizeof(img), "quiet-src.img");
	tmp_path(dst, sizeof(dst), "quiet-dst.img");
	tmp_path(mon, sizeof(mon), "quiet.sock");
	make_filled_image(img, IMG_SIZE >> 20);
	unlink(dst);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_port());
	setenv("MINIVMM_TEST_IDLE_MS", "4000", 1);
	h_spawn_target(&t, addr, topts);
	unsetenv("MINIVMM_TEST_IDLE_MS");
	assert_int_equal(proc_spawn(&s, argv), 0);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s; target: %s", s.err ? s.err : "", t.err ? t.err : "");
	assert_true(proc_wait_stderr(&t, "received from the source", 5000));
	assert_true(proc_wait_line(&t, 0, "seq=", T_BOOT) >= 0);
	finish_on_target(&s, &t, img, dst);
}

/* Post-copy with the disk streamed: post-copy defers RAM only, so the
 * disk's blocks written during its bulk pass must not all go in the pause.
 * 16 MiB of data at 8 MB/s (2 s), the guest writing 300 blocks/s, the
 * switch asked inside the bulk pass: the switch waits until the disk's
 * rest fits the downtime limit (it sent ~2 MB in the pause, 240-390 ms). */
static void test_streamed_postcopy(void **state)
{
	char img[128], dst[128], mon[128], addr[32], sstats[128], reply[4096] = "";
	/* Not dfresh: the blocks never written hold the fill, not zeros. */
	const char *argv[] = { NULL, "--kernel", DISK_ELF, "--mem", "64M", "--name", "dk-pc",
			       "--monitor", mon, "--disk", img, "--append",
			       "dwrite=300 dpattern=random dblocks=1024", "--migrate", addr,
			       "--migrate-after", "1", "--migrate-disk", "--postcopy",
			       "--max-bandwidth", "8M", "--stats-json", sstats, NULL };
	const char *topts[] = { "--disk", dst, NULL };
	struct proc s, t;

	(void)state;
	tmp_path(img, sizeof(img), "pc-src.img");
	tmp_path(dst, sizeof(dst), "pc-dst.img");
	tmp_path(mon, sizeof(mon), "pc.sock");
	tmp_path(sstats, sizeof(sstats), "pc-src.json");
	make_filled_image(img, IMG_SIZE >> 20);
	unlink(dst);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_port());
	h_spawn_target(&t, addr, topts);
	assert_int_equal(proc_spawn(&s, argv), 0);
	for (int i = 0; i < 100 && !strstr(reply, "status: active"); i++) {
		proc_pump(&s, 50);
		if (h_monitor(mon, "info migrate", reply, sizeof(reply)))
			reply[0] = '\0';
	}
	assert_non_null(strstr(reply, "round: 0"));
	assert_int_equal(h_monitor(mon, "migrate_start_postcopy", reply, sizeof(reply)), 0);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	assert_true(proc_stderr_has(&s, "switching to post-copy"));
	assert_true(proc_stderr_has(&s, "post-copy waits for the disk"));
	print_message("post-copy with the disk: downtime %.1f ms, %.0f rounds\n",
		      h_json_num(sstats, "downtime_ms"), h_json_num(sstats, "rounds"));
	if (h_json_num(sstats, "downtime_ms") > 150)
		fail_msg("downtime %.1f ms: the disk's rest went in the pause",
			 h_json_num(sstats, "downtime_ms"));
	assert_true(proc_wait_stderr(&t, "post-copy completed", 20000));
	assert_true(proc_stderr_has(&t, "received from the source"));
	unlink(sstats);
	finish_on_target(&s, &t, img, dst);
}

/* Streamed into a file of another size, or with no --disk: refused at
 * HELLO, the source keeps its guest. */
static void test_streamed_refused(void **state)
{
	char img[128], dst[128], mon[128], addr[32], reply[4096];
	const char *topts[] = { "--disk", dst, NULL };
	struct proc s, t;

	(void)state;
	tmp_path(img, sizeof(img), "ref-src.img");
	tmp_path(dst, sizeof(dst), "ref-dst.img");
	tmp_path(mon, sizeof(mon), "rf.sock");
	make_image(img, IMG_SIZE);
	make_image(dst, IMG_SIZE + 4096);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_port());
	h_spawn_target(&t, addr, topts);
	spawn_guest(&s, img, "dk-sref", mon, NULL);
	assert_int_equal(h_monitor(mon, "migrate_set_parameter disk-copy on", reply, sizeof(reply)),
			 0);
	snprintf(reply, sizeof(reply), "migrate %s", addr);
	assert_int_equal(h_monitor(mon, reply, reply, sizeof(reply)), 0);
	if (!proc_wait_stderr(&s, "the guest keeps running here", T_MIG))
		fail_msg("the migration did not fail: %s", s.err ? s.err : "");
	assert_true(proc_stderr_has(&s, "exists with 16781312 bytes"));
	assert_int_equal(file_size(dst), IMG_SIZE + 4096);
	proc_kill(&t, SIGTERM);
	proc_wait_exit(&t, 10000);
	proc_free(&t);
	/* A target without --disk. */
	h_spawn_target(&t, addr, NULL);
	snprintf(reply, sizeof(reply), "migrate %s", addr);
	assert_int_equal(h_monitor(mon, reply, reply, sizeof(reply)), 0);
	assert_true(proc_wait_stderr(&s, "start the target with --disk PATH", T_MIG));
	assert_true(proc_wait_line(&s, s.nlines + 2, "seq=", 5000) >= 0);
	expect_verify(&s, true);
	proc_send(&s, "q");
	assert_int_equal(proc_wait_exit(&s, 30000), 1);
	proc_kill(&t, SIGTERM);
	proc_wait_exit(&t, 10000);
	proc_free(&s);
	proc_free(&t);
	unlink(img);
	unlink(dst);
}

/* Streamed into a file system without room for the disk (an 8 MiB tmpfs
 * for a 16 MiB disk): refused at HELLO, nothing left behind there. */
static void test_streamed_no_room(void **state)
{
	char img[128], mnt[128], dst[160], mon[128], addr[32], cmd[300], reply[4096];
	const char *topts[] = { "--disk", dst, NULL };
	struct proc s, t;

	(void)state;
	tmp_path(img, sizeof(img), "room-src.img");
	tmp_path(mnt, sizeof(mnt), "small");
	tmp_path(mon, sizeof(mon), "nr.sock");
	snprintf(dst, sizeof(dst), "%s/dst.img", mnt);
	make_image(img, IMG_SIZE);
	assert_int_equal(mkdir(mnt, 0700), 0);
	snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=8m tmpfs %s", mnt);
	if (system(cmd) != 0) {
		rmdir(mnt);
		fail_msg("cannot mount a small tmpfs (root needed): %s", cmd);
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_port());
	h_spawn_target(&t, addr, topts);
	spawn_guest(&s, img, "dk-room", mon, (const char *[]){ "--migrate-disk", NULL });
	snprintf(reply, sizeof(reply), "migrate %s", addr);
	assert_int_equal(h_monitor(mon, reply, reply, sizeof(reply)), 0);
	if (!proc_wait_stderr(&s, "the guest keeps running here", T_MIG))
		fail_msg("the migration did not fail: %s", s.err ? s.err : "");
	assert_true(proc_stderr_has(&s, "no room for the VM's 16777216-byte disk"));
	assert_true(access(dst, F_OK) < 0);
	assert_true(proc_wait_line(&s, s.nlines + 2, "seq=", 5000) >= 0);
	expect_verify(&s, true);
	proc_send(&s, "q");
	assert_int_equal(proc_wait_exit(&s, 30000), 1);
	proc_kill(&t, SIGTERM);
	proc_wait_exit(&t, 10000);
	proc_free(&s);
	proc_free(&t);
	snprintf(cmd, sizeof(cmd), "umount %s", mnt);
	assert_int_equal(system(cmd), 0);
	rmdir(mnt);
	unlink(img);
}

/* Cold migration with the disk: a snapshot carrying it, restored with the
 * disk written to a new path and nothing else told again. */
static void test_cold_with_disk(void **state)
{
	char img[128], dst[128], mon[128], snap[160], uri[200], cmd[256], reply[4096];
	const char *extra[] = { "--migrate-disk", NULL };
	const char *targv[] = { NULL, "--incoming", uri, "--disk", dst, NULL };
	struct proc s, t;

	(void)state;
	tmp_path(img, sizeof(img), "cold-src.img");
	tmp_path(dst, sizeof(dst), "cold-dst.img");
	tmp_path(mon, sizeof(mon), "c.sock");
	tmp_path(snap, sizeof(snap), "cold.snap");
	snprintf(uri, sizeof(uri), "file:%s", snap);
	make_image(img, IMG_SIZE);
	unlink(dst);
	spawn_guest(&s, img, "dk-cold", mon, extra);
	snprintf(cmd, sizeof(cmd), "migrate %s", uri);
	assert_int_equal(h_monitor(mon, cmd, reply, sizeof(reply)), 0);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("snapshot failed: %s", s.err ? s.err : "");
	assert_true(proc_stderr_has(&s, "disk copied"));
	/* The image stays with the source: remove it, the snapshot has it. */
	unlink(img);
	assert_int_equal(proc_spawn(&t, targv), 0);
	assert_true(proc_wait_line(&t, 0, "seq=", T_BOOT) >= 0);
	assert_true(proc_wait_stderr(&t, "received from the source", 1000));
	assert_int_equal(file_size(dst), IMG_SIZE);
	expect_verify(&t, true);
	proc_send(&t, "q");
	assert_int_equal(proc_wait_exit(&t, 30000), 1);
	proc_free(&s);
	proc_free(&t);
	unlink(dst);
	unlink(snap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_verify_and_lock),
		cmocka_unit_test(test_bad_disk),
		cmocka_unit_test(test_shared_storage),
		cmocka_unit_test(test_target_without_image),
		cmocka_unit_test(test_target_other_size),
		cmocka_unit_test(test_target_other_file),
		cmocka_unit_test(test_streamed),
		cmocka_unit_test(test_streamed_target_killed),
		cmocka_unit_test(test_streamed_postcopy),
		cmocka_unit_test(test_streamed_quiet_channels),
		cmocka_unit_test(test_streamed_refused),
		cmocka_unit_test(test_streamed_no_room),
		cmocka_unit_test(test_cold_with_disk),
	};

	return cmocka_run_group_tests(tests, kvm_setup, NULL);
}
