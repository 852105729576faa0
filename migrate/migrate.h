/* Live migration: the entry points the rest of minivmm calls. The engine
 * behind them lives in migrate/ (see docs/migration-stream.md). */
#ifndef MINIVMM_MIGRATE_H
#define MINIVMM_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct vm;

struct mig_params {
	uint32_t downtime_ms;
	uint64_t max_bandwidth; /* bytes/s, 0 = unlimited */
	bool verify_ram;
	const char *stats_json;  /* may be NULL */
	const char *dirty_trace; /* may be NULL */
	int channels;            /* data channels; < 0: the default */
	int nice;                /* migration threads' nice value; < 0: the default */
	/* Target: what the incoming VM must have (0 = whatever it has), and
	 * whether to populate expect_mem of RAM while waiting for it. */
	uint64_t expect_mem;
	int expect_cpus;
	bool prealloc;
};

/* Source: starts migrating vm to uri in a background thread. Returns 0 when
 * started; -EBUSY if one is already running. */
int mig_start(struct vm *vm, const char *uri, const struct mig_params *p,
	      char *err, size_t errlen);
int mig_cancel(struct vm *vm);
/* `info migrate` and `migrate_set_parameter NAME VALUE` for the monitor. */
void mig_info(struct vm *vm, FILE *out);
int mig_set_parameter(struct vm *vm, const char *name, const char *value,
		      char *err, size_t errlen);
/* Target: accepts a migration on uri, creates the VM from the stream and
 * loads its state. On success *vm is ready (vCPU threads not started) and
 * the caller must call mig_incoming_commit() once it can run the guest. */
int mig_incoming(const char *uri, const struct mig_params *p, struct vm *vm,
		 char *err, size_t errlen);
int mig_incoming_commit(struct vm *vm, char *err, size_t errlen);
/* Releases whatever migration state vm holds (joins the thread). */
void mig_destroy(struct vm *vm);



/* `minivmm --migrate URI` without --kernel: asks the running VM called
 * name (or the only VM on this host when name is NULL) to migrate, shows
 * progress, prints a summary. Returns the process exit status. */
int mig_remote(const char *name, const char *monitor_path, const char *uri,
	       const struct mig_params *p);

#endif
