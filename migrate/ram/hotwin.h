/* The pages a running guest writes over and over (its tick counter, a
 * loop's state): those it wrote in each of two short windows just before a
 * post-copy switch. The switch sends them with the state beside the
 * register-named ones (docs/postcopy.md, "Pages sent with the state"):
 * no register names the page a timer interrupt writes, and that is the
 * guest's first fault on the target otherwise. Nothing outside
 * migrate/ram/ uses it. */
#ifndef MINIVMM_MIGRATE_RAM_HOTWIN_H
#define MINIVMM_MIGRATE_RAM_HOTWIN_H

#include <stdint.h>

#include "migrate/ram/ram.h"

struct vm;

struct ram_hotwin {
	uint64_t *first;  /* pages written in the first window */
	uint64_t *seen;   /* what the last sync found written (d->written) */
	/* Whose syncs fill seen; set once the first window was taken (the
	 * final sync ends the second), NULL otherwise. */
	struct ram_dirty *d;
};

/* The guest running, d->bm up to date: the first window of window_us,
 * then the sync that ends it (its pages join d->bm as any sync's do),
 * then the second window; the caller pauses the guest next, and its final
 * sync ends it. Only pages in both d->bm and sent (those sent once, whose
 * tracking says something; NULL: all of d->bm) are looked at. Nothing
 * for a ring VM (no per-slot log). Returns 0 (taken, or nothing to take),
 * 1 when not taken (err says why: a hint only, d->bm is whole), or
 * -errno when the sync failed: then pages may be known only to a log it
 * half reset, and the migration must fail. */
int ram_hotwin_take(struct ram_hotwin *h, struct vm *vm, struct ram_dirty *d,
		    const uint64_t *sent, unsigned window_us, char *err, size_t errlen);

/* After the final sync: up to max page indices still in bm, lowest
 * first: those written in both windows, then those written in the second
 * whose page below was written in the first and they not (where a walk
 * through an array went on to). Returns the count (0 unarmed). */
int ram_hotwin_pages(const struct ram_hotwin *h, const uint64_t *bm, uint64_t *pages, int max);

/* Disarms h: d's syncs stop filling it. */
void ram_hotwin_free(struct ram_hotwin *h);

#endif
