/* Stats JSON writer/reader and the printed summary. */
#include "migrate/stats/stats.h"

#include "vmm/core/dirty_ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int stats_add_round(struct stats *st, const struct stats_round *r)
{
	if (st->nrec == st->caprec) {
		size_t cap = st->caprec ? st->caprec * 2 : 16;
		struct stats_round *n = realloc(st->rec, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		st->rec = n;
		st->caprec = cap;
	}
	st->rec[st->nrec++] = *r;
	return 0;
}

void stats_free(struct stats *st)
{
	free(st->rec);
	st->rec = NULL;
	st->nrec = st->caprec = 0;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static const char *const result_names[] = {
	[STATS_ACTIVE] = "active", [STATS_COMPLETED] = "completed",
	[STATS_CANCELLED] = "cancelled", [STATS_FAILED] = "failed",
};

const char *stats_role_name(enum stats_role r)
{
	return r == STATS_TARGET ? "target" : "source";
}

const char *stats_result_name(enum stats_result r)
{
	return r <= STATS_FAILED ? result_names[r] : "failed";
}

static void write_doc(FILE *f, const struct stats *st)
{
	fprintf(f, "{\n  \"schema\": \"%s\",\n  \"role\": ", STATS_SCHEMA);
	json_str(f, stats_role_name(st->role));
	fprintf(f, ",\n  \"result\": ");
	json_str(f, stats_result_name(st->result == STATS_ACTIVE ? STATS_FAILED : st->result));
	fprintf(f, ",\n  \"error\": ");
	if (st->error[0])
		json_str(f, st->error);
	else
		fputs("null", f);
	fprintf(f, ",\n  \"downtime_limit_ms\": %u,\n  \"max_bandwidth_Bps\": %llu,\n"
		"  \"ram_bytes\": %llu,\n  \"vcpus\": %u,\n",
		st->downtime_limit_ms, (unsigned long long)st->max_bandwidth_Bps,
		(unsigned long long)st->ram_bytes, st->vcpus);
	fprintf(f, "  \"setup_ms\": %.3f,\n  \"total_ms\": %.3f,\n  \"downtime_ms\": %.3f,\n"
		"  \"restore_ms\": %.3f,\n",
		st->setup_ms, st->total_ms, st->downtime_ms, st->restore_ms);
	fprintf(f, "  \"bytes_total\": %llu,\n  \"pages_normal\": %llu,\n"
		"  \"pages_zero\": %llu,\n  \"pages_skipped\": %llu,\n"
		"  \"pages_populated_late\": %llu,\n  \"rounds\": %u,\n"
		"  \"converged\": %s,\n  \"throughput_Bps\": %.0f,\n"
		"  \"prealloc_bytes\": %llu,\n  \"prealloc_ms\": %.3f,\n  \"channels\": %u,\n",
		(unsigned long long)st->bytes_total, (unsigned long long)st->pages_normal,
		(unsigned long long)st->pages_zero, (unsigned long long)st->pages_skipped,
		(unsigned long long)st->pages_populated_late, st->rounds,
		st->converged ? "true" : "false", st->throughput_Bps,
		(unsigned long long)st->prealloc_bytes, st->prealloc_ms, st->channels);
	fprintf(f, "  \"guest_stall_max_ms\": %.3f,\n  \"guest_stall_total_ms\": %.3f,\n"
		"  \"throttle_hold_max_ms\": %.3f,\n"
		"  \"throttle_max_pct\": %u,\n  \"guest_console_gap_ms\": %.3f,\n",
		st->guest_stall_max_ms, st->guest_stall_total_ms, st->throttle_hold_max_ms,
		st->throttle_max_pct, st->guest_console_gap_ms);
	fprintf(f, "  \"postcopy\": %s,\n  \"postcopy_ms\": %.3f,\n"
		"  \"postcopy_pages_missing\": %llu,\n  \"postcopy_pages_requested\": %llu,\n"
		"  \"postcopy_pages_pushed\": %llu,\n  \"postcopy_pages_hot\": %llu,\n"
		"  \"postcopy_pages_busy\": %llu,\n  \"postcopy_hotwin_ms\": %.3f,\n"
		"  \"postcopy_bad_requests\": %llu,\n"
		"  \"postcopy_faults\": %llu,\n  \"postcopy_refaults\": %llu,\n"
		"  \"postcopy_fault_p50_ms\": %.3f,\n"
		"  \"postcopy_fault_p99_ms\": %.3f,\n  \"postcopy_fault_max_ms\": %.3f,\n"
		"  \"postcopy_blocktime_ms\": %.3f,\n  \"postcopy_recoveries\": %u,\n"
		"  \"postcopy_push_queue_bytes\": %llu,\n"
		"  \"postcopy_push_gate_bytes\": %llu,\n  \"postcopy_push_wait_ms\": %.3f,\n"
		"  \"postcopy_pages_delta\": %llu,\n  \"postcopy_delta_bytes_saved\": %llu,\n",
		st->postcopy ? "true" : "false", st->postcopy_ms,
		(unsigned long long)st->pc_pages_missing, (unsigned long long)st->pc_pages_requested,
		(unsigned long long)st->pc_pages_pushed, (unsigned long long)st->pc_pages_hot,
		(unsigned long long)st->pc_pages_busy, st->pc_hotwin_ms,
		(unsigned long long)st->pc_bad_requests,
		(unsigned long long)st->pc_faults, (unsigned long long)st->pc_refaults,
		st->pc_fault_p50_ms, st->pc_fault_p99_ms,
		st->pc_fault_max_ms, st->pc_blocktime_ms, st->pc_recoveries,
		(unsigned long long)st->pc_push_queue_bytes,
		(unsigned long long)st->pc_push_gate_bytes, st->pc_push_wait_ms,
		(unsigned long long)st->pc_pages_delta, (unsigned long long)st->pc_delta_bytes_saved);
	fprintf(f, "  \"xbzrle_cache_bytes\": %llu,\n  \"xbzrle_pages\": %llu,\n"
		"  \"xbzrle_bytes_saved\": %llu,\n  \"xbzrle_cache_misses\": %llu,\n"
		"  \"xbzrle_encode_ms\": %.3f,\n",
		(unsigned long long)st->xbzrle_cache_bytes, (unsigned long long)st->xbzrle_pages,
		(unsigned long long)st->xbzrle_bytes_saved,
		(unsigned long long)st->xbzrle_cache_misses, st->xbzrle_encode_ms);
	fprintf(f, "  \"disk_data_bytes\": %llu,\n  \"disk_zero_bytes\": %llu,\n"
		"  \"disk_hole_bytes\": %llu,\n  \"disk_dirty_blocks\": %llu,\n"
		"  \"disk_rounds\": %u,\n  \"disk_bulk_ms\": %.3f,\n  \"disk_bulk_Bps\": %.0f,\n"
		"  \"disk_read_ms\": %.3f,\n  \"disk_write_ms\": %.3f,\n"
		"  \"disk_flush_ms\": %.3f,\n",
		(unsigned long long)st->disk_data_bytes, (unsigned long long)st->disk_zero_bytes,
		(unsigned long long)st->disk_hole_bytes, (unsigned long long)st->disk_dirty_blocks,
		st->disk_rounds, st->disk_bulk_ms, st->disk_bulk_Bps, st->disk_read_ms,
		st->disk_write_ms, st->disk_flush_ms);
	fprintf(f, "  \"dirty_tracking\": \"%s\",\n  \"dirty_ring_entries\": %u,\n"
		"  \"dirty_ring_full_exits\": %llu,\n  \"dirty_ring_lost\": %s,\n"
		"  \"dirty_ring_resyncs\": %llu,\n  \"dirty_ring_resends\": %u,\n"
		"  \"dirty_ring_lost_reason\": \"%s\",\n  \"dirty_ring_reset_errors\": %llu,\n"
		"  \"dirty_ring_reset_error\": \"%s\",\n"
		"  \"round_records\": [",
		st->dirty_ring_entries ? "ring" : "bitmap", st->dirty_ring_entries,
		(unsigned long long)st->dirty_ring_full_exits,
		st->dirty_ring_lost ? "true" : "false",
		(unsigned long long)st->dirty_ring_resyncs, st->dirty_ring_resends,
		dring_loss_name((enum dring_loss)st->dirty_ring_loss),
		(unsigned long long)st->dirty_ring_reset_errors,
		st->dirty_ring_reset_errno ? strerror(st->dirty_ring_reset_errno) : "");
	for (size_t i = 0; i < st->nrec; i++) {
		const struct stats_round *r = &st->rec[i];

		fprintf(f, "%s\n    {\"round\": %u, \"start_ms\": %.3f, \"duration_ms\": %.3f, "
			"\"dirty_pages\": %llu, \"pages_sent\": %llu, \"bytes\": %llu, "
			"\"bw_estimate_Bps\": %.0f, \"dirty_rate_pps\": %.0f, "
			"\"expected_downtime_ms\": %.3f, \"throttle_pct\": %u, \"sync_ms\": %.3f}",
			i ? "," : "", r->round, r->start_ms, r->duration_ms,
			(unsigned long long)r->dirty_pages, (unsigned long long)r->pages_sent,
			(unsigned long long)r->bytes, r->bw_estimate_Bps, r->dirty_rate_pps,
			r->expected_downtime_ms, r->throttle_pct, r->sync_ms);
	}
	fprintf(f, "%s]\n}\n", st->nrec ? "\n  " : "");
}

int stats_write_json(const struct stats *st, const char *path, char *err,
		     size_t errlen)
{
	char tmp[4096];
	FILE *f;
	int fd;

	/* An unpredictable temporary name beside the target (mkstemp: new,
	 * 0600, O_EXCL), so nobody can plant a symlink where we write; the
	 * rename then replaces the file whole. */
	if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "stats path too long");
		return -ENAMETOOLONG;
	}
	fd = mkstemp(tmp);
	f = fd < 0 ? NULL : fdopen(fd, "w");
	if (!f) {
		int e = errno;

		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		snprintf(err, errlen, "stats %s: %s", path, strerror(e));
		return -e;
	}
	write_doc(f, st);
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		int e = errno;

		snprintf(err, errlen, "stats %s: %s", path, strerror(e));
		unlink(tmp);
		return -e;
	}
	return 0;
}

static void human_bytes(char *out, size_t n, double b)
{
	if (b >= 1e9)
		snprintf(out, n, "%.2f GB", b / 1e9);
	else if (b >= 1e6)
		snprintf(out, n, "%.1f MB", b / 1e6);
	else
		snprintf(out, n, "%.1f kB", b / 1e3);
}

void stats_print_summary(FILE *f, const struct stats *st)
{
	char bytes[32], bw[32];

	human_bytes(bytes, sizeof(bytes), (double)st->bytes_total);
	human_bytes(bw, sizeof(bw), st->throughput_Bps);
	fprintf(f, "  rounds %u (%s), total %.0f ms, setup %.0f ms, downtime %.1f ms "
		"(limit %u ms)\n", st->rounds, st->converged ? "converged" : "forced",
		st->total_ms, st->setup_ms, st->downtime_ms, st->downtime_limit_ms);
	fprintf(f, "  sent %s at %s/s over %u data channel%s: %llu normal, %llu zero, "
		"%llu skipped pages\n", bytes, bw, st->channels, st->channels == 1 ? "" : "s",
		(unsigned long long)st->pages_normal, (unsigned long long)st->pages_zero,
		(unsigned long long)st->pages_skipped);
}

/* Minimal reader for our own output: "key": value on one line each. */
static const char *find_key(const char *doc, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\n  \"%s\": ", key);
	p = strstr(doc, pat);
	return p ? p + strlen(pat) : NULL;
}

static double num(const char *doc, const char *key)
{
	const char *p = find_key(doc, key);

	return p ? strtod(p, NULL) : 0;
}

int stats_read_json(const char *path, struct stats *st, char *err, size_t errlen)
{
	char *doc = NULL;
	size_t cap = 0;
	FILE *f = fopen(path, "r");
	const char *p;
	ssize_t n;

	if (!f) {
		int e = errno;

		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	n = getdelim(&doc, &cap, '\0', f);
	fclose(f);
	if (n <= 0 || !strstr(doc, STATS_SCHEMA)) {
		snprintf(err, errlen, "%s: not a stats file", path);
		free(doc);
		return -EINVAL;
	}
	memset(st, 0, sizeof(*st));
	p = find_key(doc, "result");
	st->result = STATS_FAILED;
	for (int r = STATS_COMPLETED; p && r <= STATS_FAILED; r++)
		if (!strncmp(p, "\"", 1) && !strncmp(p + 1, result_names[r], strlen(result_names[r])) &&
		    p[1 + strlen(result_names[r])] == '"')
			st->result = (enum stats_result)r;
	p = find_key(doc, "error");
	if (p && *p == '"') {
		const char *e = strchr(p + 1, '\n');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		/* "text",\n: drop the quotes and the comma. */
		if (l >= 3)
			snprintf(st->error, sizeof(st->error), "%.*s", (int)(l - 3), p + 1);
	}
	st->downtime_limit_ms = (uint32_t)num(doc, "downtime_limit_ms");
	st->setup_ms = num(doc, "setup_ms");
	st->total_ms = num(doc, "total_ms");
	st->downtime_ms = num(doc, "downtime_ms");
	st->bytes_total = (uint64_t)num(doc, "bytes_total");
	st->pages_normal = (uint64_t)num(doc, "pages_normal");
	st->pages_zero = (uint64_t)num(doc, "pages_zero");
	st->pages_skipped = (uint64_t)num(doc, "pages_skipped");
	st->rounds = (uint32_t)num(doc, "rounds");
	st->throughput_Bps = num(doc, "throughput_Bps");
	st->channels = (uint32_t)num(doc, "channels");
	p = find_key(doc, "converged");
	st->converged = p && !strncmp(p, "true", 4);
	free(doc);
	return 0;
}
