/* The --disk option: PATH[,readonly][,cache=none|writeback] (a raw image).
 * Pure (unit-tested); the image itself is vmm/core/blkdev.c's. */
#ifndef MINIVMM_DISKOPT_H
#define MINIVMM_DISKOPT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

enum disk_cache {
	DISK_CACHE_WRITEBACK = 0, /* the host's page cache; FLUSH is fdatasync */
	DISK_CACHE_NONE,          /* O_DIRECT: no host cache between guest and image */
};

struct disk_opts {
	bool set;
	char path[PATH_MAX];
	bool readonly;
	enum disk_cache cache;
	/* Not from the command line: a migration target opens the image
	 * but takes its lock only when the source has let it go
	 * (blkdev_activate). */
	bool defer_lock;
	/* A migration target that receives the disk in the stream: the
	 * image is written even if the guest sees it read-only; fresh: it
	 * was created empty for this migration (zero runs need no writing). */
	bool copy_target;
	bool fresh;
};

/* Fills o from s; -EINVAL with a one-line message naming the bad part. */
int disk_opts_parse(const char *s, struct disk_opts *o, char *err, size_t errlen);
const char *disk_cache_name(enum disk_cache c);

#endif
