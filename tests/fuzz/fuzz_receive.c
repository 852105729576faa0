/* The target's whole receive state machine after the handshake
 * (migrate/target.c mig_incoming_frames: ROUND, PAGES, PING, STATE, END,
 * READY, LATE, COMMIT through the RAM and machine-state sections) fed
 * the buffer as the source's stream over a socket pair, into a fake 8 MiB
 * one-vCPU VM (fakevm.h). The first byte: bit 0 a snapshot file's stream
 * (no replies, no COMMIT) rather than a network one, bit 1 a VM with a
 * virtio-net; the rest is the frames. A
 * thread plays the source (peer.h): it writes the frames and drains the
 * replies.
 * A stream that gets as far as COMMIT is followed by a little device use,
 * so a state that loads but breaks a device shows too. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "migrate/mig.h"
#include "migrate/transport/transport.h"
#include "tests/fuzz/fakevm.h"
#include "tests/fuzz/peer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fakevm f;
	struct fuzz_peer src;
	struct transport_conn c;
	struct mig *m;
	char err[512];
	struct timeval tv = { .tv_sec = 2 };
	int sv[2], ret;

	if (size < 1 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	fakevm_init(&f, data[0] & 2, NULL);
	m = calloc(1, sizeof(*m));
	if (!m)
		abort();
	pthread_mutex_init(&m->lock, NULL);
	m->cancel_efd = -1;
	m->st.role = STATS_TARGET;
	m->in_file = data[0] & 1;
	m->t0_ns = clock_now_ns();
	stream_reset(&m->in);
	/* What transport_accept would set: no read may block for ever. */
	setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	transport_wrap_fd(&c, sv[1], TRANSPORT_UNIX);
	stream_attach(&m->in, &c, 2000);
	if (fuzz_peer_start(&src, sv[0], data + 1, size - 1))
		abort();
	ret = mig_incoming_frames(&f.vm, m, err, sizeof(err));
	if (getenv("FUZZ_VERBOSE")) /* what a seed reaches: docs/fuzzing.md */
		fprintf(stderr, "receive: %d %s\n", ret, ret ? err : "COMMIT");
	stream_close(&m->in);
	fuzz_peer_join(&src);
	close(sv[0]);
	if (ret == 0)
		fakevm_poke(&f);
	stats_free(&m->st);
	pthread_mutex_destroy(&m->lock);
	free(m);
	fakevm_destroy(&f);
	return 0;
}
