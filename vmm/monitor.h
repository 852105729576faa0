/* The monitor: a unix socket per VM speaking a line protocol. Each request
 * is one line; each reply is zero or more lines of text ending with a line
 * `ok` or `error: MESSAGE`. See docs/monitor.md. */
#ifndef MINIVMM_MONITOR_H
#define MINIVMM_MONITOR_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "vmm/evloop.h"

#define MONITOR_MAX_CLIENTS 8
#define MONITOR_LINE_MAX 1024
/* Replies a client has not read yet: past this it is dropped, so a
 * client that never reads cannot wedge the event loop or grow memory. */
#define MONITOR_OUT_MAX (64 * 1024)

struct vm;
struct mig_params;

struct monitor_client {
	struct ev_handler h;
	struct monitor *mon;
	char buf[MONITOR_LINE_MAX];
	size_t len;
	char *out;          /* unsent reply bytes (the socket is non-blocking) */
	size_t out_len;
	bool want_out;      /* EPOLLOUT armed */
};

struct monitor {
	struct vm *vm;
	struct evloop *loop;
	char path[PATH_MAX];
	ino_t ino;
	struct ev_handler listen;
	struct monitor_client *clients[MONITOR_MAX_CLIENTS];
	const struct mig_params *mig_defaults;
};

/* 0 when dir is a directory (not a symlink) owned by this user and not
 * writable by group or others, else -EPERM (or -errno): anyone who can
 * write there can swap a VM's monitor socket for their own. */
int monitor_check_dir(const char *dir);
/* Where NAME's socket lives by default (the directory made 0700 and
 * checked with monitor_check_dir). */
int monitor_default_path(const char *name, char *out, size_t len);
/* How long a probe or query waits for a VM's monitor: a wedged VM must
 * not wedge the one asking. */
#define MONITOR_PROBE_TIMEOUT_MS 2000
/* -EADDRINUSE when a live VM answers on path (its pid in *pid if known). */
int monitor_probe(const char *path, pid_t *pid);
/* One command to the VM at path, bounded by MONITOR_PROBE_TIMEOUT_MS;
 * as monitor_request. */
int monitor_query(const char *path, const char *cmd, char *reply, size_t cap);
/* Binds path. With takeover, a live socket there is replaced atomically
 * (the target of a same-host migration taking over the source's name). */
int monitor_open(struct monitor *m, struct vm *vm, struct evloop *loop,
		 const char *path, bool takeover, char *err, size_t errlen);
/* Unlinks the socket only if it is still ours. */
void monitor_close(struct monitor *m);
/* Runs one command line against vm, writing the reply body to out.
 * Returns 0 or -errno (the caller turns that into `error: ...`); msg gets
 * the error text. */
int monitor_exec(struct monitor *m, const char *line, FILE *out, char *msg,
		 size_t msglen);

/* Client side, for `minivmm --migrate` without --kernel. */
int monitor_connect(const char *path, char *err, size_t errlen);
/* Sends cmd and reads the reply body into reply; returns 0 on `ok`,
 * -EIO with the error text in reply on `error:`. */
int monitor_request(int fd, const char *cmd, char *reply, size_t cap);

#endif
