/* A group of worker threads started together and joined together: the
 * RAM populating helpers, the receive-side prefault helpers and the data
 * channels' senders and receivers all use it. How the workers are told to
 * stop is the owner's business (a flag, a closed socket); the pool only
 * starts and joins. */
#ifndef MINIVMM_POOL_H
#define MINIVMM_POOL_H

#include <pthread.h>
#include <stddef.h>

#define POOL_MAX_THREADS 16

struct pool {
	pthread_t th[POOL_MAX_THREADS];
	int n; /* threads running, to be joined */
};

/* Starts n threads; thread i runs fn((char *)args + i * stride), so
 * stride 0 gives every thread the same argument. On failure the threads
 * already started keep running: the caller stops them and calls
 * pool_join(), as after a success. */
int pool_start(struct pool *p, int n, void *(*fn)(void *), void *args,
	       size_t stride, const char *what, char *err, size_t errlen);
void pool_join(struct pool *p);

#endif
