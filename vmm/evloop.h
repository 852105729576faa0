/* A minimal epoll loop for the main thread: console input, the monitor
 * socket and its clients, signals, timers. Handlers are owned by callers. */
#ifndef MINIVMM_EVLOOP_H
#define MINIVMM_EVLOOP_H

#include <stdint.h>

struct ev_handler {
	int fd;
	void (*fn)(struct ev_handler *h, uint32_t events);
	void *opaque;
};

struct evloop {
	int epfd;
};

int evloop_init(struct evloop *l);
void evloop_fini(struct evloop *l);
int evloop_add(struct evloop *l, struct ev_handler *h, uint32_t events);
void evloop_del(struct evloop *l, struct ev_handler *h);
/* Changes the events h waits for (EPOLLIN, EPOLLOUT when it has output). */
int evloop_mod(struct evloop *l, struct ev_handler *h, uint32_t events);
/* Dispatches what is ready within timeout_ms; returns -errno on failure. */
int evloop_run_once(struct evloop *l, int timeout_ms);

#endif
