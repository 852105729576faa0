/* The source's delta cache (xbzrle.h). Its memory is the one the user
 * gave (xbzrle-cache) plus 8 bytes of tag per slot. */
#include "migrate/ram/xbzrle.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int xbz_cache_create(struct xbz_cache **out, uint64_t bytes, char *err, size_t errlen)
{
	struct xbz_cache *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		goto nomem;
	c->nslots = bytes / XBZ_PAGE ? bytes / XBZ_PAGE : 1;
	c->tag = calloc(c->nslots, sizeof(*c->tag));
	/* Anonymous memory: only slots in use cost anything. */
	c->data = mmap(NULL, c->nslots * XBZ_PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (c->data == MAP_FAILED)
		c->data = NULL;
	if (!c->tag || !c->data) {
		if (c->data)
			munmap(c->data, c->nslots * XBZ_PAGE);
		free(c->tag);
		free(c);
		goto nomem;
	}
	for (int i = 0; i < XBZ_LOCKS; i++)
		pthread_mutex_init(&c->mu[i], NULL);
	*out = c;
	return 0;
nomem:
	snprintf(err, errlen, "xbzrle-cache of %llu bytes: out of memory",
		 (unsigned long long)bytes);
	return -ENOMEM;
}

void xbz_cache_destroy(struct xbz_cache *c)
{
	if (!c)
		return;
	for (int i = 0; i < XBZ_LOCKS; i++)
		pthread_mutex_destroy(&c->mu[i]);
	munmap(c->data, c->nslots * XBZ_PAGE);
	free(c->tag);
	free(c);
}

int xbz_cache_put(struct xbz_cache *c, uint64_t page, const uint8_t *snap, uint8_t *out,
		  int *miss)
{
	uint64_t s = page % c->nslots;
	uint8_t *d = c->data + s * XBZ_PAGE;
	pthread_mutex_t *mu = &c->mu[s % XBZ_LOCKS];
	int n = -1;

	pthread_mutex_lock(mu);
	*miss = c->tag[s] != page + 1;
	if (!*miss)
		n = xbzrle_encode(d, snap, out, XBZ_MAX_ENC);
	memcpy(d, snap, XBZ_PAGE);
	c->tag[s] = page + 1;
	pthread_mutex_unlock(mu);
	return n;
}

/* Whether the page's first 256 bytes changed in most of their words (24
 * or more of 32): a page rewritten whole does, and finding that out costs
 * the encoder 1.5-2.7 us a page before it gives up; read in order, as the
 * encoder reads it next (docs/postcopy.md, "Deltas"). */
static bool head_rewritten(const uint8_t *old, const uint8_t *cur)
{
	const uint64_t *o = (const uint64_t *)(const void *)old;
	const uint64_t *c = (const uint64_t *)(const void *)cur;
	int n = 0;

	for (int k = 0; k < 32; k++)
		n += o[k] != c[k];
	return n >= 24;
}

int xbz_cache_delta(struct xbz_cache *c, uint64_t page, const uint8_t *cur, uint8_t *out,
		    size_t cap)
{
	uint64_t s = page % c->nslots;
	pthread_mutex_t *mu = &c->mu[s % XBZ_LOCKS];
	int n = -1;

	pthread_mutex_lock(mu);
	if (c->tag[s] == page + 1 && !head_rewritten(c->data + s * XBZ_PAGE, cur))
		n = xbzrle_encode(c->data + s * XBZ_PAGE, cur, out, cap);
	pthread_mutex_unlock(mu);
	return n;
}

void xbz_cache_forget(struct xbz_cache *c, uint64_t page)
{
	uint64_t s = page % c->nslots;
	pthread_mutex_t *mu = &c->mu[s % XBZ_LOCKS];

	pthread_mutex_lock(mu);
	if (c->tag[s] == page + 1)
		c->tag[s] = 0;
	pthread_mutex_unlock(mu);
}
