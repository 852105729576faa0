#include "vmm/core/pool.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int pool_start(struct pool *p, int n, void *(*fn)(void *), void *args,
	       size_t stride, const char *what, char *err, size_t errlen)
{
	if (n < 0 || p->n + n > POOL_MAX_THREADS) {
		snprintf(err, errlen, "%s: %d threads is more than %d", what, n,
			 POOL_MAX_THREADS);
		return -EINVAL;
	}
	for (int i = 0; i < n; i++) {
		int ret = pthread_create(&p->th[p->n], NULL, fn, (char *)args + (size_t)i * stride);

		if (ret) {
			snprintf(err, errlen, "pthread_create(%s): %s", what, strerror(ret));
			return -ret;
		}
		p->n++;
	}
	return 0;
}

void pool_join(struct pool *p)
{
	for (int i = 0; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	p->n = 0;
}
