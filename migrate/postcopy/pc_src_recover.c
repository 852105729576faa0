/* Post-copy, source side, after a lost link: the guest runs on the
 * target and the pages it still lacks exist only here, so nothing is
 * discarded. The source waits for `migrate URI` (after `migrate_recover
 * URI` on the target), then resumes on new connections with exactly the
 * pages the target says it lacks. */
#include "migrate/postcopy/pc_source_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/mig.h"
#include "migrate/postcopy/pc_wire.h"
#include "migrate/ram/bitmap.h"
#include "migrate/section.h"
#include "vmm/core/vm.h"

/* A new main connection and return path at uri. */
static int reconnect(struct pc_src *pc, struct mig_src_env *env, const char *uri)
{
	uint8_t pre[STREAM_PREAMBLE_LEN], b[RESUME_LEN];
	uint64_t words = bm_words(pc->npages), n = 0, *bm = calloc(words, 8);
	struct transport_addr a;
	struct transport_conn conn;
	int ret;

	if (!bm)
		return -ENOMEM;
	ret = transport_parse(uri, false, &a, env->err, env->errlen);
	if (!ret)
		ret = transport_connect(&a, MIG_IO_TIMEOUT_MS, &conn, env->err, env->errlen);
	if (ret)
		goto out;
	stream_attach(env->s, &conn, MIG_IO_TIMEOUT_MS);
	stream_preamble_encode(pre);
	le_put64(b, pc->token);
	ret = stream_write_all(env->s, pre, sizeof(pre), env->err, env->errlen);
	if (!ret)
		ret = stream_send(env->s, ST_RESUME, b, sizeof(b), env->err, env->errlen);
	for (;;) {
		struct stream_hdr h;

		if (!ret)
			ret = stream_recv_hdr(env->s, &h, env->err, env->errlen);
		if (ret)
			goto out;
		if (h.type == ST_RESUME) {
			ret = stream_recv_fixed(env->s, ST_RESUME, h.len, b, sizeof(b), env->err,
						env->errlen);
			if (!ret && le_get64(b) != pc->token) {
				snprintf(env->err, env->errlen, "the target's RESUME is not ours");
				ret = -EPROTO;
			}
			break;
		}
		if (h.type != ST_MISSING) {
			snprintf(env->err, env->errlen, "protocol error: %s from the target in a "
				 "recovery", stream_type_name(h.type));
			ret = h.type == ST_REJECT || h.type == ST_ERROR ? -ECONNREFUSED : -EPROTO;
			goto out;
		}
		ret = pc_missing_recv(env->s, h.len, bm, pc->npages, &n, env->err, env->errlen);
	}
	if (ret)
		goto out;
	/* The server is stopped: its bitmap can be reset too (what went on
	 * the old return path may have been lost with it). */
	for (uint64_t w = 0; w < words; w++) {
		atomic_store(&pc->to_send[w], bm[w]);
		pc->resendable[w] = bm[w];
		/* Whole pages from now on: a delta the target refused (the
		 * link "lost" for that) would otherwise come again and again. */
		if (pc->kept)
			atomic_store(&pc->kept[w], 0);
	}
	atomic_store(&pc->lost, 0);
	ret = pc_src_connect_rp(pc, &a, env->err, env->errlen);
	if (!ret)
		ret = pc_src_start_server(pc, env->err, env->errlen);
	if (!ret)
		fprintf(stderr, "minivmm: post-copy resumed on %s: %llu pages still to send\n", uri,
			(unsigned long long)n);
out:
	free(bm);
	return ret;
}

int pc_src_recover(struct pc_src *pc, struct mig_src_env *env)
{
	struct mig *m = env->m;
	char uri[512];
	int ret;

	pc_src_stop_server(pc);
	pc->rp_bytes_closed += pc->rp.bytes_out;
	stream_close(&pc->rp);
	/* A new main stream counts from 0: what this one wrote stays counted. */
	env->extra_bytes_out += env->s->bytes_out;
	stream_close(env->s);
	pthread_mutex_lock(&m->lock);
	m->state = MIG_POSTCOPY_PAUSED;
	snprintf(m->st.error, sizeof(m->st.error), "post-copy link lost: %s", env->err);
	pthread_mutex_unlock(&m->lock);
	fprintf(stderr, "minivmm: post-copy: the link to the target is lost (%s); the guest "
		"runs there and %llu or more of its pages are only here, so it stays paused here "
		"and nothing is discarded; `migrate_recover URI` on the target and `migrate URI` "
		"here resume\n", env->err, (unsigned long long)pc_src_left(pc));
	for (;;) {
		pthread_mutex_lock(&m->lock);
		while (!m->recover_pending && !m->cancel)
			pthread_cond_wait(&m->cond, &m->lock);
		if (m->cancel) {
			pthread_mutex_unlock(&m->lock);
			snprintf(env->err, env->errlen, "the VM was stopped during post-copy: the "
				 "pages the target still lacked are lost with it");
			return -ECANCELED;
		}
		snprintf(uri, sizeof(uri), "%s", m->recover_uri);
		pthread_mutex_unlock(&m->lock);
		ret = reconnect(pc, env, uri);
		pthread_mutex_lock(&m->lock);
		m->recover_pending = false;
		if (!ret) {
			m->state = MIG_POSTCOPY;
			m->st.pc_recoveries++;
			m->st.error[0] = 0;
		}
		pthread_mutex_unlock(&m->lock);
		if (!ret)
			return 0;
		fprintf(stderr, "minivmm: post-copy recovery via %s failed: %s; still paused\n",
			uri, env->err);
		env->extra_bytes_out += env->s->bytes_out;
		pc->rp_bytes_closed += pc->rp.bytes_out;
		stream_close(env->s);
		stream_close(&pc->rp);
	}
}

