/* Delta encoding of re-sent pages (xbzrle-cache; QEMU's XBZRLE with XOR
 * runs): the codec (xbzrle.c, pure) and the source's cache of what it
 * last sent of each page (xbz_cache.c). Wire format and rules:
 * docs/migration-stream.md, "PAGES", delta runs.
 *
 * An encoded page is a sequence of pairs
 *     ULEB128 zero-run length Z, ULEB128 non-zero-run length N, N bytes
 * meaning: Z bytes unchanged, then N bytes XORed with these. Z is 0 only
 * in the first pair; N >= 1; every length in its shortest encoding (at
 * most 2 bytes: page offsets fit in 14 bits); the pairs stay inside the
 * page; the unchanged tail is implicit. An empty encoding: the page did
 * not change. */
#ifndef MINIVMM_MIGRATE_RAM_XBZRLE_H
#define MINIVMM_MIGRATE_RAM_XBZRLE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define XBZ_PAGE 4096u
/* An entry on the wire is a u16 length and the encoding: at most this
 * long, so an entry never exceeds a whole page (and a PAGES frame never
 * exceeds its limit). Longer encodings go as whole pages. */
#define XBZ_MAX_ENC (XBZ_PAGE - 2)

/* Encodes new against old into out (cap bytes). Returns the length
 * (0: identical), or -1 when it would exceed cap. */
int xbzrle_encode(const uint8_t *old, const uint8_t *cur, uint8_t *out, size_t cap);
/* Checks the whole encoding, then applies it to page (XBZ_PAGE bytes):
 * nothing is changed when it is refused (-EPROTO with the reason). */
int xbzrle_decode(const uint8_t *in, size_t len, uint8_t *page, char *err, size_t errlen);

/* The entry at *pos of a frame's delta entries (area, len bytes): its
 * encoding in *enc, *enc_len; *pos moved past it. -EPROTO when the entry
 * is cut off or longer than XBZ_MAX_ENC (nothing else is checked: the
 * encoding is xbzrle_decode's). */
int xbzrle_entry_next(const uint8_t *area, uint64_t len, uint64_t *pos, const uint8_t **enc,
		      uint32_t *enc_len, char *err, size_t errlen);

/* ---- the source's cache (xbz_cache.c) ---------------------------------
 * Direct-mapped by page index: slot = page % nslots, each slot a tag and
 * a page copy. Shared by the data channels' senders (a page may go over
 * any channel, one round to the next), so slots are guarded by striped
 * locks. Invariant: a slot tagged p holds exactly what the target last
 * got for p; every send of p either updates it or leaves p untagged. */
#define XBZ_LOCKS 64

struct xbz_cache {
	uint64_t nslots;
	uint64_t *tag;        /* page index + 1; 0: empty */
	uint8_t *data;
	pthread_mutex_t mu[XBZ_LOCKS];
};

/* bytes is rounded down to whole pages; at least one. */
int xbz_cache_create(struct xbz_cache **out, uint64_t bytes, char *err, size_t errlen);
void xbz_cache_destroy(struct xbz_cache *c);
/* page's contents are snap (a stable copy: the guest may be writing the
 * original). Puts snap into the cache; when the cache held page, also
 * encodes snap against it into out: returns the length (0..XBZ_MAX_ENC),
 * or -1 (a miss, or an encoding too long): send snap whole. */
int xbz_cache_put(struct xbz_cache *c, uint64_t page, const uint8_t *snap, uint8_t *out,
		  int *miss);
/* Post-copy's push (which relies on the invariant above holding at the
 * switch): encodes cur against what the cache holds of page
 * into out (cap bytes) and leaves the cache as it is, so that every copy
 * of the page sent after the switch (a resend, a recovery) is encoded
 * against the same base: what the target held at the switch. Returns the
 * length, or -1 (a miss, longer than cap, or a page whose first 256
 * bytes changed in 24 or more of their 32 words: rewritten whole). */
int xbz_cache_delta(struct xbz_cache *c, uint64_t page, const uint8_t *cur, uint8_t *out,
		    size_t cap);
/* The page goes some other way (a zero marker): forget it. */
void xbz_cache_forget(struct xbz_cache *c, uint64_t page);

#endif
