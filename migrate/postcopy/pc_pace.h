/* Post-copy's push, kept from filling the link's queue (docs/postcopy.md,
 * "Fault latency"): a reply on the return path shares a FIFO bottleneck
 * with the push and waits behind whatever of it the link holds. Before
 * each piece of the push, pc_pace_wait waits until the main connection
 * holds little unsent or unacknowledged (and, optionally, paces the push
 * below the link's rate), so the link stays busy with the queue near
 * empty. */
#ifndef MINIVMM_MIGRATE_POSTCOPY_PC_PACE_H
#define MINIVMM_MIGRATE_POSTCOPY_PC_PACE_H

#include <stdbool.h>
#include <stdint.h>

struct transport_conn;

struct pc_pace {
	struct transport_conn *conn;
	uint32_t chunk_pages;   /* pages per frame of the push */
	uint32_t gate;          /* bytes: send only below this SIOCOUTQ; 0: off */
	double bw_Bps;          /* the link's rate as estimated (sleep lengths) */
	double pace_Bps;        /* application pacing; 0: off */
	uint64_t next_ns;       /* the pacer's next send */
	/* The rate the connection drains at while it is backlogged: the
	 * gate's sleeps (pre-copy's estimate can be a few headers' worth
	 * when the switch came at once). */
	double drain_Bps;
	uint64_t m_ns, m_added;
	uint32_t m_q;
	int old_slack;          /* the thread's timer slack (ns) before; -1: untouched */
	uint64_t waits, wait_ns;
};

/* Sets p up for the push on conn: bw_Bps pre-copy's estimate (0:
 * unknown), min_rtt_us and mss from the connection (0: unknown). */
void pc_pace_init(struct pc_pace *p, struct transport_conn *conn, double bw_Bps,
		  uint32_t min_rtt_us, uint32_t mss);
/* Before sending `bytes` of the push: waits as the gate and the pacer
 * say (never longer than PC_PACE_WAIT_MAX_NS in one call: a stalled
 * connection is the blocking write's to report). */
void pc_pace_wait(struct pc_pace *p, uint32_t bytes);
/* Restores the thread's timer slack. */
void pc_pace_fini(struct pc_pace *p);

#endif
