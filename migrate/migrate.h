/* Live migration: the entry points the front end (run loop, monitor,
 * remote client) calls. The engine behind them lives in migrate/
 * (docs/architecture.md, docs/migration-stream.md). */
#ifndef MINIVMM_MIGRATE_H
#define MINIVMM_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "migrate/params.h"
#include "vmm/core/diskopt.h"
#include "vmm/core/netopt.h"

struct vm;

struct mig_params {
	struct mig_tunables t;  /* the command line's settings (defaults elsewhere) */
	uint32_t set;           /* which of them it set (bit: mig_param_index) */
	/* Target: what the incoming VM must have (0 = whatever it has), and
	 * whether to populate expect_mem of RAM while waiting for it. */
	uint64_t expect_mem;
	int expect_cpus;
	bool prealloc;
	/* Target: its own --net (the tap the incoming VM's NIC gets) and
	 * --disk (where the VM's disk is here; unset: the source's path). */
	struct net_opts net;
	/* Target: its own --dirty-tracking (entries per vCPU; 0: bitmap). */
	uint32_t dirty_ring;
	struct disk_opts disk;
	/* Target: refuses a VM name already live on this host (the front end
	 * knows where VMs are found). The one exception, a same-host
	 * migration, is granted only when the peer is on this host
	 * (peer_local) and the live VM of that name says it is migrating to
	 * listen_uri (this target's address; NULL for a snapshot: no
	 * exception). Nothing the peer claims grants it. 0, or -EADDRINUSE
	 * with why (no pid or other detail of the live VM). NULL: no check. */
	int (*name_check)(const char *name, const char *listen_uri, bool peer_local,
			  char *why, size_t whylen);
};

/* Fills p with the defaults: nothing set, no target expectations. */
void mig_params_init(struct mig_params *p);

/* Source: starts migrating vm to uri in a background thread. Returns 0 when
 * started; -EBUSY if one is already running. */
int mig_start(struct vm *vm, const char *uri, const struct mig_params *p,
	      char *err, size_t errlen);
int mig_cancel(struct vm *vm);
/* `info migrate` and `migrate_set_parameter NAME VALUE` for the monitor;
 * p: the command line's settings, which the monitor's override. */
void mig_info(struct vm *vm, const struct mig_params *p, FILE *out);
/* Whether `info migrate`'s status word is that of a migration still under
 * way, so that a client polling it knows the words from one place. */
bool mig_status_in_progress(const char *status);
int mig_set_parameter(struct vm *vm, const char *name, const char *value,
		      char *err, size_t errlen);
/* Target: accepts a migration on uri, creates the VM from the stream and
 * loads its state. On success *vm is ready (vCPU threads not started) and
 * the caller must call mig_incoming_commit() once it can run the guest. */
int mig_incoming(const char *uri, const struct mig_params *p, struct vm *vm,
		 char *err, size_t errlen);
int mig_incoming_commit(struct vm *vm, char *err, size_t errlen);
/* Post-copy (docs/postcopy.md). Source: switch to post-copy now (the
 * migration must allow it). Target: after the post-copy link was lost,
 * listen on uri for the source's `migrate` to the same place. */
int mig_start_postcopy(struct vm *vm, char *err, size_t errlen);
int mig_recover(struct vm *vm, const char *uri, char *err, size_t errlen);
/* Before the vCPUs are stopped: a post-copy target stops waiting for
 * pages, so a vCPU blocked on a missing one is released (the guest is
 * going away). */
void mig_release_faults(struct vm *vm);
/* Releases whatever migration state vm holds (joins the thread). */
void mig_destroy(struct vm *vm);

#endif
