/* A data channel's receiver (migrate/ram/chan_recv.c), fed the buffer as
 * the source's connection: the preamble, CHANNEL(index, token), then what
 * a channel carries (PAGES, SYNC, ERROR) into the fake VM's RAM (fakevm.h),
 * while the main side waits for rounds 0..3 as the target does. The
 * connection comes through a real UNIX listener, so a stray or malformed
 * one exercises the accept path's refusals too (it is dropped and the
 * accept times out, after 50 ms). The first byte: bit 0 set, the target
 * writes a valid preamble and CHANNEL first, so that the rest is all
 * channel frames (most inputs then get past the accept at once); clear, the
 * rest is the whole connection. Keyless: nobody can forge the keyed
 * channels' MACs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "migrate/ram/chan.h"
#include "migrate/transport/transport.h"
#include "tests/fuzz/fakevm.h"
#include "tests/fuzz/peer.h"

#define FUZZ_TOKEN 0x1122334455667788ULL

static struct transport_listener *listener(char *path, size_t cap)
{
	static struct transport_listener l;
	static char p[108];
	static int ready;
	struct transport_addr a;
	char uri[160], err[256];

	if (!ready) {
		snprintf(p, sizeof(p), "/tmp/minivmm-fuzz-chan-%d.sock", (int)getpid());
		unlink(p);
		snprintf(uri, sizeof(uri), "unix:%s", p);
		if (transport_parse(uri, true, &a, err, sizeof(err)) ||
		    transport_listen(&a, &l, err, sizeof(err))) {
			fprintf(stderr, "fuzz_chan: %s\n", err);
			abort();
		}
		ready = 1;
	}
	snprintf(path, cap, "%s", p);
	return &l;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fakevm f;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct transport_listener *l = listener(sa.sun_path, sizeof(sa.sun_path));
	struct fuzz_peer peer;
	uint8_t *buf;
	size_t n;
	struct chan_tgt *ct = NULL;
	uint64_t *have;
	char err[512];
	int fd, ret;

	if (size < 1)
		return 0;
	n = size - 1 + ((data[0] & 1) ? STREAM_PREAMBLE_LEN + STREAM_HDR_LEN + CHANNEL_LEN : 0);
	buf = malloc(n ? n : 1);
	if (!buf)
		abort();
	if (data[0] & 1) {
		uint8_t *p = buf;

		stream_preamble_encode(p);
		stream_hdr_encode(p + STREAM_PREAMBLE_LEN, ST_CHANNEL, CHANNEL_LEN);
		p += STREAM_PREAMBLE_LEN + STREAM_HDR_LEN;
		le_put32(p, 0);
		le_put64(p + 4, FUZZ_TOKEN);
		memcpy(p + CHANNEL_LEN, data + 1, size - 1);
	} else {
		memcpy(buf, data + 1, size - 1);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	fakevm_init(&f, false, NULL);
	have = calloc((f.vm.ram_size / 4096 + 63) / 64, 8);
	if (!have || fuzz_peer_start(&peer, fd, buf, n))
		abort();
	ret = chan_tgt_accept(&ct, l, 1, FUZZ_TOKEN,
			      &(struct chan_tgt_cfg){ .vm = &f.vm, .have = have, .timeout_ms = 50,
						      .idle_ms = 300000 },
			      err, sizeof(err));
	for (uint32_t r = 0; !ret && r < 4; r++)
		ret = chan_tgt_wait(ct, r, err, sizeof(err));
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "chan: %d %s\n", ret, ret ? err : "4 rounds");
	if (ct)
		chan_tgt_close(ct);
	shutdown(fd, SHUT_RDWR);
	fuzz_peer_join(&peer);
	close(fd);
	free(have);
	free(buf);
	fakevm_destroy(&f);
	return 0;
}
