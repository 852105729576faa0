/* The one clock every part of minivmm measures with: CLOCK_MONOTONIC in
 * nanoseconds, so intervals survive wall-clock steps. */
#ifndef MINIVMM_CLOCK_H
#define MINIVMM_CLOCK_H

#include <errno.h>
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

/* ms from now on the same clock: the deadline of a timed wait on a
 * condition variable set to CLOCK_MONOTONIC (pthread_condattr_setclock),
 * so that a wall-clock step neither cuts the wait short nor stretches it. */
static inline struct timespec clock_deadline(int ms)
{
	uint64_t t = clock_now_ns() + (uint64_t)ms * 1000000ULL;

	return (struct timespec){ .tv_sec = (time_t)(t / 1000000000ULL),
				  .tv_nsec = (long)(t % 1000000000ULL) };
}

/* Sleeps ns in full: a signal (the monitor's, a profiler's) resumes the
 * sleep rather than cutting a rate limit's or a window's pause short. */
static inline void clock_sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ULL),
			       .tv_nsec = (long)(ns % 1000000000ULL) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

#endif
