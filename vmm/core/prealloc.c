#include "vmm/core/prealloc.h"
#include "vmm/core/clock.h"
#include "vmm/core/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define PREALLOC_SLICE (2ULL << 20)
#define PREALLOC_MAX_THREADS 8

struct prealloc {
	uint8_t *base;
	uint64_t size;
	atomic_uint_fast64_t next;   /* next slice offset to take */
	atomic_uint_fast64_t done;   /* bytes populated */
	atomic_bool quit;
	atomic_int error;            /* first -errno, 0 if none */
	uint64_t t0_ns;
	uint64_t t_end_ns; /* when the last slice finished; read after join */
	struct pool workers;
};

static void *pa_main(void *arg)
{
	struct prealloc *pa = arg;

	while (!atomic_load(&pa->quit)) {
		uint64_t off = atomic_fetch_add(&pa->next, PREALLOC_SLICE), len;

		if (off >= pa->size)
			break;
		len = pa->size - off < PREALLOC_SLICE ? pa->size - off : PREALLOC_SLICE;
		if (madvise(pa->base + off, len, MADV_POPULATE_WRITE) < 0) {
			int zero = 0;

			/* EINVAL: a kernel older than 5.14. Either way the
			 * pages are faulted in later, when first written. */
			atomic_compare_exchange_strong(&pa->error, &zero, -errno);
			atomic_store(&pa->quit, true);
			break;
		}
		if (atomic_fetch_add(&pa->done, len) + len == pa->size)
			pa->t_end_ns = clock_now_ns();
	}
	return NULL;
}

int prealloc_start(struct prealloc **out, uint8_t *base, uint64_t size,
		   int nthreads, char *err, size_t errlen)
{
	struct prealloc *pa = calloc(1, sizeof(*pa));
	int ret;

	*out = NULL;
	if (!pa) {
		snprintf(err, errlen, "calloc(prealloc): out of memory");
		return -ENOMEM;
	}
	pa->base = base;
	pa->size = size;
	pa->t0_ns = clock_now_ns();
	if (nthreads < 1)
		nthreads = 1;
	if (nthreads > PREALLOC_MAX_THREADS)
		nthreads = PREALLOC_MAX_THREADS;
	ret = pool_start(&pa->workers, nthreads, pa_main, pa, 0, "prealloc", err, errlen);
	if (ret) {
		prealloc_stop(pa, NULL);
		return ret;
	}
	*out = pa;
	return 0;
}

int prealloc_wait(struct prealloc *pa)
{
	pool_join(&pa->workers);
	return atomic_load(&pa->error);
}

uint64_t prealloc_stop(struct prealloc *pa, double *ms)
{
	uint64_t done;

	if (!pa)
		return 0;
	atomic_store(&pa->quit, true);
	pool_join(&pa->workers);
	done = atomic_load(&pa->done);
	if (ms)
		*ms = (double)((pa->t_end_ns ? pa->t_end_ns : clock_now_ns()) - pa->t0_ns) / 1e6;
	free(pa);
	return done;
}

int prealloc_all(uint8_t *base, uint64_t size, char *err, size_t errlen)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	struct prealloc *pa;
	int ret;

	ret = prealloc_start(&pa, base, size, ncpu > 1 ? (int)ncpu : 1, err, errlen);
	if (ret)
		return ret;
	ret = prealloc_wait(pa);
	prealloc_stop(pa, NULL);
	if (ret)
		snprintf(err, errlen, "populating guest RAM (--prealloc): %s", strerror(-ret));
	return ret;
}
