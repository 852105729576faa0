/* The monitor's line protocol, parsed without a VM or a socket: a
 * client's bytes into lines, a line into a command and its arguments.
 * Everything here is untrusted input from whoever can reach the socket;
 * tests/fuzz/fuzz_monitor.c drives it. docs/monitor.md lists the commands. */
#ifndef MINIVMM_MONLINE_H
#define MINIVMM_MONLINE_H

#include <stddef.h>

#define MONLINE_MAX 1024 /* a line, its newline included, fits in this */

enum monline_cmd {
	MONLINE_EMPTY,         /* blank line: no reply but ok */
	MONLINE_HELP,
	MONLINE_INFO_STATUS,
	MONLINE_INFO_MIGRATE,
	MONLINE_STOP,
	MONLINE_CONT,
	MONLINE_QUIT,
	MONLINE_MIGRATE,        /* arg[0]: the URI */
	MONLINE_MIGRATE_CANCEL,
	MONLINE_START_POSTCOPY,
	MONLINE_RECOVER,        /* arg[0]: the URI to listen on */
	MONLINE_SET_PARAMETER,  /* arg[0]: name, arg[1]: value */
	MONLINE_UNKNOWN,        /* an unknown command or the wrong arguments */
};

struct monline {
	enum monline_cmd cmd;
	const char *arg[2]; /* into buf */
	char buf[MONLINE_MAX];
};

/* Splits line (NUL-terminated; longer than MONLINE_MAX - 1 is cut) into
 * words at blanks and names the command. */
void monline_parse(const char *line, struct monline *out);

/* A client's unread bytes buf[0..*len), NUL-terminated, cap the size of
 * buf: calls fn on each complete line (newline replaced by NUL) and moves
 * what follows to the front. Returns -1 when fn does, or when buf is full
 * without a newline (a line too long to be a command), else 0. */
int monline_split(char *buf, size_t *len, size_t cap,
		  int (*fn)(void *opaque, const char *line), void *opaque);

#endif
