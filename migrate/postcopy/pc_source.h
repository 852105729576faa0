/* Post-copy, source side (docs/postcopy.md): the return path set up
 * before round 0, the switch (MISSING: what the target lacks), then the
 * page server (requested pages, on the return path; the push then goes
 * on from after them) and the background push (every other page, on the
 * main connection) until the target has every page; a lost link waits for
 * `migrate URI` and resumes on new connections. Called by the RAM
 * section (migrate/ram/section_save.c). */
#ifndef MINIVMM_MIGRATE_POSTCOPY_PC_SOURCE_H
#define MINIVMM_MIGRATE_POSTCOPY_PC_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pc_src;
struct mig;
struct mig_src_env;
struct transport_conn;
struct vm;
struct xbz_cache;

/* Before round 0: asks the target for post-copy and connects the return
 * path. *out is NULL when the target declined (pre-copy only). With
 * xbz (the RAM section's delta cache, which outlives *out) the push
 * offers deltas against what the target keeps of its stale copies. */
int pc_src_setup(struct pc_src **out, struct mig_src_env *env, struct xbz_cache *xbz);
/* The parts of setup without a peer (pc_src_setup calls them; unit
 * tests drive a page server over a socketpair with them). */
int pc_src_create(struct pc_src **out, struct vm *vm, struct mig *m, uint64_t token, char *err,
		  size_t errlen);
void pc_src_attach_rp(struct pc_src *pc, const struct transport_conn *conn);
/* Whether the server gave up on its connection (and why, into err). */
bool pc_src_lost(struct pc_src *pc, char *err, size_t errlen);
/* In the pause, after the final dirty sync: sends bm (the pages the
 * target lacks) and starts serving requests. */
int pc_src_switch(struct pc_src *pc, struct mig_src_env *env, const uint64_t *bm);
/* After RUNNING: pushes everything left until the target says PC_DONE;
 * through link losses and recoveries. 0 when every page is there. */
int pc_src_run(struct pc_src *pc, struct mig_src_env *env);
/* Bytes written on the return path connections (all of them). */
uint64_t pc_src_rp_bytes(const struct pc_src *pc);
void pc_src_destroy(struct pc_src *pc);

#endif
