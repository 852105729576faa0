/* The switch to post-copy: at once when the operator asks
 * (migrate_start_postcopy), else, with on-nonconvergence postcopy, when
 * pre-copy stops making progress: a backstop is reached, or a sync found
 * at least 90 % of what the sync before it left (after round 0: of what
 * round 0 sent) dirty again: the guest rewrites its memory as fast as the
 * link carries it, so more rounds only cost time. */
#include "migrate/postcopy/pc_policy.h"

#include "migrate/postcopy/pc_wire.h"
#include "vmm/core/vm.h"

bool pc_policy_due(const struct mig_tunables *t, bool asked, enum est_decision why, uint32_t r,
		   uint64_t bytes, uint64_t before)
{
	/* Asked, it switches even if pre-copy would converge now: the pass
	 * the request ended early left pages only the switch accounts for. */
	if (!t->postcopy)
		return false;
	if (asked)
		return true;
	if (why == EST_CONVERGED)
		return false;
	if (t->nonconvergence != MIG_NONCONV_POSTCOPY)
		return false;
	if (why != EST_CONTINUE)
		return true;
	return r >= 1 && before && bytes * 10 >= before * 9;
}

/* times x the bandwidth-delay product plus slack, within [4 segments,
 * PC_PUSH_QUEUE_MAX]. */
static uint32_t bdp_bound(double times, double bw_Bps, uint32_t min_rtt_us, uint32_t mss,
			  uint32_t slack)
{
	double q = times * bw_Bps * min_rtt_us / 1e6 + slack;

	if (q < 4.0 * mss)
		q = 4.0 * mss;
	return q > PC_PUSH_QUEUE_MAX ? PC_PUSH_QUEUE_MAX : (uint32_t)q;
}

/* A page the target asked for queues behind whatever of the push the link
 * still holds, and the kernel sizes a socket's queue for throughput alone
 * (milliseconds of a link). Four times the bandwidth-delay product keeps
 * the link as busy, even when pre-copy's estimate understated the link
 * (rounds bound by the CPU), and leaves a reply behind little more. Four
 * segments at least: the receiver acknowledges every second full one, and
 * a queue smaller than that waits for a delayed ACK (40 ms) each time. */
uint32_t pc_policy_push_queue(double bw_Bps, uint32_t min_rtt_us, uint32_t mss)
{
	return bdp_bound(4, bw_Bps, min_rtt_us, mss, PC_PUSH_QUEUE_MIN);
}

/* A reply waits behind what the link holds of the push: one BDP is what
 * keeps the link busy between acknowledgements, the slack what drains
 * while the push wakes up to write its next piece. */
uint32_t pc_policy_push_gate(double bw_Bps, uint32_t min_rtt_us, uint32_t mss)
{
	return bdp_bound(1, bw_Bps, min_rtt_us, mss, PC_PUSH_GATE_SLACK);
}

uint64_t pc_policy_push_sleep_ns(uint32_t over, double drain_Bps)
{
	double ns = (over + 1.0) * 1e9 / (drain_Bps > 0 ? drain_Bps : PC_PUSH_DRAIN_GUESS);

	if (ns < PC_PUSH_SLEEP_MIN_NS)
		return PC_PUSH_SLEEP_MIN_NS;
	return ns > PC_PUSH_SLEEP_MAX_NS ? PC_PUSH_SLEEP_MAX_NS : (uint64_t)ns;
}

/* Small pieces on a slow link, where a piece is a reply's wait; larger
 * ones where the gate is large anyway (loopback: 64 KiB segments), so a
 * fast link does not pay a syscall per 8 KiB. */
uint32_t pc_policy_push_piece(uint32_t gate)
{
	uint32_t n = (uint32_t)(gate / 4 / VM_PAGE_SIZE);

	if (n < PC_PUSH_PIECE_PAGES)
		return PC_PUSH_PIECE_PAGES;
	return n > PC_BATCH_PAGES ? PC_BATCH_PAGES : n;
}
