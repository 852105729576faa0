/* Migration statistics: the figures docs/stats-json.md defines, kept live
 * for `info migrate` and written as JSON (schema "minivmm-migration-stats/1",
 * docs/stats-json.md). */
#ifndef MINIVMM_MIGRATE_STATS_H
#define MINIVMM_MIGRATE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define STATS_SCHEMA "minivmm-migration-stats/1"

struct stats_round {
	uint32_t round;
	double start_ms;          /* since the migrate command */
	double duration_ms;
	uint64_t dirty_pages;     /* pages the sync yielded (round 0: RAM pages) */
	uint64_t pages_sent;      /* normal + zero */
	uint64_t bytes;           /* socket bytes of this round */
	double bw_estimate_Bps;   /* estimate after this round */
	double dirty_rate_pps;    /* dirty_pages / time since the previous sync */
	double expected_downtime_ms; /* computed at this round's sync */
	uint32_t throttle_pct;    /* share of the time the vCPUs were held in its pass */
	double sync_ms;           /* this round's dirty sync (bitmap copy or ring harvest) */
};

enum stats_role { STATS_SOURCE, STATS_TARGET };
enum stats_result { STATS_ACTIVE, STATS_COMPLETED, STATS_CANCELLED, STATS_FAILED };

struct stats {
	enum stats_role role;
	enum stats_result result; /* STATS_ACTIVE until it ended */
	char error[512];
	uint32_t downtime_limit_ms;
	uint64_t max_bandwidth_Bps;
	uint64_t ram_bytes;
	uint32_t vcpus;
	double setup_ms, total_ms, downtime_ms, restore_ms;
	uint64_t bytes_total;
	uint64_t pages_normal, pages_zero, pages_skipped;
	uint64_t pages_populated_late; /* source: found by a sync outside the trusted set */
	uint32_t rounds;
	bool converged;
	double throughput_Bps;
	/* Target with --prealloc: RAM populated before the connection (not
	 * part of total_ms), and how long that took. */
	uint64_t prealloc_bytes;
	double prealloc_ms;
	uint32_t channels;        /* data channels used (0: the one stream) */
	/* What the migration cost the guest (docs/stats-json.md) */
	double guest_stall_max_ms, guest_stall_total_ms;
	double throttle_hold_max_ms; /* the longest single throttle hold alone */
	/* the longest interval between two guest console lines in the
	 * migration's window, the switchover included (devices/conline.h) */
	double guest_console_gap_ms;
	uint32_t throttle_max_pct;
	/* Delta encoding (xbzrle-cache) */
	uint64_t xbzrle_cache_bytes, xbzrle_pages, xbzrle_bytes_saved, xbzrle_cache_misses;
	double xbzrle_encode_ms;
	/* The disk streamed (--migrate-disk; docs/storage.md) */
	uint64_t disk_data_bytes, disk_zero_bytes, disk_hole_bytes, disk_dirty_blocks;
	uint32_t disk_rounds;
	double disk_bulk_ms, disk_bulk_Bps, disk_read_ms, disk_write_ms, disk_flush_ms;
	/* Dirty tracking: ring entries per vCPU (0: the bitmap) */
	uint32_t dirty_ring_entries;
	uint64_t dirty_ring_full_exits;
	bool dirty_ring_lost;     /* a ring was found overflowed: tracking not trusted */
	uint64_t dirty_ring_resyncs; /* full exits that moved KVM's reset index blind */
	uint32_t dirty_ring_resends; /* syncs that marked every populated page (lost) */
	int dirty_ring_loss;      /* enum dring_loss: why tracking was lost */
	uint64_t dirty_ring_reset_errors; /* KVM_RESET_DIRTY_RINGS calls that failed */
	int dirty_ring_reset_errno;       /* the last one's */
	/* Post-copy (docs/postcopy.md, docs/stats-json.md) */
	bool postcopy;
	double postcopy_ms;       /* the switch -> every page on the target */
	uint64_t pc_pages_missing, pc_pages_requested, pc_pages_pushed, pc_bad_requests;
	uint64_t pc_pages_hot;    /* source: pages sent in the pause ahead of the guest's faults */
	uint64_t pc_pages_busy;   /* of those, the ones it wrote in both windows (hotwin.h) */
	double pc_hotwin_ms;      /* source: the two windows before the pause, their syncs too */
	uint64_t pc_faults;       /* target: faults that waited for the source */
	uint64_t pc_refaults;     /* the same thread's fault on the same page, again */
	double pc_fault_p50_ms, pc_fault_p99_ms, pc_fault_max_ms, pc_blocktime_ms;
	uint32_t pc_recoveries;
	uint64_t pc_push_queue_bytes; /* source: the push's send-queue bound, 0: none */
	uint64_t pc_push_gate_bytes;  /* source: the push's gate at its end, 0: none */
	double pc_push_wait_ms;       /* source: time the push waited at the gate */
	uint64_t pc_pages_delta;      /* pushed as deltas (source), placed from them (target) */
	uint64_t pc_delta_bytes_saved; /* source: what those deltas saved against whole pages */
	struct stats_round *rec;
	size_t nrec, caprec;
};

/* The words the JSON file and `info migrate` use. A document without an
 * ending reads as failed: a migration that wrote one has ended. */
const char *stats_role_name(enum stats_role r);
const char *stats_result_name(enum stats_result r);

int stats_add_round(struct stats *st, const struct stats_round *r);
void stats_free(struct stats *st);
/* Writes the JSON document to path (atomically: temp file + rename). */
int stats_write_json(const struct stats *st, const char *path, char *err,
		     size_t errlen);
/* The human summary the source prints (and `minivmm --migrate` echoes). */
void stats_print_summary(FILE *f, const struct stats *st);
/* Reads the totals back from a JSON file written by stats_write_json (for
 * the remote client; round records are not read). */
int stats_read_json(const char *path, struct stats *st, char *err, size_t errlen);

#endif
