/* Dirty tracking's parts shared by dirty.c and dirty_trust.c; nothing
 * outside migrate/ram/ uses them. */
#ifndef MINIVMM_MIGRATE_RAM_DIRTY_INT_H
#define MINIVMM_MIGRATE_RAM_DIRTY_INT_H

#include "migrate/ram/ram.h"

/* KVM_GET_DIRTY_LOG of slot index i into d->slot_log[i]. */
int ram_dirty_get_log(struct vm *vm, struct ram_dirty *d, int i, char *err, size_t errlen);
/* The initially-set sync: KVM's bits of the trusted pages (d->res), and
 * every page populated since that is not trusted yet, into d->bm. */
int ram_dirty_sync_trusted(struct vm *vm, struct ram_dirty *d, char *err, size_t errlen);

#endif
