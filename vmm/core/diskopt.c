#include "vmm/core/diskopt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)

const char *disk_cache_name(enum disk_cache c)
{
	return c == DISK_CACHE_NONE ? "none" : "writeback";
}

int disk_opts_parse(const char *s, struct disk_opts *o, char *err, size_t errlen)
{
	const char *comma = strchr(s, ',');
	size_t plen = comma ? (size_t)(comma - s) : strlen(s);
	char buf[128], *save = NULL, *kv;

	memset(o, 0, sizeof(*o));
	if (plen == 0)
		FAIL("--disk: a path is required (--disk PATH[,readonly][,cache=none|writeback])");
	if (plen >= sizeof(o->path))
		FAIL("--disk: the path is too long");
	memcpy(o->path, s, plen);
	if (comma) {
		if (strlen(comma + 1) >= sizeof(buf))
			FAIL("--disk: too many options");
		snprintf(buf, sizeof(buf), "%s", comma + 1);
		for (kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
			if (!strcmp(kv, "readonly") || !strcmp(kv, "readonly=on")) {
				o->readonly = true;
			} else if (!strcmp(kv, "readonly=off")) {
				o->readonly = false;
			} else if (!strcmp(kv, "cache=none")) {
				o->cache = DISK_CACHE_NONE;
			} else if (!strcmp(kv, "cache=writeback")) {
				o->cache = DISK_CACHE_WRITEBACK;
			} else {
				FAIL("--disk: unknown option '%s' (readonly, cache=none, cache=writeback; "
				     "a path with a comma cannot be given)", kv);
			}
		}
	}
	o->set = true;
	return 0;
}
