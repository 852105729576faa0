/* Post-copy's push, kept from filling the link's queue (docs/postcopy.md,
 * "Not done", fault latency): a reply on the return path shares a FIFO
 * bottleneck with the push and waits behind whatever of the push the link
 * holds. The push goes in small pieces, and pc_pace_wait lets the next
 * one go only while the main connection holds less than a gate (unsent or
 * unacknowledged bytes, SIOCOUTQ): about one bandwidth-delay product, so
 * the link stays busy with its queue near empty. */
#ifndef MINIVMM_MIGRATE_POSTCOPY_PC_PACE_H
#define MINIVMM_MIGRATE_POSTCOPY_PC_PACE_H

#include <stdint.h>

struct transport_conn;
struct transport_path;

struct pc_pace {
	struct transport_conn *conn;
	uint32_t piece_pages;   /* pages per frame of the push */
	uint32_t gate;          /* bytes; 0: no gate (not TCP, nothing measured) */
	double bw_Bps;          /* pre-copy's estimate, 0: none worth the name */
	uint32_t min_rtt_us, mss;
	/* The rate the queue drains at while it never runs dry: the sleeps'
	 * lengths and the gate's BDP (pre-copy's estimate is only a few
	 * headers' worth when the switch came at once). */
	double drain_Bps;
	uint64_t m_ns, m_added; /* the last look: when (0: none), bytes written since */
	uint32_t m_q;           /* and what the queue held then */
	int old_slack;          /* the thread's timer slack before; -1: untouched */
	uint64_t waits, wait_ns;
};

/* Sets p up for the push on conn: bw_Bps pre-copy's estimate (0:
 * unknown); the gate needs the connection's path (transport_path_info;
 * NULL: not TCP), else p only cuts the push in pieces. */
void pc_pace_init(struct pc_pace *p, struct transport_conn *conn, double bw_Bps,
		  const struct transport_path *path);
/* Before writing `bytes` of the push: waits until the queue is below the
 * gate, at most PC_PUSH_WAIT_MAX_NS in one call (a stalled connection is
 * the blocking write's to report). */
void pc_pace_wait(struct pc_pace *p, uint32_t bytes);
/* Restores the thread's timer slack. */
void pc_pace_fini(struct pc_pace *p);

#endif
