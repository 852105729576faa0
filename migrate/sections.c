/* The sections of a migration, in the order they stand in the stream:
 * RAM first (its pre-copy rounds), machine state last (it must be loaded
 * after everything it refers to). A new section is one line here. */
#include "migrate/section.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct mig_section_ops *const section_table[] = {
	&ram_section_ops,
	&disk_section_ops,
	&state_section_ops,
};

_Static_assert(sizeof(section_table) / sizeof(section_table[0]) <= MIG_MAX_SECTIONS,
	       "more sections than MIG_MAX_SECTIONS");

int mig_sections_create(struct mig_sections *ss, char *err, size_t errlen)
{
	memset(ss, 0, sizeof(*ss));
	for (size_t i = 0; i < sizeof(section_table) / sizeof(section_table[0]); i++) {
		const struct mig_section_ops *ops = section_table[i];
		void *st = ops->create ? ops->create() : NULL;

		if (ops->create && !st) {
			snprintf(err, errlen, "%s section: out of memory", ops->name);
			mig_sections_destroy(ss);
			return -ENOMEM;
		}
		ss->s[ss->n++] = (struct mig_section){ .ops = ops, .state = st };
	}
	return 0;
}

void mig_sections_destroy(struct mig_sections *ss)
{
	for (int i = 0; i < ss->n; i++)
		if (ss->s[i].ops->destroy)
			ss->s[i].ops->destroy(ss->s[i].state);
	ss->n = 0;
}

struct mig_section *mig_sections_for_frame(struct mig_sections *ss, uint32_t type)
{
	for (int i = 0; i < ss->n; i++) {
		const uint32_t *f = ss->s[i].ops->frames;

		for (; f && *f; f++)
			if (*f == type)
				return &ss->s[i];
	}
	return NULL;
}
