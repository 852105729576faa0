/* Keeps the push's share of the link's queue small (pc_pace.h). */
#include "migrate/postcopy/pc_pace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "migrate/postcopy/pc_policy.h"
#include "migrate/postcopy/pc_wire.h"
#include "migrate/transport/transport.h"
#include "vmm/core/clock.h"

#define PC_PACE_WAIT_MAX_NS 20000000ull

/* EXPERIMENT knobs, MINIVMM_PC_EXP="chunk=N gk=K gadd=B pace=F slack=NS" */
static double exp_knob(const char *name, double def)
{
	const char *v = getenv("MINIVMM_PC_EXP"), *p;
	size_t n = strlen(name);

	for (p = v; p && (p = strstr(p, name)); p += n)
		if ((p == v || p[-1] == ' ') && p[n] == '=')
			return strtod(p + n + 1, NULL);
	return def;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u),
			       .tv_nsec = (long)(ns % 1000000000u) };

	nanosleep(&ts, NULL);
}

void pc_pace_init(struct pc_pace *p, struct transport_conn *conn, double bw_Bps,
		  uint32_t min_rtt_us, uint32_t mss)
{
	double gk = exp_knob("gk", 0), gadd = exp_knob("gadd", 0), pace = exp_knob("pace", 0);
	long slack = (long)exp_knob("slack", 0);

	memset(p, 0, sizeof(*p));
	p->conn = conn;
	p->old_slack = -1;
	p->chunk_pages = (uint32_t)exp_knob("chunk", PC_BATCH_PAGES);
	if (p->chunk_pages < 1 || p->chunk_pages > PC_BATCH_PAGES)
		p->chunk_pages = PC_BATCH_PAGES;
	p->bw_Bps = bw_Bps > 0 ? bw_Bps : 0;
	if ((gk > 0 || gadd > 0) && p->bw_Bps > 0 && min_rtt_us) {
		double g = gk * p->bw_Bps * min_rtt_us / 1e6 + gadd;

		if (g < 4.0 * mss)
			g = 4.0 * mss;
		p->gate = (uint32_t)g;
	}
	if (pace > 0 && p->bw_Bps > 0)
		p->pace_Bps = pace * p->bw_Bps;
	if (slack > 0 && (p->gate || p->pace_Bps)) {
		int old = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);

		if (old >= 0 && !prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0))
			p->old_slack = old;
	}
	if (getenv("MINIVMM_PC_EXP"))
		fprintf(stderr, "minivmm: EXP pace: chunk %u gate %u bw %.0f pace %.0f rtt %u mss %u\n",
			p->chunk_pages, p->gate, p->bw_Bps, p->pace_Bps, min_rtt_us, mss);
}

/* A drain sample: what left the queue since the last look, when the
 * queue never ran dry in between (else the link was idle part of it). */
static void measure(struct pc_pace *p, uint32_t q, uint64_t now)
{
	if (p->m_ns && q > 0 && now - p->m_ns >= 50000) {
		double left = (double)p->m_q + (double)p->m_added - q;

		if (left > 0) {
			double r = left * 1e9 / (double)(now - p->m_ns);

			p->drain_Bps = p->drain_Bps > 0 ? 0.75 * p->drain_Bps + 0.25 * r : r;
		}
	}
	if (!p->m_ns || q == 0 || now - p->m_ns >= 50000) {
		p->m_ns = q ? now : 0;
		p->m_q = q;
		p->m_added = 0;
	}
}

void pc_pace_wait(struct pc_pace *p, uint32_t bytes)
{
	uint64_t t0 = clock_now_ns(), now = t0;

	if (p->pace_Bps > 0) {
		/* At most one piece of credit: a pause never turns into a burst. */
		uint64_t piece = (uint64_t)(bytes * 1e9 / p->pace_Bps);

		if (p->next_ns + piece < now)
			p->next_ns = now - piece;
		if (p->next_ns > now)
			sleep_ns(p->next_ns - now < PC_PACE_WAIT_MAX_NS ? p->next_ns - now :
				 PC_PACE_WAIT_MAX_NS);
		p->next_ns += piece;
		now = clock_now_ns();
	}
	while (p->gate) {
		uint32_t q;
		uint64_t ns;
		double r;

		if (transport_send_queued(p->conn, &q))
			break;
		measure(p, q, now);
		if (q < p->gate || now - t0 >= PC_PACE_WAIT_MAX_NS)
			break;
		/* About until the excess has drained. */
		r = p->drain_Bps > 0 ? p->drain_Bps : p->bw_Bps >= 1e6 ? p->bw_Bps : 1e8;
		ns = (uint64_t)((q - p->gate + 1) * 1e9 / r);
		sleep_ns(ns < 10000 ? 10000 : ns > 2000000 ? 2000000 : ns);
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
	if (getenv("MINIVMM_PC_EXP"))
		fprintf(stderr, "minivmm: EXP pace: %llu waits, %.1f ms, drain %.0f\n",
			(unsigned long long)p->waits, p->wait_ns / 1e6, p->drain_Bps);
}
