/* Keeps the push's share of the link's queue small (pc_pace.h). */
#include "migrate/postcopy/pc_pace.h"

#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>

#include "migrate/postcopy/pc_policy.h"
#include "migrate/transport/transport.h"
#include "vmm/core/clock.h"

/* The sleeps are tens of microseconds: the default slack (50 us) would
 * leave the link idle at each one. */
#define PC_PACE_TIMER_SLACK_NS 1000ul

void pc_pace_init(struct pc_pace *p, struct transport_conn *conn, double bw_Bps,
		  const struct transport_path *path)
{
	int old;

	memset(p, 0, sizeof(*p));
	p->conn = conn;
	p->old_slack = -1;
	p->piece_pages = PC_PUSH_PIECE_PAGES;
	if (!path)
		return;
	p->bw_Bps = bw_Bps >= PC_PUSH_BW_MIN ? bw_Bps : 0;
	p->min_rtt_us = path->min_rtt_us;
	p->mss = path->mss;
	p->gate = pc_policy_push_gate(p->bw_Bps, p->min_rtt_us, p->mss);
	p->piece_pages = pc_policy_push_piece(p->gate);
	old = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
	if (old >= 0 && !prctl(PR_SET_TIMERSLACK, PC_PACE_TIMER_SLACK_NS, 0, 0, 0))
		p->old_slack = old;
}

/* A drain sample: what left the queue since the last look, if it never
 * ran dry in between (else the link was idle part of the time). The gate
 * follows the larger of the estimate and the drain rate. */
static void measure(struct pc_pace *p, uint32_t q, uint64_t now)
{
	bool due = p->m_ns && now - p->m_ns >= PC_PUSH_DRAIN_SAMPLE_NS;

	if (due && q > 0 && p->m_q + p->m_added > q) {
		double r = (double)(p->m_q + p->m_added - q) * 1e9 / (double)(now - p->m_ns);

		p->drain_Bps = p->drain_Bps > 0 ? 0.75 * p->drain_Bps + 0.25 * r : r;
		p->gate = pc_policy_push_gate(p->drain_Bps > p->bw_Bps ? p->drain_Bps : p->bw_Bps,
					      p->min_rtt_us, p->mss);
		p->piece_pages = pc_policy_push_piece(p->gate);
	}
	if (!p->m_ns || due || q == 0) {
		p->m_ns = q ? now : 0;
		p->m_q = q;
		p->m_added = 0;
	}
}

void pc_pace_wait(struct pc_pace *p, uint32_t bytes)
{
	uint64_t t0 = clock_now_ns(), now = t0;
	uint32_t q;

	while (p->gate && !transport_send_queued(p->conn, &q)) {
		measure(p, q, now);
		if (q < p->gate || now - t0 >= PC_PUSH_WAIT_MAX_NS)
			break;
		clock_sleep_ns(pc_policy_push_sleep_ns(q - p->gate,
						 p->drain_Bps > 0 ? p->drain_Bps : p->bw_Bps));
		now = clock_now_ns();
	}
	p->m_added += bytes;
	if (now != t0) {
		p->waits++;
		p->wait_ns += now - t0;
	}
}

void pc_pace_fini(struct pc_pace *p)
{
	if (p->old_slack >= 0)
		prctl(PR_SET_TIMERSLACK, (unsigned long)p->old_slack, 0, 0, 0);
	p->old_slack = -1;
}
