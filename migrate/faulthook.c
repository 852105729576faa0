#include "migrate/faulthook.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void mig_fault_delay(const char *phase)
{
	char name[64];
	const char *v;
	char *end;
	long ms;

	snprintf(name, sizeof(name), "MINIVMM_FAULT_DELAY_%s_MS", phase);
	v = getenv(name);
	if (!v)
		return;
	ms = strtol(v, &end, 10);
	if (*end || ms <= 0 || ms > 600000)
		return;
	fprintf(stderr, "minivmm: fault hook: %s, waiting %ld ms\n", phase, ms);
	nanosleep(&(struct timespec){ .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L }, NULL);
}

void mig_fault_delay_round(uint32_t round)
{
	char phase[24];

	snprintf(phase, sizeof(phase), "ROUND%u", round);
	mig_fault_delay(phase);
}
