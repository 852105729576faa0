/* The source's post-copy state, shared by pc_source.c (setup, switch,
 * page server, push) and pc_src_recover.c (a lost link and its
 * recovery). Nothing outside migrate/postcopy/ uses it. */
#ifndef MINIVMM_MIGRATE_POSTCOPY_PC_SOURCE_INT_H
#define MINIVMM_MIGRATE_POSTCOPY_PC_SOURCE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "migrate/postcopy/pc_source.h"
#include "migrate/proto/stream.h"
#include "vmm/core/pool.h"

struct pc_src {
	struct vm *vm;
	struct mig *m;
	uint64_t npages, token;
	_Atomic uint64_t *to_send;
	/* Pages the target lacks that the server has not sent on the return
	 * path (the server's own while it runs; set at the switch and at a
	 * recovery): a page asked for goes there at most once. */
	uint64_t *resendable;
	struct stream rp;            /* the return path */
	int stop_efd;                /* readable: the server stops */
	struct pool server;
	bool serving;
	atomic_int lost;             /* a connection failed */
	atomic_uint_fast64_t requested, pushed, bad;
	atomic_uint_fast64_t push_from; /* page + 1 the push jumps to; 0: none */
	/* Deltas (POSTCOPY_DELTA taken): the pages whose stale copy the
	 * target keeps, as its PC_KEPT frames say (the server ORs them in,
	 * the push reads them). NULL: whole pages only. */
	struct xbz_cache *xbz;
	_Atomic uint64_t *kept;
	uint8_t *enc;                /* the push's delta entries, PC_DELTA_AREA */
	uint64_t t_switch;
	uint64_t rp_bytes_closed;    /* written on return paths already closed */
	pthread_mutex_t mu;          /* serializes writes on rp... */
	char err[256];               /* ...and guards the server's error */
};

/* The return path to a: preamble, RETURN_PATH(token). */
int pc_src_connect_rp(struct pc_src *pc, const struct transport_addr *a, char *err,
		      size_t errlen);
int pc_src_start_server(struct pc_src *pc, char *err, size_t errlen);
void pc_src_stop_server(struct pc_src *pc);
/* Pages not yet taken by the server or the push. */
uint64_t pc_src_left(struct pc_src *pc);
/* pc_src_recover.c: waits for `migrate URI`, reconnects, takes the
 * target's MISSING as the pages to send; 0 when the transfer can go on. */
int pc_src_recover(struct pc_src *pc, struct mig_src_env *env);

#endif
