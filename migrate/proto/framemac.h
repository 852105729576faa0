/* Frame MACs (docs/migration-stream.md, "Integrity"): once a keyed
 * handshake is done, every frame on a connection is followed by a 16-byte
 * tag, HMAC-SHA256 truncated, over
 *     u64 sequence number | frame header | payload
 * with a key of that connection and direction, derived from the session
 * secret. The sequence number is the frame's index on that connection in
 * that direction (not on the wire): a frame dropped, repeated, reordered
 * or moved to another connection fails. With integrity off, PAGES frames
 * go without a tag (they still count in the sequence); every other frame
 * keeps its tag.
 *
 * The stream calls these from its I/O loop, so no reader or writer
 * changes: a writer hands over whole frames (header and payload in one
 * call), a reader reads a header, then its payload in any pieces; the tag
 * is read and checked as part of the read that completes the frame, so a
 * frame is checked before any caller acts on it (page contents aside,
 * which land in guest RAM of a VM that has not run, before the check:
 * docs/security.md). */
#ifndef MINIVMM_PROTO_FRAMEMAC_H
#define MINIVMM_PROTO_FRAMEMAC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "migrate/auth/hmac.h"

#define FRAME_TAG_LEN 16
#define FRAME_CHAN_MAIN 0u /* data channel i is i + 1 */

struct stream_mac {
	struct hmac_key tx, rx;
	uint64_t tx_seq, rx_seq;
	bool integrity;           /* PAGES carry tags too */
	uint8_t session[SHA256_LEN];
	bool source;              /* which end this is */
	/* receive: the frame being read */
	uint8_t hdr[8];
	uint32_t hdr_have;
	uint32_t remain;          /* payload bytes still to come */
	bool tagged;
	bool overrun;             /* a read crossed the frame's end */
	struct hmac h;
	/* send: the frame and its tag, contiguous */
	uint8_t *bounce;
	size_t bounce_cap;
};

/* A connection's MAC state from the session secret: chan
 * FRAME_CHAN_MAIN or data channel + 1; source says which end we are. */
struct stream_mac *framemac_new(const uint8_t session[SHA256_LEN], uint32_t chan, bool source,
				bool integrity);
void framemac_free(struct stream_mac *m);
/* The tag of one whole frame (header + payload in frame) with the key of
 * (session, chan, from_source) at seq: for a first frame read before the
 * connection's state exists (a data channel says its index in it). */
void framemac_tag_once(const uint8_t session[SHA256_LEN], uint32_t chan, bool from_source,
		       uint64_t seq, const void *frame, size_t len, uint8_t tag[FRAME_TAG_LEN]);

/* Send: a whole frame in iov. 1: send iov as it is (an untagged PAGES);
 * 0: send *out instead (the frame copied, then its tag: the MAC covers
 * exactly the bytes sent, though a running guest changes its RAM while
 * they go); -EINVAL: not one whole frame. */
int framemac_tx(struct stream_mac *m, const struct iovec *iov, int iovcnt, struct iovec *out,
		char *err, size_t errlen);
/* Receive: n bytes just read into iov[0..]; then, after the read,
 * framemac_rx_done() says whether it completed a frame, and
 * framemac_rx_tagged() whether a tag follows to read and pass to
 * framemac_rx_check (tag NULL for an untagged one). */
void framemac_rx_feed(struct stream_mac *m, const struct iovec *iov, int iovcnt, size_t n);
bool framemac_rx_done(const struct stream_mac *m);
bool framemac_rx_tagged(const struct stream_mac *m);
int framemac_rx_check(struct stream_mac *m, const uint8_t *tag, char *err, size_t errlen);

#endif
