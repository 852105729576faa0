/* The test proxy (proxy.h). */
#include "tests/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "tests/harness.h"

static void parse(struct h_proxy *x, int i, struct h_parser *ps, uint8_t *b, size_t n, bool up)
{
	while (n) {
		size_t k;

		if (ps->pre_left) {
			k = n < ps->pre_left ? n : ps->pre_left;
			ps->pre_left -= (uint32_t)k;
		} else if (ps->tag_left) {
			k = n < ps->tag_left ? n : ps->tag_left;
			ps->tag_left -= (uint32_t)k;
		} else if (ps->hdr_have < 8) {
			k = 8 - ps->hdr_have < n ? 8 - ps->hdr_have : n;
			memcpy(ps->hdr + ps->hdr_have, b, k);
			ps->hdr_have += (uint32_t)k;
			if (ps->hdr_have == 8) {
				ps->type = ps->hdr[0] | ps->hdr[1] << 8;
				ps->remain = ps->hdr[4] | ps->hdr[5] << 8 | ps->hdr[6] << 16 |
					     (uint32_t)ps->hdr[7] << 24;
				ps->small_len = 0;
			}
		} else {
			k = n < ps->remain ? n : ps->remain;
			if (ps->small_len + k <= sizeof(ps->small)) {
				memcpy(ps->small + ps->small_len, b, k);
				ps->small_len += (uint32_t)k;
			}
			if (up && (x->flip_on_channel ? i > 0 : i == 0) && x->flip_page &&
			    !x->flipped && ps->type == 7 && ps->remain == k) {
				b[k - 1] ^= 0x10; /* a byte of page contents */
				x->flipped = true;
			}
			ps->remain -= (uint32_t)k;
		}
		b += k;
		n -= k;
		if (ps->hdr_have == 8 && ps->remain == 0 && !ps->pre_left && !ps->tag_left) {
			if (!up && i == 0 && ps->type == 14 && x->stray_channel && !x->strayed) {
				/* Another connection with the token, but no session. */
				uint8_t f[16 + 8 + 12 + 16] = "MVMMIGR\n";
				struct sockaddr_in a = { .sin_family = AF_INET,
							 .sin_port = htons((uint16_t)x->tport) };
				int fd = socket(AF_INET, SOCK_STREAM, 0);

				a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
				h_put32(f + 8, 1);
				h_put32(f + 12, 1);
				h_put32(f + 16, 15);
				h_put32(f + 20, 12);
				h_put32(f + 24, 0);
				memcpy(f + 28, ps->small + 4, 8);
				if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
				    write(fd, f, sizeof(f)) == (ssize_t)sizeof(f))
					x->strayed = true;
				usleep(300000); /* the target takes it first */
				if (fd >= 0)
					close(fd);
			}
			ps->hdr_have = 0;
			if (ps->untagged)
				ps->untagged--;
			else
				ps->tag_left = 16;
		}
	}
}

static void *proxy_main(void *arg)
{
	struct h_proxy *x = arg;
	uint8_t buf[65536];

	while (!x->stop) {
		struct pollfd pf[1 + 2 * H_PROXY_MAXCONN];
		int n = 0;

		pf[n++] = (struct pollfd){ .fd = x->lfd, .events = POLLIN };
		for (int i = 0; i < x->nconn; i++) {
			pf[n++] = (struct pollfd){ .fd = x->p[i].c_eof ? -1 : x->p[i].c, .events = POLLIN };
			pf[n++] = (struct pollfd){ .fd = x->p[i].t_eof ? -1 : x->p[i].t, .events = POLLIN };
		}
		if (poll(pf, (nfds_t)n, 100) <= 0)
			continue;
		if ((pf[0].revents & POLLIN) && x->nconn < H_PROXY_MAXCONN) {
			struct sockaddr_in a = { .sin_family = AF_INET,
						 .sin_port = htons((uint16_t)x->tport) };
			int c = accept(x->lfd, NULL, NULL), t = socket(AF_INET, SOCK_STREAM, 0);
			int i = x->nconn;

			a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			if (c < 0 || t < 0 || connect(t, (struct sockaddr *)&a, sizeof(a)) < 0) {
				if (c >= 0)
					close(c);
				if (t >= 0)
					close(t);
				continue;
			}
			memset(&x->p[i], 0, sizeof(x->p[i]));
			x->p[i].c = c;
			x->p[i].t = t;
			x->p[i].up.pre_left = 16;
			x->p[i].up.untagged = i == 0 ? 2 : 0;  /* AUTH_HELLO, AUTH_PROOF */
			x->p[i].down.untagged = 1;             /* AUTH_CHALLENGE */
			x->nconn++;
			continue;
		}
		for (int i = 0; i < x->nconn; i++) {
			for (int dirn = 0; dirn < 2; dirn++) {
				struct pollfd *q = &pf[1 + 2 * i + dirn];
				int from = dirn ? x->p[i].t : x->p[i].c, to = dirn ? x->p[i].c : x->p[i].t;
				ssize_t r;

				if (q->fd < 0 || !(q->revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				r = read(from, buf, sizeof(buf));
				if (r <= 0) {
					*(dirn ? &x->p[i].t_eof : &x->p[i].c_eof) = true;
					shutdown(to, SHUT_WR);
					continue;
				}
				parse(x, i, dirn ? &x->p[i].down : &x->p[i].up, buf, (size_t)r, !dirn);
				if (!dirn && i == 0 && x->rec_len < sizeof(x->rec)) {
					size_t k = sizeof(x->rec) - x->rec_len < (size_t)r ?
						   sizeof(x->rec) - x->rec_len : (size_t)r;

					memcpy(x->rec + x->rec_len, buf, k);
					x->rec_len += k;
				}
				for (ssize_t o = 0; o < r;) {
					ssize_t w = write(to, buf + o, (size_t)(r - o));

					if (w <= 0)
						break;
					o += w;
				}
			}
		}
	}
	return NULL;
}

int h_proxy_start(struct h_proxy *x, int tport)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int prt = h_port(), one = 1;

	memset(x, 0, sizeof(*x));
	x->tport = tport;
	x->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(x->lfd >= 0);
	setsockopt(x->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_port = htons((uint16_t)prt);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(x->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(x->lfd, 8), 0);
	assert_int_equal(pthread_create(&x->th, NULL, proxy_main, x), 0);
	return prt;
}

void h_proxy_stop(struct h_proxy *x)
{
	x->stop = 1;
	pthread_join(x->th, NULL);
	for (int i = 0; i < x->nconn; i++) {
		close(x->p[i].c);
		close(x->p[i].t);
	}
	close(x->lfd);
}
