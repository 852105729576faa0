/* Migration statistics: the figures of design notes section 4, kept live
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
};

struct stats {
	const char *role;         /* "source" | "target" */
	const char *result;       /* "completed" | "cancelled" | "failed" | NULL while active */
	char error[512];
	uint32_t downtime_limit_ms;
	uint64_t max_bandwidth_Bps;
	uint64_t ram_bytes;
	uint32_t vcpus;
	double setup_ms, total_ms, downtime_ms, restore_ms;
	uint64_t bytes_total;
	uint64_t pages_normal, pages_zero, pages_skipped;
	uint32_t rounds;
	bool converged;
	double throughput_Bps;
	/* Target with --prealloc: RAM populated before the connection (not
	 * part of total_ms), and how long that took. */
	uint64_t prealloc_bytes;
	double prealloc_ms;
	uint32_t channels;        /* data channels used (0: the one stream) */
	struct stats_round *rec;
	size_t nrec, caprec;
};

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
