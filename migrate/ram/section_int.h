/* The RAM section's state and ops, shared by its three files:
 * section.c (the ops table), section_save.c (source), section_load.c
 * (target). Nothing outside migrate/ram/ uses it. */
#ifndef MINIVMM_MIGRATE_RAM_SECTION_INT_H
#define MINIVMM_MIGRATE_RAM_SECTION_INT_H

#include "migrate/ram/chan.h"
#include "migrate/ram/hotwin.h"
#include "migrate/ram/ram.h"
#include "migrate/ram/xbzrle.h"
#include "migrate/section.h"
#include "migrate/stats/stats.h"
#include "migrate/stats/trace.h"

struct pc_src;
struct pc_tgt;

/* A page on the wire: contents plus its share of run tables. */
#define RAM_WIRE_PAGE_BYTES (VM_PAGE_SIZE + 16)

struct ram_sec {
	/* source */
	struct ram_dirty d;
	struct ram_sender rs;
	struct xbz_cache *xbz;      /* xbzrle-cache, or NULL */
	struct trace trace;
	bool tracing;
	struct chan_src *cs;        /* data channels, when the target granted them */
	uint32_t nchan;
	uint64_t chan_token;
	struct chan_totals cs_seen; /* channel figures already folded in */
	uint64_t t_last_sync, t_prev_sync;
	double sync_ms, digest_ms;
	struct pc_src *pcs;         /* post-copy allowed and taken by the target */
	struct ram_hotwin hw;       /* what the guest kept writing before the switch */
	/* Round 0's debt probe (mig_pass.progress), while it runs. */
	struct mig_pass *probe_pass;
	uint64_t probe_next;
	/* target */
	struct ram_prefault *pf;    /* first-touch helpers while RAM arrives */
	uint64_t *have;             /* pages received with contents: delta bases */
	struct chan_tgt *ct;
	struct chan_totals ct_seen;
	uint32_t round;
	bool in_round;
	uint64_t pages_at_round;
	struct stats_round rec;
	struct pc_tgt *pct;         /* post-copy: until END hands it to the mig */
	bool pc_switch;             /* the final round is a post-copy switch */
};

int ram_save_setup(void *sec, struct mig_src_env *env);
int ram_save_iterate(void *sec, struct mig_src_env *env, struct mig_pass *p);
int ram_save_pending(void *sec, struct mig_src_env *env, struct mig_pass *p,
		     struct mig_pending *out);
double ram_save_cost_ms(void *sec, struct mig_src_env *env);
int ram_save_complete(void *sec, struct mig_src_env *env, struct mig_end *end);
int ram_save_before_switch(void *sec, struct mig_src_env *env);
int ram_save_postcopy(void *sec, struct mig_src_env *env);
void ram_save_cleanup(void *sec, struct mig_src_env *env, bool ok);

int ram_load_setup(void *sec, struct mig_tgt_env *env);
int ram_load_frame(void *sec, struct mig_tgt_env *env, const struct stream_hdr *h);
int ram_load_drain(void *sec, struct mig_tgt_env *env);
int ram_load_complete(void *sec, struct mig_tgt_env *env, const struct mig_end *end);
void ram_load_cleanup(void *sec, struct mig_tgt_env *env);

#endif
