/* The migration stream: a preamble, then framed messages (u32 type, u32
 * length, payload), all little-endian. Layout and limits are documented in
 * docs/migration-stream.md; this file is the only place that knows them.
 *
 * Everything read from the peer is untrusted: stream_recv_hdr() refuses an
 * unknown type or a length above that type's limit before any payload is
 * read, and the decoders check every field before returning it. */
#ifndef MINIVMM_MIGRATE_STREAM_H
#define MINIVMM_MIGRATE_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "migrate/transport/transport.h"

#define STREAM_MAGIC "MVMMIGR\n"
#define STREAM_MAGIC_LEN 8
#define STREAM_VERSION 1u
#define STREAM_PREAMBLE_LEN 16 /* magic, u32 version, u32 flags */
#define PREAMBLE_FLAG_AUTH 1u  /* a keyed handshake follows (AUTH_HELLO) */
#define STREAM_HDR_LEN 8

enum stream_type {
	ST_HELLO = 1,   /* S->T: VM config, CPU description */
	ST_ACCEPT = 2,  /* T->S: empty */
	ST_REJECT = 3,  /* T->S: reason text */
	ST_PING = 4,    /* S->T: u64 token (round-trip measurement) */
	ST_PONG = 5,    /* T->S: the same token */
	ST_ROUND = 6,   /* S->T: u32 round: the pages that follow belong to it */
	ST_PAGES = 7,   /* S->T: a batch of page runs and their contents */
	ST_STATE = 8,   /* S->T: the vmstate blob (vCPUs, irqchip, PIT, clock, UART) */
	ST_END = 9,     /* S->T: u32 flags, u64 RAM digest */
	ST_READY = 10,  /* T->S: state loaded and checked */
	ST_COMMIT = 11, /* S->T: the target owns the guest from now on */
	ST_RUNNING = 12,/* T->S: the target's vCPUs run */
	ST_ERROR = 13,  /* either way: reason text; the sender gives up */
	ST_CHANNELS = 14, /* S->T: u32 data channels wanted, u64 0; T->S: u32 granted, u64 token */
	ST_CHANNEL = 15,  /* first frame of a data channel: u32 index, u64 token */
	ST_SYNC = 16,     /* data channel: u32 round: no more pages of it here */
	ST_DEVICES = 17,  /* S->T right after HELLO (HELLO_FLAG_DEVICES): devices the host must provide */
	ST_LATE = 18,     /* S->T between READY and COMMIT: what the devices got after STATE */
	ST_DISK = 19,     /* S->T in the pause: the disk handed over (size, digest of sampled blocks) */
	ST_DISK_DATA = 20, /* S->T: disk bytes at an offset, or a zero run (--migrate-disk) */
	ST_AUTH_HELLO = 21,     /* S->T: keyed handshake: version, flags, source nonce */
	ST_AUTH_CHALLENGE = 22, /* T->S: version, flags, target nonce, target proof */
	ST_AUTH_PROOF = 23,     /* S->T: source proof */
	/* post-copy (docs/postcopy.md) */
	ST_POSTCOPY = 24,    /* before round 0: S->T u32 0, u64 0; T->S u32 accepted, u64 token */
	ST_RETURN_PATH = 25, /* first frame of the page-request connection: u64 token, u32 0 */
	ST_MISSING = 26,     /* a slice of the bitmap of pages the target lacks (both ways) */
	ST_PAGE_REQ = 27,    /* T->S on the return path: u64 first page, u32 count */
	ST_PC_DONE = 28,     /* T->S: every page is here (empty) */
	ST_RESUME = 29,      /* a new main connection after a post-copy link loss: u64 token */
	ST_PC_KEPT = 30,     /* T->S, return path: a slice of the pages whose stale copy it keeps */
	ST_TYPE_MAX = 30,
};

/* Page batches: a u32 run count, a u32 reserved word, the runs, then the
 * contents of every normal page in run order. */
#define PAGES_HDR_LEN 8
#define PAGE_RUN_LEN 16
#define PAGES_MAX_RUNS 1000u          /* one iovec each, under IOV_MAX */
#define PAGES_MAX_DATA_PAGES 4096u    /* 16 MiB of contents per batch */
#define PAGE_RUN_NORMAL 0u
#define PAGE_RUN_ZERO 1u
/* Delta-encoded pages (xbzrle-cache): their entries (u16 length, then
 * the encoding, migrate/ram/xbzrle.h) follow all normal contents. */
#define PAGE_RUN_DELTA 2u
#define PAGE_DELTA_HDR 2u

#define HELLO_NAME_LEN 64
#define HELLO_FIXED_LEN (4 + 4 + 8 + 4 + 4 + 4 + HELLO_NAME_LEN + 4)
#define HELLO_MAX_COMPAT 16384u
#define HELLO_FLAG_VERIFY_RAM 1u
#define HELLO_FLAG_DEVICES 2u   /* a DEVICES frame follows HELLO */
#define DEVICES_MAX_LEN 4096u
#define LATE_MAX_LEN (1u << 20)
#define ROUND_LEN 8
#define ROUND_FLAG_FINAL 1u     /* the guest is paused: last round */
#define ROUND_FLAG_CONVERGED 2u /* the stop rule was met (else a backstop) */
#define END_LEN 12
#define DISK_LEN 24
#define DISK_FLAG_FLUSHED 1u /* fdatasynced and unlocked on the source */
#define DISK_FLAG_STREAMED 2u /* the disk came in the stream (DISK_DATA) */
/* DISK_DATA: u64 offset, u32 length, u32 flags, then length bytes unless
 * the run is zeros; offset and length whole 512-byte sectors. */
#define DISK_DATA_HDR 16u
#define DISK_DATA_MAX (1u << 20)
#define DISK_DATA_ZERO 1u  /* the run reads as zeros: no bytes follow */
#define DISK_DATA_BULK 2u  /* the bulk pass: nothing was written here before */
#define END_FLAG_DIGEST 1u
#define STATE_MAX_LEN (64u << 20)
#define CHANNELS_LEN 12
#define CHANNEL_LEN 12
#define SYNC_LEN 4
#define CHANNELS_MAX 8u
#define TEXT_MAX_LEN 1024u
/* The keyed handshake (migrate/auth/handshake.c). */
#define AUTH_NONCE_LEN 32u
#define AUTH_MAC_LEN 32u
#define AUTH_HELLO_LEN (8u + AUTH_NONCE_LEN)                    /* version, flags, nonce */
#define AUTH_CHALLENGE_LEN (8u + AUTH_NONCE_LEN + AUTH_MAC_LEN) /* + the target's proof */
#define AUTH_PROOF_LEN AUTH_MAC_LEN
#define AUTH_FLAG_INTEGRITY 1u /* every frame carries a MAC, PAGES included */
#define POSTCOPY_LEN 12
/* POSTCOPY's u32: from the source, what it offers; from the target, what
 * it takes (ACCEPTED: post-copy at all). */
#define POSTCOPY_ACCEPTED 1u
#define POSTCOPY_DELTA 2u  /* the push may send deltas against stale copies (PC_KEPT) */
#define RETURN_PATH_LEN 12
#define MISSING_HDR_LEN 16      /* u64 first page (multiple of 64), u32 words, u32 0 */
#define MISSING_MAX_WORDS 131072u /* 1 MiB of bitmap: 4 GiB of RAM per frame */
#define PAGE_REQ_LEN 12
#define PAGE_REQ_MAX_PAGES 64u
#define RESUME_LEN 8
#define ROUND_FLAG_POSTCOPY 4u  /* with FINAL: the target runs the guest before it has every page */

struct stream_hdr {
	uint32_t type;
	uint32_t len;
};

struct hello {
	uint32_t version;      /* STREAM_VERSION of the sender */
	uint32_t flags;        /* HELLO_FLAG_* */
	uint64_t mem_size;
	uint32_t ncpus;
	uint32_t pid;          /* the source VMM: a same-host name clash check */
	uint32_t page_size;
	char name[HELLO_NAME_LEN];
	uint32_t compat_len;   /* cpucompat blob, opaque here */
	const uint8_t *compat; /* points into the decoded buffer */
};

struct page_run {
	uint64_t first; /* page index in RAM (RAM offset / 4096) */
	uint32_t count;
	uint32_t kind;  /* PAGE_RUN_NORMAL | PAGE_RUN_ZERO | PAGE_RUN_DELTA */
};

/* A connection (or a file, for cold migration) plus the byte counters the
 * stats need. timeout_ms bounds every blocking read and write. */
struct stream {
	struct transport_conn conn; /* conn.fd -1: closed */
	int timeout_ms;
	int cancel_fd; /* readable = give up now (-1: none); see stream.c */
	/* Target side, against peers that trickle (SO_RCVTIMEO bounds one
	 * read, not a frame): intr_fd readable = a signal is pending (a
	 * signalfd, polled, never read: the run loop reads it later);
	 * deadline_ns (clock_now_ns, 0: none) bounds every read from now on
	 * (the handshake as a whole); frame_ms > 0 gives each frame read by
	 * stream_recv_hdr a deadline of its own (stream_frame_deadline_ms). */
	int intr_fd;
	uint64_t deadline_ns;
	int frame_ms;
	/* idle_ms > 0: the wait for a frame's first byte may last that long
	 * (frame_ms starts at that byte); then -ETIME. idle_live (or NULL):
	 * a counter that every connection of the migration adds its frames'
	 * lengths to; the wait goes on while it moves (a quiet connection
	 * beside busy ones: the peer is alive). */
	int idle_ms;
	atomic_uint_fast64_t *idle_live;
	uint64_t frame_deadline_ns;
	uint64_t bytes_out;
	uint64_t bytes_in;
	/* Frame MACs after a keyed handshake (framemac.h), NULL: none.
	 * Owned: stream_close frees it. */
	struct stream_mac *mac;
};

static inline void le_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline uint16_t le_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline void le_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void le_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t le_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t le_get64(const uint8_t *p)
{
	return (uint64_t)le_get32(p) | (uint64_t)le_get32(p + 4) << 32;
}

const char *stream_type_name(uint32_t type);
/* Largest payload a frame of this type may carry (0 for an unknown type). */
uint32_t stream_max_len(uint32_t type);

/* Pure encoders/decoders (unit-tested without sockets). */
void stream_preamble_encode(uint8_t out[STREAM_PREAMBLE_LEN]);
/* The same with flags (PREAMBLE_FLAG_*); decode's flags argument may be NULL. */
void stream_preamble_encode_flags(uint8_t out[STREAM_PREAMBLE_LEN], uint32_t flags);
uint32_t stream_preamble_flags(const uint8_t in[STREAM_PREAMBLE_LEN]);
int stream_preamble_decode(const uint8_t in[STREAM_PREAMBLE_LEN], char *err,
			   size_t errlen);
void stream_hdr_encode(uint8_t out[STREAM_HDR_LEN], uint32_t type, uint32_t len);
int stream_hdr_decode(const uint8_t in[STREAM_HDR_LEN], struct stream_hdr *h,
		      char *err, size_t errlen);
/* HELLO: encode returns the length written to out (cap >= HELLO_FIXED_LEN
 * + compat_len) or -EINVAL. decode checks every field. */
int stream_hello_encode(const struct hello *h, uint8_t *out, size_t cap);
int stream_hello_decode(const uint8_t *in, size_t len, struct hello *h,
			char *err, size_t errlen);
/* PAGES, from its first PAGES_HDR_LEN bytes: the length of the run table,
 * checked against len (the whole payload); -EPROTO if it cannot fit. */
int stream_pages_table_len(const uint8_t *hdr, size_t len, uint64_t *table,
			   char *err, size_t errlen);
/* PAGES: checks the run table against len (the whole payload) and npages
 * (guest RAM). Returns the number of runs; *data_pages gets the normal
 * page count whose contents follow the table, *delta_pages the delta
 * pages whose entries follow those (delta_pages NULL: delta runs are
 * refused). With delta runs the length can only be bounded here (2 to
 * 4096 bytes an entry); the receiver checks the entries exactly. */
int stream_pages_decode(const uint8_t *in, size_t len, uint64_t npages,
			struct page_run *runs, size_t maxruns,
			uint64_t *data_pages, uint64_t *delta_pages, char *err, size_t errlen);
void stream_run_encode(uint8_t out[PAGE_RUN_LEN], const struct page_run *r);

/* The stream over a connection made by transport_connect/_accept/
 * _open_file (it owns it from now on); timeout_ms as given to those. */
void stream_attach(struct stream *s, const struct transport_conn *c, int timeout_ms);
/* Closed, counters zero: what a stream is before it is attached. */
void stream_reset(struct stream *s);
static inline bool stream_is_open(const struct stream *s)
{
	return s->conn.fd >= 0;
}
/* The slowest a frame of len payload bytes may arrive once its header
 * is in: frame_ms plus len at STREAM_MIN_RATE_BPS (16 MiB PAGES: 26 s at
 * frame_ms 10 s). A header itself gets frame_ms. */
#define STREAM_MIN_RATE_BPS (1u << 20)
uint64_t stream_frame_deadline_ms(int frame_ms, uint32_t len);
/* Gives each frame read from now on frame_ms (0: no per-frame bound),
 * dropping the deadline of the frame before: a stream that stays open
 * past it (the return path, the main connection into post-copy) must
 * not inherit it. */
void stream_set_frame_ms(struct stream *s, int frame_ms);
/* Bounds blocking I/O from now on (roll-back's last words, say). */
void stream_set_timeout(struct stream *s, int timeout_ms);
/* From any thread: blocked I/O on the stream returns at once. */
void stream_shutdown(struct stream *s);
void stream_close(struct stream *s);
/* From now on every frame each way carries a MAC (framemac.h); chan:
 * FRAME_CHAN_MAIN or data channel + 1. -ENOMEM. */
int stream_mac_enable(struct stream *s, const uint8_t session[32], uint32_t chan, bool source,
		      bool integrity);
/* The session secret a keyed stream was set up with (its data channels
 * derive theirs from it), NULL when keyless; and its integrity setting. */
const uint8_t *stream_mac_session(const struct stream *s);
bool stream_mac_integrity(const struct stream *s);

/* I/O: whole buffers or errors ("timed out", "connection closed by the
 * target"...). peer names the other side in messages. */
int stream_write_all(struct stream *s, const void *buf, size_t len, char *err,
		     size_t errlen);
int stream_writev_all(struct stream *s, struct iovec *iov, int iovcnt,
		      char *err, size_t errlen);
int stream_read_all(struct stream *s, void *buf, size_t len, char *err,
		    size_t errlen);
int stream_readv_all(struct stream *s, struct iovec *iov, int iovcnt,
		     char *err, size_t errlen);

/* One whole frame: header plus payload. */
int stream_send(struct stream *s, uint32_t type, const void *payload,
		uint32_t len, char *err, size_t errlen);
int stream_send_text(struct stream *s, uint32_t type, const char *text);
int stream_recv_hdr(struct stream *s, struct stream_hdr *h, char *err,
		    size_t errlen);
/* Receives a frame that must be of type want and fit in cap; an ERROR or
 * REJECT frame from the peer becomes -ECONNABORTED with its text. */
int stream_recv_expect(struct stream *s, uint32_t want, void *buf, size_t cap,
		       uint32_t *len, const char *peer, char *err,
		       size_t errlen);
/* Reads the payload of a frame of type whose header said len, which must
 * be exactly want bytes (the fixed-size frames); -EPROTO otherwise. */
int stream_recv_fixed(struct stream *s, uint32_t type, uint32_t len, void *buf,
		      uint32_t want, char *err, size_t errlen);
/* Reads a text payload of len bytes (ERROR/REJECT) into out, sanitised. */
int stream_recv_text(struct stream *s, uint32_t len, char *out, size_t cap,
		     char *err, size_t errlen);

#endif
