/* Post-copy, target side (docs/postcopy.md): the return path accepted
 * before round 0, MISSING at the switch, then guest RAM under
 * userfaultfd: a fault thread turns faults into PAGE_REQ on the return
 * path and places what comes back; after COMMIT a receiver places the
 * pushed pages from the main connection. A lost link pauses the guest
 * until `migrate_recover URI`. */
#ifndef MINIVMM_MIGRATE_POSTCOPY_PC_TARGET_H
#define MINIVMM_MIGRATE_POSTCOPY_PC_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pc_tgt;
struct vm;
struct mig;
struct stream;
struct transport_listener;

/* delta: the source may push deltas against the stale copies this side
 * keeps (POSTCOPY_DELTA taken). */
int pc_tgt_create(struct pc_tgt **out, struct vm *vm, struct mig *m, bool delta, char *err,
		  size_t errlen);
/* Accepts the return path on lst (its first frame presents token). */
int pc_tgt_accept_rp(struct pc_tgt *pc, struct transport_listener *lst, uint64_t token,
		     char *err, size_t errlen);
/* One MISSING frame of len bytes on s. */
int pc_tgt_missing(struct pc_tgt *pc, struct stream *s, uint32_t len, char *err, size_t errlen);
/* At END: drops the stale copies of the missing pages, registers guest
 * RAM with userfaultfd and starts the fault thread. With a digest, the
 * RAM digest is checked once every page is here. */
int pc_tgt_arm(struct pc_tgt *pc, bool digest, uint64_t want, char *err, size_t errlen);
/* After COMMIT, the guest running: takes over the main connection s
 * (the caller's struct is reset) and receives the pushed pages. */
int pc_tgt_run(struct pc_tgt *pc, struct stream *s, char *err, size_t errlen);
/* Live figures into pc's mig stats (for `info migrate`). */
void pc_tgt_publish(struct pc_tgt *pc);
/* Stops every thread; guest RAM is unregistered (safe on NULL). */
void pc_tgt_destroy(struct pc_tgt *pc);

#endif
