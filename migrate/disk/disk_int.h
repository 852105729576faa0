/* The disk section's streamed mode (--migrate-disk), internal to
 * migrate/disk/: the bulk pass, the dirty-block rounds and their load. */
#ifndef MINIVMM_MIGRATE_DISK_INT_H
#define MINIVMM_MIGRATE_DISK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/disk/reader.h"

struct blkdev;
struct mig_src_env;
struct mig_tgt_env;
struct mig_pending;
struct stream_hdr;
struct disk_writer;

struct disk_copy {
	struct blkdev *bd;
	uint8_t *buf;        /* a dirty run: DISK_RD_ROOM, then DISK_DATA_MAX of data */
	struct disk_reader rd; /* the bulk pass's reader */
	uint64_t *harvest;   /* the bits of one dirty round */
	uint64_t last_ns;    /* the last harvest (or the start of tracking) */
	bool tracking;
	uint64_t data_bytes, zero_bytes, hole_bytes, dirty_blocks;
	uint64_t bulk_ns, read_ns; /* the bulk pass; its reader's time in reads */
	uint32_t dirty_rounds;
};

/* track: keep a dirty-block bitmap (a live migration; a snapshot's one
 * pass runs in the pause). */
int disk_copy_setup(struct disk_copy *dc, struct blkdev *bd, bool track, char *err,
		    size_t errlen);
/* Every byte of the image: holes (SEEK_DATA/SEEK_HOLE) and zero blocks as
 * zero runs, the rest as data. */
int disk_copy_bulk(struct disk_copy *dc, struct mig_src_env *env);
/* The blocks written since the last harvest. */
int disk_copy_dirty(struct disk_copy *dc, struct mig_src_env *env);
void disk_copy_pending(struct disk_copy *dc, struct mig_pending *out);
void disk_copy_cleanup(struct disk_copy *dc);

/* Target: one DISK_DATA frame, checked, queued to the writer. */
int disk_copy_load(struct disk_writer *w, struct blkdev *bd, struct mig_tgt_env *env,
		   const struct stream_hdr *h);

#endif
