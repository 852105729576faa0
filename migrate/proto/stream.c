/* Migration stream framing (docs/migration-stream.md); the bytes move
 * through migrate/transport/. */
#include "migrate/proto/stream.h"
#include "migrate/proto/framemac.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "vmm/core/clock.h"
#include "vmm/core/vm.h"

static const char *const type_names[] = {
	[ST_HELLO] = "HELLO", [ST_ACCEPT] = "ACCEPT", [ST_REJECT] = "REJECT",
	[ST_PING] = "PING", [ST_PONG] = "PONG", [ST_ROUND] = "ROUND",
	[ST_PAGES] = "PAGES", [ST_STATE] = "STATE", [ST_END] = "END",
	[ST_READY] = "READY", [ST_COMMIT] = "COMMIT", [ST_RUNNING] = "RUNNING",
	[ST_ERROR] = "ERROR", [ST_CHANNELS] = "CHANNELS", [ST_CHANNEL] = "CHANNEL",
	[ST_SYNC] = "SYNC", [ST_DEVICES] = "DEVICES", [ST_LATE] = "LATE",
	[ST_DISK] = "DISK", [ST_DISK_DATA] = "DISK_DATA",
	[ST_AUTH_HELLO] = "AUTH_HELLO", [ST_AUTH_CHALLENGE] = "AUTH_CHALLENGE",
	[ST_AUTH_PROOF] = "AUTH_PROOF",
	[ST_POSTCOPY] = "POSTCOPY", [ST_RETURN_PATH] = "RETURN_PATH", [ST_MISSING] = "MISSING",
	[ST_PAGE_REQ] = "PAGE_REQ", [ST_PC_DONE] = "PC_DONE", [ST_RESUME] = "RESUME",
	[ST_PC_KEPT] = "PC_KEPT",
};

const char *stream_type_name(uint32_t type)
{
	return type >= 1 && type <= ST_TYPE_MAX ? type_names[type] : "unknown";
}

uint32_t stream_max_len(uint32_t type)
{
	switch (type) {
	case ST_HELLO:
		return HELLO_FIXED_LEN + HELLO_MAX_COMPAT;
	case ST_REJECT:
	case ST_ERROR:
		return TEXT_MAX_LEN;
	case ST_PING:
	case ST_PONG:
		return 8;
	case ST_ROUND:
		return ROUND_LEN;
	case ST_PAGES:
		return PAGES_HDR_LEN + PAGES_MAX_RUNS * PAGE_RUN_LEN +
		       PAGES_MAX_DATA_PAGES * (uint32_t)VM_PAGE_SIZE;
	case ST_STATE:
		return STATE_MAX_LEN;
	case ST_END:
		return END_LEN;
	case ST_CHANNELS:
		return CHANNELS_LEN;
	case ST_CHANNEL:
		return CHANNEL_LEN;
	case ST_SYNC:
		return SYNC_LEN;
	case ST_DEVICES:
		return DEVICES_MAX_LEN;
	case ST_LATE:
		return LATE_MAX_LEN;
	case ST_DISK:
		return DISK_LEN;
	case ST_DISK_DATA:
		return DISK_DATA_HDR + DISK_DATA_MAX;
	case ST_AUTH_HELLO:
		return AUTH_HELLO_LEN;
	case ST_AUTH_CHALLENGE:
		return AUTH_CHALLENGE_LEN;
	case ST_AUTH_PROOF:
		return AUTH_PROOF_LEN;
	case ST_POSTCOPY:
		return POSTCOPY_LEN;
	case ST_RETURN_PATH:
		return RETURN_PATH_LEN;
	case ST_MISSING:
	case ST_PC_KEPT:
		return MISSING_HDR_LEN + MISSING_MAX_WORDS * 8;
	case ST_PAGE_REQ:
		return PAGE_REQ_LEN;
	case ST_RESUME:
		return RESUME_LEN;
	case ST_PC_DONE:
		return 0;
	case ST_ACCEPT:
	case ST_READY:
	case ST_COMMIT:
	case ST_RUNNING:
		return 0;
	default:
		return 0;
	}
}

void stream_preamble_encode_flags(uint8_t out[STREAM_PREAMBLE_LEN], uint32_t flags)
{
	memcpy(out, STREAM_MAGIC, STREAM_MAGIC_LEN);
	le_put32(out + 8, STREAM_VERSION);
	le_put32(out + 12, flags);
}

void stream_preamble_encode(uint8_t out[STREAM_PREAMBLE_LEN])
{
	stream_preamble_encode_flags(out, 0);
}

uint32_t stream_preamble_flags(const uint8_t in[STREAM_PREAMBLE_LEN])
{
	return le_get32(in + 12);
}

int stream_preamble_decode(const uint8_t in[STREAM_PREAMBLE_LEN], char *err,
			   size_t errlen)
{
	uint32_t v;

	if (memcmp(in, STREAM_MAGIC, STREAM_MAGIC_LEN) != 0) {
		snprintf(err, errlen, "not a minivmm migration stream (bad magic)");
		return -EPROTO;
	}
	v = le_get32(in + 8);
	if (v != STREAM_VERSION) {
		snprintf(err, errlen,
			 "migration stream version %u is not supported (this minivmm speaks %u)",
			 v, STREAM_VERSION);
		return -EPROTONOSUPPORT;
	}
	return 0;
}

void stream_hdr_encode(uint8_t out[STREAM_HDR_LEN], uint32_t type, uint32_t len)
{
	le_put32(out, type);
	le_put32(out + 4, len);
}

int stream_hdr_decode(const uint8_t in[STREAM_HDR_LEN], struct stream_hdr *h,
		      char *err, size_t errlen)
{
	h->type = le_get32(in);
	h->len = le_get32(in + 4);
	if (h->type < 1 || h->type > ST_TYPE_MAX) {
		snprintf(err, errlen, "bad frame: unknown type %u", h->type);
		return -EPROTO;
	}
	if (h->len > stream_max_len(h->type)) {
		snprintf(err, errlen, "bad frame: %s length %u exceeds the limit %u",
			 stream_type_name(h->type), h->len, stream_max_len(h->type));
		return -EPROTO;
	}
	return 0;
}

int stream_hello_encode(const struct hello *h, uint8_t *out, size_t cap)
{
	uint8_t *p = out;

	if (h->compat_len > HELLO_MAX_COMPAT || cap < HELLO_FIXED_LEN + h->compat_len)
		return -EINVAL;
	le_put32(p, h->version);
	le_put32(p + 4, h->flags);
	le_put64(p + 8, h->mem_size);
	le_put32(p + 16, h->ncpus);
	le_put32(p + 20, h->pid);
	le_put32(p + 24, h->page_size);
	memset(p + 28, 0, HELLO_NAME_LEN);
	memcpy(p + 28, h->name, strnlen(h->name, HELLO_NAME_LEN - 1));
	le_put32(p + 28 + HELLO_NAME_LEN, h->compat_len);
	if (h->compat_len)
		memcpy(p + HELLO_FIXED_LEN, h->compat, h->compat_len);
	return (int)(HELLO_FIXED_LEN + h->compat_len);
}

static bool name_ok(const char *n)
{
	if (!*n)
		return false;
	for (; *n; n++)
		if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') ||
		      (*n >= '0' && *n <= '9') || *n == '.' || *n == '_' || *n == '-'))
			return false;
	return true;
}

int stream_hello_decode(const uint8_t *in, size_t len, struct hello *h,
			char *err, size_t errlen)
{
	struct vm_slot slots[VM_MAX_SLOTS];
	int nslots;

	if (len < HELLO_FIXED_LEN) {
		snprintf(err, errlen, "bad HELLO: %zu bytes, need at least %d", len,
			 HELLO_FIXED_LEN);
		return -EPROTO;
	}
	memset(h, 0, sizeof(*h));
	h->version = le_get32(in);
	h->flags = le_get32(in + 4);
	h->mem_size = le_get64(in + 8);
	h->ncpus = le_get32(in + 16);
	h->pid = le_get32(in + 20);
	h->page_size = le_get32(in + 24);
	memcpy(h->name, in + 28, HELLO_NAME_LEN);
	h->compat_len = le_get32(in + 28 + HELLO_NAME_LEN);
	if (h->version != STREAM_VERSION) {
		snprintf(err, errlen, "HELLO: version %u is not supported (this minivmm speaks %u)",
			 h->version, STREAM_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (h->page_size != VM_PAGE_SIZE) {
		snprintf(err, errlen, "HELLO: page size %u, this host uses %llu",
			 h->page_size, (unsigned long long)VM_PAGE_SIZE);
		return -EPROTO;
	}
	if (vm_layout_slots(h->mem_size, slots, &nslots) < 0) {
		snprintf(err, errlen, "HELLO: RAM size %llu is not valid",
			 (unsigned long long)h->mem_size);
		return -EPROTO;
	}
	if (h->ncpus < 1 || h->ncpus > VM_MAX_CPUS) {
		snprintf(err, errlen, "HELLO: %u vCPUs is out of range (1..%d)", h->ncpus,
			 VM_MAX_CPUS);
		return -EPROTO;
	}
	if (memchr(h->name, '\0', HELLO_NAME_LEN) == NULL || !name_ok(h->name)) {
		snprintf(err, errlen, "HELLO: the VM name is not valid");
		return -EPROTO;
	}
	if (h->compat_len > HELLO_MAX_COMPAT || h->compat_len != len - HELLO_FIXED_LEN) {
		snprintf(err, errlen, "HELLO: CPU description length %u does not match the frame",
			 h->compat_len);
		return -EPROTO;
	}
	h->compat = in + HELLO_FIXED_LEN;
	return 0;
}

void stream_run_encode(uint8_t out[PAGE_RUN_LEN], const struct page_run *r)
{
	le_put64(out, r->first);
	le_put32(out + 8, r->count);
	le_put32(out + 12, r->kind);
}

int stream_pages_table_len(const uint8_t *hdr, size_t len, uint64_t *table,
			   char *err, size_t errlen)
{
	uint32_t n;

	if (len < PAGES_HDR_LEN) {
		snprintf(err, errlen, "bad PAGES: %zu bytes is too short", len);
		return -EPROTO;
	}
	n = le_get32(hdr);
	if (n == 0 || n > PAGES_MAX_RUNS) {
		snprintf(err, errlen, "bad PAGES: %u runs (1..%u allowed)", n, PAGES_MAX_RUNS);
		return -EPROTO;
	}
	*table = PAGES_HDR_LEN + (uint64_t)n * PAGE_RUN_LEN;
	if (*table > len) {
		snprintf(err, errlen, "bad PAGES: %u runs do not fit in %zu bytes", n, len);
		return -EPROTO;
	}
	return 0;
}

int stream_pages_decode(const uint8_t *in, size_t len, uint64_t npages,
			struct page_run *runs, size_t maxruns,
			uint64_t *data_pages, uint64_t *delta_pages, char *err, size_t errlen)
{
	uint32_t n;
	uint64_t data = 0, delta = 0, table, fixed;
	int ret = stream_pages_table_len(in, len, &table, err, errlen);

	if (ret)
		return ret;
	n = le_get32(in);
	if (n > maxruns) {
		snprintf(err, errlen, "bad PAGES: %u runs (1..%zu allowed here)", n, maxruns);
		return -EPROTO;
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p = in + PAGES_HDR_LEN + (size_t)i * PAGE_RUN_LEN;
		struct page_run *r = &runs[i];

		r->first = le_get64(p);
		r->count = le_get32(p + 8);
		r->kind = le_get32(p + 12);
		if (r->count == 0 || r->first >= npages || r->count > npages - r->first) {
			snprintf(err, errlen,
				 "bad PAGES: run %u (page %llu, %u pages) is outside guest RAM (%llu pages)",
				 i, (unsigned long long)r->first, r->count,
				 (unsigned long long)npages);
			return -ERANGE;
		}
		if (r->kind == PAGE_RUN_DELTA && !delta_pages) {
			snprintf(err, errlen, "bad PAGES: run %u is delta-encoded, not allowed here", i);
			return -EPROTO;
		}
		if (r->kind != PAGE_RUN_NORMAL && r->kind != PAGE_RUN_ZERO &&
		    r->kind != PAGE_RUN_DELTA) {
			snprintf(err, errlen, "bad PAGES: run %u has unknown kind %u", i, r->kind);
			return -EPROTO;
		}
		if (r->kind == PAGE_RUN_NORMAL)
			data += r->count;
		else if (r->kind == PAGE_RUN_DELTA)
			delta += r->count;
		if (data + delta > PAGES_MAX_DATA_PAGES) {
			snprintf(err, errlen, "bad PAGES: more than %u pages of contents",
				 PAGES_MAX_DATA_PAGES);
			return -EPROTO;
		}
	}
	fixed = table + data * VM_PAGE_SIZE;
	if (delta ? len < fixed + delta * PAGE_DELTA_HDR || len > fixed + delta * VM_PAGE_SIZE :
	    len != fixed) {
		snprintf(err, errlen,
			 "bad PAGES: frame is %zu bytes, its runs need %llu", len,
			 (unsigned long long)(fixed + delta * PAGE_DELTA_HDR));
		return -EPROTO;
	}
	*data_pages = data;
	if (delta_pages)
		*delta_pages = delta;
	return (int)n;
}

/* ---- the connection ------------------------------------------------- */

void stream_reset(struct stream *s)
{
	memset(s, 0, sizeof(*s));
	s->conn.fd = -1;
	s->cancel_fd = -1;
	s->intr_fd = -1;
}

uint64_t stream_frame_deadline_ms(int frame_ms, uint32_t len)
{
	return (uint64_t)frame_ms + (uint64_t)len * 1000u / STREAM_MIN_RATE_BPS;
}

void stream_attach(struct stream *s, const struct transport_conn *c, int timeout_ms)
{
	stream_reset(s);
	s->conn = *c;
	s->timeout_ms = timeout_ms;
}

void stream_set_timeout(struct stream *s, int timeout_ms)
{
	s->timeout_ms = timeout_ms;
	transport_set_timeout(&s->conn, timeout_ms);
}

void stream_set_frame_ms(struct stream *s, int frame_ms)
{
	s->frame_ms = frame_ms;
	s->frame_deadline_ns = 0;
}

void stream_shutdown(struct stream *s)
{
	transport_shutdown(&s->conn);
}

void stream_close(struct stream *s)
{
	transport_close(&s->conn);
	framemac_free(s->mac);
	s->mac = NULL;
}

int stream_mac_enable(struct stream *s, const uint8_t session[32], uint32_t chan, bool source,
		      bool integrity)
{
	framemac_free(s->mac);
	s->mac = framemac_new(session, chan, source, integrity);
	return s->mac ? 0 : -ENOMEM;
}

const uint8_t *stream_mac_session(const struct stream *s)
{
	return s->mac ? s->mac->session : NULL;
}

bool stream_mac_integrity(const struct stream *s)
{
	return s->mac && s->mac->integrity;
}

/* With a cancel fd, every blocking step first polls the socket and the
 * cancel fd together, so `migrate_cancel` interrupts a send or receive at
 * once while the connection stays usable for the ERROR frame that tells
 * the target why. Returns 0 when the socket is ready. */
/* The earliest read deadline in force, 0: none. */
static uint64_t read_deadline(const struct stream *s)
{
	uint64_t a = s->deadline_ns, b = s->frame_deadline_ns;

	return !a ? b : !b ? a : a < b ? a : b;
}

static int wait_ready(struct stream *s, short ev, char *err, size_t errlen)
{
	/* Waiting to send, a peer that has closed its side will read no
	 * more (nothing here half-closes but a refusal, which reads what
	 * was sent to it and wants the sender to stop): its last words, if
	 * any, are for the caller to read, not a timeout to wait out. */
	struct pollfd p[3] = { { .fd = s->conn.fd,
				 .events = (short)(ev == POLLOUT ? POLLOUT | POLLRDHUP : ev) },
			       { .fd = s->cancel_fd, .events = POLLIN },
			       { .fd = s->intr_fd, .events = POLLIN } };
	uint64_t dl = ev == POLLIN ? read_deadline(s) : 0;
	int n, ms;

	if ((s->cancel_fd < 0 && s->intr_fd < 0 && !dl) || !s->conn.is_stream_socket)
		return 0;
	do {
		ms = s->timeout_ms > 0 ? s->timeout_ms : -1;
		if (dl) {
			uint64_t now = clock_now_ns();
			int left = now >= dl ? 0 : (int)((dl - now + 999999) / 1000000);

			if (left == 0) {
				snprintf(err, errlen, dl == s->deadline_ns ?
					 "the peer did not complete the handshake in time" :
					 "the peer is too slow: a frame did not arrive in time");
				return -ETIMEDOUT;
			}
			if (ms < 0 || left < ms)
				ms = left;
		}
		n = poll(p, 3, ms);
	} while ((n < 0 && errno == EINTR) || (n == 0 && dl && clock_now_ns() >= dl));
	if (n < 0) {
		int e = errno;

		snprintf(err, errlen, "poll: %s", strerror(e));
		return -e;
	}
	if (p[1].revents) {
		snprintf(err, errlen, "cancelled");
		return -ECANCELED;
	}
	if (p[2].revents) {
		snprintf(err, errlen, "interrupted by a signal");
		return -EINTR;
	}
	if (n == 0) {
		snprintf(err, errlen, "%s timed out after %d ms (peer not responding)",
			 ev == POLLOUT ? "send" : "receive", s->timeout_ms);
		return -ETIMEDOUT;
	}
	if (ev == POLLOUT && (p[0].revents & POLLRDHUP) && !(p[0].revents & POLLOUT)) {
		snprintf(err, errlen, "send: the peer closed the connection");
		return -ECONNRESET;
	}
	return 0;
}

static int io_error(struct stream *s, bool writing, ssize_t n, int e, char *err,
		    size_t errlen)
{
	if (n == 0 && !writing) {
		snprintf(err, errlen, !s->conn.is_stream_socket ? "stream truncated (end of file)" :
			 "connection closed by the peer");
		return -ECONNRESET;
	}
	if (e == EAGAIN || e == EWOULDBLOCK) {
		snprintf(err, errlen, "%s timed out after %d ms (peer not responding)",
			 writing ? "send" : "receive", s->timeout_ms);
		return -ETIMEDOUT;
	}
	snprintf(err, errlen, "%s: %s", writing ? "send" : "receive", strerror(e));
	return -e;
}

/* Advances iov past n bytes; returns the new first index. */
static int iov_advance(struct iovec *iov, int iovcnt, int i, size_t n)
{
	while (i < iovcnt && n >= iov[i].iov_len) {
		n -= iov[i].iov_len;
		i++;
	}
	if (i < iovcnt) {
		iov[i].iov_base = (uint8_t *)iov[i].iov_base + n;
		iov[i].iov_len -= n;
	}
	return i;
}

/* Moves every byte of iov one way, resuming after short transfers and
 * EINTR; wait_ready() bounds how long a silent peer can stall us. mac:
 * what is read goes through it too. */
static int xfer_raw(struct stream *s, bool writing, struct iovec *iov, int iovcnt,
		    struct stream_mac *mac, char *err, size_t errlen)
{
	int i = iov_advance(iov, iovcnt, 0, 0); /* skips empty entries */

	while (i < iovcnt) {
		ssize_t n;
		int ret = wait_ready(s, writing ? POLLOUT : POLLIN, err, errlen);

		if (ret)
			return ret;
		n = writing ? transport_writev(&s->conn, iov + i, iovcnt - i) :
		    transport_readv(&s->conn, iov + i, iovcnt - i);
		if (n <= 0) {
			if (n == -EINTR)
				continue;
			return io_error(s, writing, n, n < 0 ? (int)-n : writing ? EPIPE : 0,
					err, errlen);
		}
		*(writing ? &s->bytes_out : &s->bytes_in) += (uint64_t)n;
		if (mac)
			framemac_rx_feed(mac, iov + i, iovcnt - i, (size_t)n);
		i = iov_advance(iov, iovcnt, i, (size_t)n);
	}
	return 0;
}

/* With frame MACs: a frame goes out with its tag; the read that completes
 * a frame also reads its tag and checks it. */
static int xfer_all(struct stream *s, bool writing, struct iovec *iov, int iovcnt,
		    char *err, size_t errlen)
{
	uint8_t tag[FRAME_TAG_LEN];
	struct iovec one = { .iov_base = tag, .iov_len = sizeof(tag) };
	int ret;

	if (!s->mac)
		return xfer_raw(s, writing, iov, iovcnt, NULL, err, errlen);
	if (writing) {
		ret = framemac_tx(s->mac, iov, iovcnt, &one, err, errlen);
		if (ret < 0)
			return ret;
		return ret ? xfer_raw(s, true, iov, iovcnt, NULL, err, errlen) :
		       xfer_raw(s, true, &one, 1, NULL, err, errlen);
	}
	ret = xfer_raw(s, false, iov, iovcnt, s->mac, err, errlen);
	if (ret || !framemac_rx_done(s->mac))
		return ret;
	if (framemac_rx_tagged(s->mac))
		ret = xfer_raw(s, false, &one, 1, NULL, err, errlen);
	return ret ? ret : framemac_rx_check(s->mac, framemac_rx_tagged(s->mac) ? tag : NULL,
					     err, errlen);
}

int stream_writev_all(struct stream *s, struct iovec *iov, int iovcnt,
		      char *err, size_t errlen)
{
	return xfer_all(s, true, iov, iovcnt, err, errlen);
}

int stream_readv_all(struct stream *s, struct iovec *iov, int iovcnt,
		     char *err, size_t errlen)
{
	return xfer_all(s, false, iov, iovcnt, err, errlen);
}

int stream_write_all(struct stream *s, const void *buf, size_t len, char *err,
		     size_t errlen)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return stream_writev_all(s, &iov, 1, err, errlen);
}

int stream_read_all(struct stream *s, void *buf, size_t len, char *err,
		    size_t errlen)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return stream_readv_all(s, &iov, 1, err, errlen);
}

int stream_send(struct stream *s, uint32_t type, const void *payload,
		uint32_t len, char *err, size_t errlen)
{
	uint8_t hdr[STREAM_HDR_LEN];
	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = sizeof(hdr) },
		{ .iov_base = (void *)payload, .iov_len = len },
	};

	stream_hdr_encode(hdr, type, len);
	return stream_writev_all(s, iov, 2, err, errlen);
}

int stream_send_text(struct stream *s, uint32_t type, const char *text)
{
	char err[64];
	size_t n = strnlen(text, TEXT_MAX_LEN);

	return stream_send(s, type, text, (uint32_t)n, err, sizeof(err));
}

int stream_recv_hdr(struct stream *s, struct stream_hdr *h, char *err,
		    size_t errlen)
{
	uint8_t b[STREAM_HDR_LEN];
	int ret;

	if (s->frame_ms > 0 && s->idle_ms > 0) {
		/* Between frames the peer may be quiet for long (a pass on
		 * the data channels); a frame, once begun, has frame_ms. */
		int t = s->timeout_ms;
		uint64_t live;

		s->timeout_ms = s->idle_ms;
		do {
			live = s->idle_live ? atomic_load(s->idle_live) : 0;
			s->frame_deadline_ns = clock_now_ns() + (uint64_t)s->idle_ms * 1000000u;
			ret = stream_read_all(s, b, 1, err, errlen);
		} while (ret == -ETIMEDOUT && s->idle_live && atomic_load(s->idle_live) != live);
		s->timeout_ms = t;
		if (ret == -ETIMEDOUT) {
			snprintf(err, errlen, "the peer sent nothing for %d s",
				 (s->idle_ms + 999) / 1000);
			ret = -ETIME;
		}
		s->frame_deadline_ns = clock_now_ns() + (uint64_t)s->frame_ms * 1000000u;
		if (!ret)
			ret = stream_read_all(s, b + 1, sizeof(b) - 1, err, errlen);
	} else {
		/* Without frame_ms no deadline is left from an earlier frame:
		 * one would fail every read once it passed. */
		s->frame_deadline_ns = s->frame_ms > 0 ?
				       clock_now_ns() + (uint64_t)s->frame_ms * 1000000u : 0;
		ret = stream_read_all(s, b, sizeof(b), err, errlen);
	}
	if (!ret)
		ret = stream_hdr_decode(b, h, err, errlen);
	if (!ret && s->frame_ms > 0)
		s->frame_deadline_ns = clock_now_ns() +
				       stream_frame_deadline_ms(s->frame_ms, h->len) * 1000000u;
	if (!ret && s->idle_live)
		atomic_fetch_add(s->idle_live, (uint64_t)h->len + STREAM_HDR_LEN);
	return ret;
}

int stream_recv_fixed(struct stream *s, uint32_t type, uint32_t len, void *buf,
		      uint32_t want, char *err, size_t errlen)
{
	if (len != want) {
		snprintf(err, errlen, "bad %s: %u bytes", stream_type_name(type), len);
		return -EPROTO;
	}
	return stream_read_all(s, buf, want, err, errlen);
}

int stream_recv_text(struct stream *s, uint32_t len, char *out, size_t cap,
		     char *err, size_t errlen)
{
	char buf[TEXT_MAX_LEN + 1];
	int ret;

	if (len > TEXT_MAX_LEN) {
		snprintf(err, errlen, "text frame too long");
		return -EPROTO;
	}
	ret = stream_read_all(s, buf, len, err, errlen);
	if (ret)
		return ret;
	buf[len] = '\0';
	/* The peer's text ends up on our terminal: keep it printable. */
	for (uint32_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] == 0x7f)
			buf[i] = '?';
	snprintf(out, cap, "%s", buf);
	return 0;
}

int stream_recv_expect(struct stream *s, uint32_t want, void *buf, size_t cap,
		       uint32_t *len, const char *peer, char *err,
		       size_t errlen)
{
	struct stream_hdr h;
	char text[TEXT_MAX_LEN + 1];
	int ret = stream_recv_hdr(s, &h, err, errlen);

	if (ret)
		return ret;
	if (h.type == ST_ERROR || (h.type == ST_REJECT && want != ST_REJECT)) {
		ret = stream_recv_text(s, h.len, text, sizeof(text), err, errlen);
		if (ret)
			return ret;
		snprintf(err, errlen, "%s %s: %s", peer,
			 h.type == ST_REJECT ? "refused the migration" : "failed", text);
		return -ECONNABORTED;
	}
	if (h.type != want) {
		snprintf(err, errlen, "protocol error: expected %s from the %s, got %s",
			 stream_type_name(want), peer, stream_type_name(h.type));
		return -EPROTO;
	}
	if (h.len > cap) {
		snprintf(err, errlen, "protocol error: %s of %u bytes (at most %zu expected)",
			 stream_type_name(h.type), h.len, cap);
		return -EPROTO;
	}
	if (len)
		*len = h.len;
	return stream_read_all(s, buf, h.len, err, errlen);
}
