#include "vmm/monline.h"

#include <stdio.h>
#include <string.h>

/* name, words after it (-1: any), command */
static const struct {
	const char *w0, *w1;
	int nargs;
	enum monline_cmd cmd;
} table[] = {
	{ "help", NULL, -1, MONLINE_HELP },
	{ "?", NULL, -1, MONLINE_HELP },
	{ "info", "status", 0, MONLINE_INFO_STATUS },
	{ "info", "migrate", 0, MONLINE_INFO_MIGRATE },
	{ "stop", NULL, 0, MONLINE_STOP },
	{ "cont", NULL, 0, MONLINE_CONT },
	{ "quit", NULL, 0, MONLINE_QUIT },
	{ "migrate", NULL, 1, MONLINE_MIGRATE },
	{ "migrate_cancel", NULL, 0, MONLINE_MIGRATE_CANCEL },
	{ "migrate_start_postcopy", NULL, 0, MONLINE_START_POSTCOPY },
	{ "migrate_recover", NULL, 1, MONLINE_RECOVER },
	{ "migrate_set_parameter", NULL, 2, MONLINE_SET_PARAMETER },
};

void monline_parse(const char *line, struct monline *out)
{
	char *w[4] = { 0 }, *save = NULL;
	int n = 0;

	snprintf(out->buf, sizeof(out->buf), "%s", line);
	out->arg[0] = out->arg[1] = NULL;
	/* A fourth word is kept only to tell "too many" from "just right". */
	for (char *t = strtok_r(out->buf, " \t\r", &save); t && n < 4;
	     t = strtok_r(NULL, " \t\r", &save))
		w[n++] = t;
	out->cmd = n ? MONLINE_UNKNOWN : MONLINE_EMPTY;
	for (size_t i = 0; n && i < sizeof(table) / sizeof(table[0]); i++) {
		int skip = table[i].w1 ? 2 : 1;

		if (strcmp(w[0], table[i].w0) || (table[i].w1 && (n < 2 || strcmp(w[1], table[i].w1))))
			continue;
		if (table[i].nargs >= 0 && n - skip != table[i].nargs)
			continue;
		out->cmd = table[i].cmd;
		if (table[i].nargs > 0)
			out->arg[0] = w[skip];
		if (table[i].nargs > 1)
			out->arg[1] = w[skip + 1];
		return;
	}
}

int monline_split(char *buf, size_t *len, size_t cap,
		  int (*fn)(void *opaque, const char *line), void *opaque)
{
	char *nl;

	while ((nl = memchr(buf, '\n', *len)) != NULL) {
		*nl = '\0';
		if (fn(opaque, buf) < 0)
			return -1;
		*len -= (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, *len);
		buf[*len] = '\0';
	}
	return *len >= cap - 1 ? -1 : 0;
}
