/* The one clock every part of minivmm measures with: CLOCK_MONOTONIC in
 * nanoseconds, so intervals survive wall-clock steps. */
#ifndef MINIVMM_CLOCK_H
#define MINIVMM_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static inline double clock_ms_since(uint64_t t0_ns)
{
	return (double)(clock_now_ns() - t0_ns) / 1e6;
}

#endif
