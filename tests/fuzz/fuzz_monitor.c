/* The monitor's line protocol (vmm/monline.c): the buffer arrives as a
 * client's reads (each read's length from a byte of the input), is split
 * into lines and parsed; the arguments go where the monitor sends them
 * without a VM: a URI to transport_parse, a parameter to the table's
 * parser (a value it takes must format and parse back to itself). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/params.h"
#include "migrate/transport/transport.h"
#include "vmm/monline.h"

static int on_line(void *opaque, const char *line)
{
	struct mig_tunables t, t2;
	const struct mig_param *p;
	struct transport_addr a;
	struct monline l;
	char err[256], v[256], v2[256];

	(void)opaque;
	if (strlen(line) >= MONLINE_MAX)
		abort();
	monline_parse(line, &l);
	switch (l.cmd) {
	case MONLINE_MIGRATE:
		if (!l.arg[0])
			abort();
		transport_parse(l.arg[0], false, &a, err, sizeof(err));
		transport_parse(l.arg[0], true, &a, err, sizeof(err));
		break;
	case MONLINE_SET_PARAMETER:
		if (!l.arg[0] || !l.arg[1])
			abort();
		p = mig_param_by_name(l.arg[0]);
		mig_tunables_default(&t);
		if (!p || mig_param_set(&t, p, l.arg[1], err, sizeof(err)) < 0)
			break;
		mig_param_format(&t, p, v, sizeof(v));
		mig_tunables_default(&t2);
		if (mig_param_set(&t2, p, v, err, sizeof(err)) < 0)
			abort();
		mig_param_format(&t2, p, v2, sizeof(v2));
		if (strcmp(v, v2))
			abort();
		break;
	default:
		break;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char buf[MONLINE_MAX];
	size_t len = 0, off = 0;

	buf[0] = 0;
	while (off < size) {
		/* One read: up to what the buffer still takes, as client_event. */
		size_t n = (size_t)(data[off++] % 64) + 1, room = sizeof(buf) - 1 - len;

		if (n > size - off)
			n = size - off;
		if (n > room)
			n = room;
		memcpy(buf + len, data + off, n);
		off += n;
		len += n;
		buf[len] = 0;
		if (monline_split(buf, &len, sizeof(buf), on_line, NULL) < 0)
			len = 0; /* the client is dropped; the next one starts afresh */
	}
	return 0;
}
