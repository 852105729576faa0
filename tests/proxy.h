/* A TCP proxy for the integration tests: it sits between a source and a
 * target (every connection, data channels included), follows the frames
 * of a keyed stream (docs/migration-stream.md: preamble, the untagged
 * handshake frames, then header, payload, 16-byte tag) and can record the
 * main connection's first source bytes, flip the last byte of the first
 * PAGES frame, or open a stray data channel with the migration's token
 * (read off the target's CHANNELS reply) but no session MAC. It runs on a
 * thread of its own; keep the struct in static storage. */
#ifndef MINIVMM_TEST_PROXY_H
#define MINIVMM_TEST_PROXY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Follows one direction's frames: preamble (source side), then headers,
 * payloads and, once the handshake is over, tags. */
struct h_parser {
	uint32_t pre_left;      /* preamble bytes still to come */
	uint32_t untagged;      /* frames still without a tag (the handshake's) */
	uint8_t hdr[8];
	uint32_t hdr_have, type, remain, tag_left;
	uint8_t small[64];      /* the payload of a short frame */
	uint32_t small_len;
};

#define H_PROXY_MAXCONN 6

struct h_proxy {
	int lfd, tport;
	pthread_t th;
	volatile int stop;
	/* what the tests ask */
	bool flip_page;          /* flip the last byte of the first PAGES (main connection) */
	bool flip_on_channel;    /* ... of the first PAGES on a data channel instead */
	bool stray_channel;      /* on the target's CHANNELS reply, a stray channel first */
	/* what happened */
	bool flipped, strayed;
	uint8_t rec[65536];      /* the main connection's first source bytes */
	size_t rec_len;
	int nconn;
	struct { int c, t; bool c_eof, t_eof; struct h_parser up, down; } p[H_PROXY_MAXCONN];
};

/* Listens on a fresh test port (returned) and forwards to 127.0.0.1:tport. */
int h_proxy_start(struct h_proxy *x, int tport);
void h_proxy_stop(struct h_proxy *x);

#endif
