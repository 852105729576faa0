/* Integration-test harness: runs minivmm (the sanitizer build by default,
 * $MINIVMM overrides) as a child with its stdin, stdout and stderr on
 * pipes, timestamps every stdout line, and waits for lines, exit or time. */
#ifndef MINIVMM_HARNESS_H
#define MINIVMM_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The guests and the time limits the integration tests share. */
#define COUNTER "build/guests/counter.elf"
#define DIRTY "build/guests/dirty.elf"
#define NET_ELF "build/guests/net.elf"
#define T_BOOT 20000
#define T_MIG 60000

struct proc_line {
	double t_ms; /* arrival, ms since the harness started */
	char *text;  /* without the newline */
};

struct proc {
	pid_t pid;
	int in_fd, out_fd, err_fd;
	char partial[4096];
	size_t partial_len;
	struct proc_line *lines;
	size_t nlines, cap;
	char *err;      /* all of stderr */
	size_t err_len;
	bool exited;
	int status;     /* exit code, or 128 + signal */
};

/* Path of the minivmm binary under test. */
const char *h_minivmm(void);
double h_now_ms(void);
/* Fails the calling test loudly when /dev/kvm is absent. */
void h_require_kvm(void);

/* argv[0] is replaced by h_minivmm() when it is NULL. */
int proc_spawn(struct proc *p, const char **argv);
/* Reads whatever is available for up to timeout_ms; false once the child
 * has exited and its pipes are drained. */
bool proc_pump(struct proc *p, int timeout_ms);
/* Index of the first line >= from that contains needle, waiting up to
 * timeout_ms; -1 on timeout or exit. */
long proc_wait_line(struct proc *p, size_t from, const char *needle, int timeout_ms);
/* Waits for exit; returns the status, or -1 (and kills) on timeout. */
int proc_wait_exit(struct proc *p, int timeout_ms);
int proc_send(struct proc *p, const char *s);
void proc_kill(struct proc *p, int sig);
void proc_free(struct proc *p);
/* Counts lines from `from` whose text starts with prefix. */
size_t proc_count_prefix(struct proc *p, size_t from, const char *prefix);
bool proc_stderr_has(struct proc *p, const char *needle);
/* Waits up to timeout_ms until stderr contains needle (the line waits
 * above match stdout). */
bool proc_wait_stderr(struct proc *p, const char *needle, int timeout_ms);

/* Runs argv to completion (timeout_ms), returning its exit status; the
 * process record is left for inspection (free it). */
int proc_run(struct proc *p, const char **argv, int timeout_ms);

/* A monitor command over a unix socket; reply body into buf (NUL-ended).
 * Returns 0 on `ok`, 1 on `error:`, -1 when the socket fails. */
int h_monitor(const char *path, const char *cmd, char *buf, size_t cap);

/* Preamble + HELLO (stream version, RAM, vCPUs, name, claimed pid) with a
 * CPU description that asks for nothing but this host's vendor, into b
 * (24 + 96 + 72 bytes); returns the length. For hand-made streams. */
size_t h_hello(uint8_t *b, uint32_t version, uint64_t mem, uint32_t cpus, const char *name,
	       uint32_t pid);

/* TCP ports for one test binary: from 20000 + (pid * salt-dependent
 * spread) % 10000, below the ephemeral range (32768+), one after another;
 * a different salt per binary keeps concurrent binaries apart. */
void h_ports_init(int salt);
int h_port(void);

/* Spawns `minivmm --incoming addr` plus extra (NULL-terminated, may be
 * NULL) and waits until it listens; fails the test otherwise. */
void h_spawn_target(struct proc *t, const char *addr, const char **extra);

/* Little-endian fields, for the tests that write streams by hand. */
void h_put32(uint8_t *p, uint32_t v);
void h_put64(uint8_t *p, uint64_t v);

/* A number (or true/false, "completed" = 1) from a stats JSON file; fails
 * the test when the file or the key is missing. */
double h_json_num(const char *path, const char *key);

#endif
