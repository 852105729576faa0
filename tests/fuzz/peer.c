#include "tests/fuzz/peer.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static void *play(void *arg)
{
	struct fuzz_peer *s = arg;
	uint8_t sink[4096];
	size_t off = 0;

	if (!s->n)
		shutdown(s->fd, SHUT_WR);
	for (;;) {
		struct pollfd pfd = { .fd = s->fd, .events = POLLIN | (off < s->n ? POLLOUT : 0) };

		if (poll(&pfd, 1, 5000) <= 0)
			break;
		if (pfd.revents & POLLIN) {
			ssize_t r = read(s->fd, sink, sizeof(sink));

			if (r <= 0)
				break; /* the code under test closed its end */
		}
		if (off < s->n && (pfd.revents & POLLOUT)) {
			ssize_t w = send(s->fd, s->p + off, s->n - off, MSG_DONTWAIT | MSG_NOSIGNAL);

			if (w < 0)
				break;
			off += (size_t)w;
			if (off == s->n)
				shutdown(s->fd, SHUT_WR);
		} else if (pfd.revents & (POLLHUP | POLLERR) && !(pfd.revents & POLLIN)) {
			break;
		}
	}
	return NULL;
}

int fuzz_peer_start(struct fuzz_peer *pr, int fd, const uint8_t *p, size_t n)
{
	pr->fd = fd;
	pr->p = p;
	pr->n = n;
	return -pthread_create(&pr->th, NULL, play, pr);
}

void fuzz_peer_join(struct fuzz_peer *pr)
{
	pthread_join(pr->th, NULL);
}
