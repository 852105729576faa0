/* The keyed handshake (migrate/auth/handshake.c), both ends, fed the
 * buffer as the peer. Before a peer has proved the key these are the only
 * bytes of it the target parses (the preamble, AUTH_HELLO, AUTH_PROOF), and
 * a source parses an impostor target's AUTH_CHALLENGE. The first byte:
 * bit 0 we are the source (else the target, and the buffer begins with the
 * peer's preamble), bit 1 we have no key (the refusals both ways), bit 2 the
 * source asks for integrity. A thread plays the peer (peer.h). Nobody can
 * forge a proof, so what is fuzzed is everything before the check. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "migrate/auth/handshake.h"
#include "migrate/transport/transport.h"
#include "tests/fuzz/peer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auth_key key = { .set = true };
	struct timeval tv = { .tv_sec = 2 };
	struct transport_conn c;
	struct fuzz_peer peer;
	struct stream s;
	char err[512];
	int sv[2], ret;
	bool source;

	if (size < 1 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	source = data[0] & 1;
	key.set = !(data[0] & 2);
	memset(key.k, 0x5a, sizeof(key.k));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	transport_wrap_fd(&c, sv[1], TRANSPORT_UNIX);
	stream_reset(&s);
	stream_attach(&s, &c, 2000);
	if (fuzz_peer_start(&peer, sv[0], data + 1, size - 1))
		abort();
	if (source) {
		ret = auth_source(&s, &key, data[0] & 4, err, sizeof(err));
	} else {
		uint8_t pre[STREAM_PREAMBLE_LEN];

		ret = stream_read_all(&s, pre, sizeof(pre), err, sizeof(err));
		if (!ret)
			ret = stream_preamble_decode(pre, err, sizeof(err));
		if (!ret)
			ret = auth_target(&s, pre, &key, err, sizeof(err));
	}
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "handshake: %d %s\n", ret, ret ? err : "accepted");
	/* Nobody without the key gets as far as 0 with a key on our side. */
	if (!ret && key.set)
		abort();
	stream_close(&s);
	fuzz_peer_join(&peer);
	close(sv[0]);
	return 0;
}
