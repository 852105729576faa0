/* The machine-state section: the vmstate blob (vCPUs, VM-level KVM state,
 * devices; docs/vmstate.md) as one STATE frame in the pause. Its cost is
 * measured once, at the start, by saving the state of the briefly paused
 * guest: the stop rule counts it as part of the switchover. */
#include "migrate/section.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "migrate/mig.h"
#include "migrate/proto/stream.h"
#include "migrate/state/vmstate.h"

struct state_sec {
	double save_ms;   /* one vmstate_save, measured by save_probe */
	size_t len;       /* its size */
	uint8_t *blob;    /* target: the STATE payload until END */
	size_t blob_len;
	bool loaded;      /* target: the state is in the VM */
};

static void *state_create(void)
{
	return calloc(1, sizeof(struct state_sec));
}

static void state_destroy(void *sec)
{
	struct state_sec *x = sec;

	if (x)
		free(x->blob);
	free(x);
}

static int state_probe(void *sec, struct mig_src_env *env)
{
	struct state_sec *x = sec;
	uint8_t *blob = NULL;
	uint64_t t = clock_now_ns();
	int ret = vmstate_save(env->vm, &blob, &x->len, env->err, env->errlen);

	x->save_ms = clock_ms_since(t);
	free(blob);
	return ret;
}

/* Load on the target is taken to cost what save costs here (the same
 * ioctls, reversed), and the blob crosses the link once. */
static double state_cost_ms(void *sec, struct mig_src_env *env)
{
	struct state_sec *x = sec;
	double bw = est_bandwidth(env->e);

	return x->save_ms * 2 + (bw > 0 ? (double)x->len * 1000.0 / bw : 0);
}

static int state_complete(void *sec, struct mig_src_env *env, struct mig_end *end)
{
	uint8_t *blob = NULL;
	size_t len = 0;
	int ret;

	(void)sec;
	(void)end;
	ret = vmstate_save(env->vm, &blob, &len, env->err, env->errlen);
	if (ret)
		return ret;
	if (len > STATE_MAX_LEN) {
		snprintf(env->err, env->errlen, "vmstate blob of %zu bytes is too large", len);
		free(blob);
		return -E2BIG;
	}
	ret = stream_send(env->s, ST_STATE, blob, (uint32_t)len, env->err, env->errlen);
	free(blob);
	return ret;
}

/* The devices' late part: frames a NIC's tap got after STATE while the
 * guest stayed paused here, which would otherwise be lost. */
static int state_late(void *sec, struct mig_src_env *env)
{
	uint8_t *blob = NULL;
	size_t len = 0;
	int ret;

	(void)sec;
	ret = vmstate_save_late(env->vm, &blob, &len, env->err, env->errlen);
	if (!ret && len > LATE_MAX_LEN) {
		snprintf(env->err, env->errlen, "late device data of %zu bytes is too large", len);
		ret = -E2BIG;
	}
	if (!ret && len)
		ret = stream_send(env->s, ST_LATE, blob, (uint32_t)len, env->err, env->errlen);
	free(blob);
	return ret;
}

static int load_late(struct mig_tgt_env *env, uint32_t len)
{
	uint8_t *buf = malloc(len ? len : 1);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = stream_read_all(env->s, buf, len, env->err, env->errlen);
	if (!ret)
		ret = vmstate_load_late(env->vm, buf, len, env->err, env->errlen);
	free(buf);
	return ret;
}

static int state_load_frame(void *sec, struct mig_tgt_env *env, const struct stream_hdr *h)
{
	struct state_sec *x = sec;

	if (h->type == ST_LATE) {
		if (!x->loaded) {
			snprintf(env->err, env->errlen, "protocol error: LATE before the state was loaded");
			return -EPROTO;
		}
		return load_late(env, h->len);
	}
	if (x->blob) {
		snprintf(env->err, env->errlen, "protocol error: machine state sent twice");
		return -EPROTO;
	}
	x->blob = malloc(h->len ? h->len : 1);
	if (!x->blob)
		return -ENOMEM;
	x->blob_len = h->len;
	return stream_read_all(env->s, x->blob, h->len, env->err, env->errlen);
}

static int state_load_complete(void *sec, struct mig_tgt_env *env, const struct mig_end *end)
{
	struct state_sec *x = sec;
	int ret;

	(void)end;
	if (!x->blob) {
		snprintf(env->err, env->errlen, "protocol error: END before the machine state");
		return -EPROTO;
	}
	ret = vmstate_load(env->vm, x->blob, x->blob_len, env->err, env->errlen);
	x->loaded = !ret;
	return ret;
}

static const uint32_t state_frames[] = { ST_STATE, ST_LATE, 0 };

const struct mig_section_ops state_section_ops = {
	.name = "machine state",
	.create = state_create,
	.destroy = state_destroy,
	.save_probe = state_probe,
	.save_cost_ms = state_cost_ms,
	.save_complete = state_complete,
	.save_late = state_late,
	.frames = state_frames,
	.load_frame = state_load_frame,
	.load_complete = state_load_complete,
};
