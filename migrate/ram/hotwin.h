/* The pages a running guest writes over and over (its tick counter, a
 * loop's state): those it wrote in each of two short windows just before a
 * post-copy switch. The switch sends them with the state beside the
 * register-named ones (docs/postcopy.md, "Pages sent with the state"):
 * no register names the page a timer interrupt writes, and that is the
 * guest's first fault on the target otherwise. Nothing outside
 * migrate/ram/ uses it. */
#ifndef MINIVMM_MIGRATE_RAM_HOTWIN_H
#define MINIVMM_MIGRATE_RAM_HOTWIN_H

#include <stdbool.h>
#include <stdint.h>

#include "migrate/ram/ram.h"

struct vm;

struct ram_hotwin {
	uint64_t *first;  /* dirty pages written in the first window */
	uint64_t npages;
	bool armed;       /* the first window was taken: the final sync ends the second */
};

/* The guest running, d->bm up to date: the first window of window_us,
 * then the sync that ends it (its pages join d->bm as any sync's do),
 * then the second window of window_us; the caller pauses the guest next,
 * and the final sync ends it. Nothing for a ring VM (no per-slot log).
 * A failure leaves h unarmed and d->bm whole: a hint only. */
int ram_hotwin_take(struct ram_hotwin *h, struct vm *vm, struct ram_dirty *d,
		    unsigned window_us, char *err, size_t errlen);

/* After the final sync: up to max page indices written in both windows
 * and still in bm, lowest first. Returns the count (0 unarmed). */
int ram_hotwin_pages(const struct ram_hotwin *h, const struct vm *vm, const uint64_t *bm,
		     uint64_t *pages, int max);

void ram_hotwin_free(struct ram_hotwin *h);

#endif
