/* The other end of a fuzzed connection: a thread that writes the fuzzer's
 * bytes into one end of a socket pair and drains whatever the code under
 * test sends back, so that neither side blocks on a full buffer. */
#ifndef MINIVMM_FUZZ_PEER_H
#define MINIVMM_FUZZ_PEER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct fuzz_peer {
	int fd;
	const uint8_t *p;
	size_t n;
	pthread_t th;
};

/* Starts the thread on fd (the peer's end of the pair); 0 or -errno. */
int fuzz_peer_start(struct fuzz_peer *pr, int fd, const uint8_t *p, size_t n);
/* Waits for it (it ends when the other end closes or after 5 s idle). */
void fuzz_peer_join(struct fuzz_peer *pr);

#endif
