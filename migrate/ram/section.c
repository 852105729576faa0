/* The RAM section: pre-copy rounds of guest pages (ROUND, PAGES and the
 * data channels' CHANNELS negotiation), the RAM digest in END. */
#include "migrate/ram/section_int.h"

#include <stdlib.h>

static void *ram_create(void)
{
	return calloc(1, sizeof(struct ram_sec));
}

static void ram_destroy(void *sec)
{
	free(sec);
}

static const uint32_t ram_frames[] = { ST_ROUND, ST_PAGES, ST_CHANNELS, ST_POSTCOPY,
				       ST_MISSING, 0 };

const struct mig_section_ops ram_section_ops = {
	.name = "RAM",
	.create = ram_create,
	.destroy = ram_destroy,
	.save_setup = ram_save_setup,
	.save_iterate = ram_save_iterate,
	.save_pending = ram_save_pending,
	.save_cost_ms = ram_save_cost_ms,
	.save_complete = ram_save_complete,
	.save_before_switch = ram_save_before_switch,
	.save_postcopy = ram_save_postcopy,
	.save_cleanup = ram_save_cleanup,
	.frames = ram_frames,
	.load_setup = ram_load_setup,
	.load_frame = ram_load_frame,
	.load_drain = ram_load_drain,
	.load_complete = ram_load_complete,
	.load_cleanup = ram_load_cleanup,
};
