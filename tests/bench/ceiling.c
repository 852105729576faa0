// SPDX-License-Identifier: MIT
/*
 * Physical ceilings for the benchmark suite, measured in the same run:
 *   ceiling memcpy MIB REPS          best memcpy bandwidth over REPS copies of MIB MiB
 *   ceiling zeroscan MIB             time to check MIB MiB of zero pages
 *   ceiling tcp SECONDS              single-stream TCP over loopback (fork: sender+receiver)
 *   ceiling tcp-fresh MIB            the same, but the receiver reads MIB into never-touched
 *                                    memory, as a migration target does with guest RAM
 *   ceiling tcp-mem MIB              MIB from memory into memory the receiver populated first
 *                                    (a target with --prealloc): the stream without the cache
 *                                    reuse of `tcp`'s 1 MiB buffers
 *   ceiling tcp-server ADDR PORT     receive one stream, print bytes and seconds
 *   ceiling tcp-client ADDR PORT SECONDS
 *   ceiling page-server ADDR PORT    answer each 16-byte request with one 4 KiB page
 *   ceiling page-client ADDR PORT N GAP_US
 *                                    N requests GAP_US apart, each timed until its page is
 *                                    in: the floor under post-copy's fault latency on this
 *                                    link and this machine (no VMM, no guest, no push)
 * Output: one JSON object on stdout. Built by tests/bench/bench.mk, not part of minivmm.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1 << 20)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int do_memcpy(size_t mib, int reps)
{
	size_t n = mib << 20;
	char *a = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *b = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED)
		return perror("mmap"), 1;
	memset(a, 0x5a, n);
	memset(b, 0, n);
	double best = 1e9;
	for (int r = 0; r < reps; r++) {
		double t = now();
		memcpy(b, a, n);
		t = now() - t;
		if (t < best)
			best = t;
		a[r % n]++;
	}
	printf("{\"memcpy_Bps\":%.0f,\"memcpy_mib\":%zu,\"reps\":%d,\"check\":%d}\n", (double)n / best, mib,
	       reps, b[1]);
	return 0;
}

static int do_zeroscan(size_t mib)
{
	size_t n = mib << 20;
	uint64_t *a = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (a == MAP_FAILED)
		return perror("mmap"), 1;
	memset(a, 0, n);
	double t = now();
	size_t zero = 0;
	for (size_t p = 0; p < n / 8; p += 512) {
		uint64_t acc = 0;
		for (size_t i = 0; i < 512; i++)
			acc |= a[p + i];
		zero += !acc;
	}
	t = now() - t;
	printf("{\"zeroscan_Bps\":%.0f,\"zero_pages\":%zu}\n", (double)n / t, zero);
	return 0;
}

static int serve(int lfd, double *secs, uint64_t *bytes)
{
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return perror("accept"), 1;
	char *buf = malloc(CHUNK);
	uint64_t total = 0;
	double t0 = 0;
	for (;;) {
		ssize_t r = read(fd, buf, CHUNK);
		if (r <= 0)
			break;
		if (!total)
			t0 = now();
		total += (uint64_t)r;
	}
	*secs = now() - t0;
	*bytes = total;
	free(buf);
	close(fd);
	return 0;
}

static int send_for(int fd, double seconds)
{
	char *buf = malloc(CHUNK);
	memset(buf, 0xa5, CHUNK);
	double end = now() + seconds;
	while (now() < end) {
		size_t off = 0;
		while (off < CHUNK) {
			ssize_t w = write(fd, buf + off, CHUNK - off);
			if (w <= 0)
				return perror("write"), 1;
			off += (size_t)w;
		}
	}
	shutdown(fd, SHUT_WR);
	char c;
	while (read(fd, &c, 1) > 0)
		;
	free(buf);
	return 0;
}

static int listen_on(const char *addr, int port)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, addr, &sa.sin_addr);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0)
		return perror("bind/listen"), -1;
	return lfd;
}

static int connect_to(const char *addr, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, addr, &sa.sin_addr);
	for (int i = 0; i < 100; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(20000);
	}
	perror("connect");
	return -1;
}

static int do_tcp_loop(double seconds)
{
	int lfd = listen_on("127.0.0.1", 0);
	if (lfd < 0)
		return 1;
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	int pfd[2];
	if (pipe(pfd) < 0)
		return 1;
	pid_t pid = fork();
	if (pid == 0) {
		double secs;
		uint64_t bytes;
		close(pfd[0]);
		serve(lfd, &secs, &bytes);
		dprintf(pfd[1], "%.9f %llu\n", secs, (unsigned long long)bytes);
		_exit(0);
	}
	close(pfd[1]);
	int fd = connect_to("127.0.0.1", ntohs(sa.sin_port));
	if (fd < 0)
		return 1;
	send_for(fd, seconds);
	close(fd);
	char line[128] = { 0 };
	if (read(pfd[0], line, sizeof(line) - 1) <= 0)
		return 1;
	waitpid(pid, NULL, 0);
	double secs;
	unsigned long long bytes;
	sscanf(line, "%lf %llu", &secs, &bytes);
	printf("{\"tcp_Bps\":%.0f,\"bytes\":%llu,\"seconds\":%.3f}\n", (double)bytes / secs, bytes, secs);
	return 0;
}

/* Receives exactly len bytes into a fresh anonymous mapping: what a
 * migration target does with round 0. On hosts that supply memory lazily
 * this, not TCP, is the ceiling. warm: the mapping is populated before
 * the sender connects. */
static int serve_fresh(int lfd, size_t len, int warm, double *secs)
{
	char *dst = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	size_t got = 0;
	double t0 = 0;
	int fd;

	if (dst != MAP_FAILED && warm)
		memset(dst, 0x5a, len);
	fd = accept(lfd, NULL, NULL);
	if (fd < 0 || dst == MAP_FAILED)
		return perror("accept/mmap"), 1;
	while (got < len) {
		ssize_t r = read(fd, dst + got, len - got);
		if (r <= 0)
			break;
		if (!got)
			t0 = now();
		got += (size_t)r;
	}
	*secs = now() - t0;
	close(fd);
	munmap(dst, len);
	return got == len ? 0 : 1;
}

static int do_tcp_fresh(size_t mib, int warm)
{
	size_t len = mib << 20;
	int lfd = listen_on("127.0.0.1", 0), pfd[2];
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char *src, line[64] = { 0 };
	double secs;

	if (lfd < 0 || pipe(pfd) < 0)
		return 1;
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		if (serve_fresh(lfd, len, warm, &secs))
			_exit(1);
		dprintf(pfd[1], "%.9f\n", secs);
		_exit(0);
	}
	close(pfd[1]);
	src = malloc(len);
	if (!src)
		return 1;
	memset(src, 0xa5, len); /* the sender's memory is warm, as a source's is */
	int fd = connect_to("127.0.0.1", ntohs(sa.sin_port));
	if (fd < 0)
		return 1;
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, src + off, len - off);
		if (w <= 0)
			return perror("write"), 1;
		off += (size_t)w;
	}
	close(fd);
	free(src);
	if (read(pfd[0], line, sizeof(line) - 1) <= 0 || sscanf(line, "%lf", &secs) != 1)
		return 1;
	waitpid(pid, NULL, 0);
	printf("{\"%s\":%.0f,\"bytes\":%zu,\"seconds\":%.3f}\n",
	       warm ? "tcp_mem_Bps" : "tcp_fresh_Bps", (double)len / secs, len, secs);
	return 0;
}

#define PAGE 4096
#define REQ 16

static int read_full(int fd, char *b, size_t n)
{
	for (size_t off = 0; off < n;) {
		ssize_t r = read(fd, b + off, n - off);
		if (r <= 0)
			return -1;
		off += (size_t)r;
	}
	return 0;
}

static int write_full(int fd, const char *b, size_t n)
{
	for (size_t off = 0; off < n;) {
		ssize_t w = write(fd, b + off, n - off);
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	return 0;
}

static void nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int do_page_server(const char *addr, int port)
{
	static char page[REQ + PAGE];
	char req[REQ];
	int lfd = listen_on(addr, port), fd;

	if (lfd < 0)
		return 1;
	printf("listening\n");
	fflush(stdout);
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return perror("accept"), 1;
	nodelay(fd);
	memset(page, 0xa5, sizeof(page));
	while (!read_full(fd, req, REQ)) {
		memcpy(page, req, REQ);
		if (write_full(fd, page, sizeof(page)))
			return perror("write"), 1;
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int do_page_client(const char *addr, int port, int n, int gap_us)
{
	static char page[REQ + PAGE];
	double *lat = calloc((size_t)n, sizeof(*lat));
	int fd = connect_to(addr, port);
	char req[REQ] = { 0 };

	if (fd < 0 || !lat || n < 1)
		return 1;
	nodelay(fd);
	for (int i = 0; i < n; i++) {
		double t0 = now();

		memcpy(req, &i, sizeof(i));
		if (write_full(fd, req, REQ) || read_full(fd, page, sizeof(page)))
			return perror("page request"), 1;
		lat[i] = now() - t0;
		usleep((useconds_t)gap_us);
	}
	close(fd);
	qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
	printf("{\"n\":%d,\"p50_ms\":%.4f,\"p90_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f}\n", n,
	       lat[n / 2] * 1e3, lat[n * 9 / 10] * 1e3, lat[n * 99 / 100] * 1e3, lat[n - 1] * 1e3);
	free(lat);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "memcpy"))
		return do_memcpy((size_t)atol(argv[2]), atoi(argv[3]));
	if (argc >= 3 && !strcmp(argv[1], "zeroscan"))
		return do_zeroscan((size_t)atol(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "tcp"))
		return do_tcp_loop(atof(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "tcp-fresh"))
		return do_tcp_fresh((size_t)atol(argv[2]), 0);
	if (argc >= 3 && !strcmp(argv[1], "tcp-mem"))
		return do_tcp_fresh((size_t)atol(argv[2]), 1);
	if (argc >= 4 && !strcmp(argv[1], "tcp-server")) {
		int lfd = listen_on(argv[2], atoi(argv[3]));
		if (lfd < 0)
			return 1;
		printf("listening\n");
		fflush(stdout);
		double secs;
		uint64_t bytes;
		if (serve(lfd, &secs, &bytes))
			return 1;
		printf("{\"tcp_Bps\":%.0f,\"bytes\":%llu,\"seconds\":%.3f}\n", (double)bytes / secs,
		       (unsigned long long)bytes, secs);
		return 0;
	}
	if (argc >= 5 && !strcmp(argv[1], "tcp-client")) {
		int fd = connect_to(argv[2], atoi(argv[3]));
		return fd < 0 ? 1 : send_for(fd, atof(argv[4]));
	}
	if (argc >= 4 && !strcmp(argv[1], "page-server"))
		return do_page_server(argv[2], atoi(argv[3]));
	if (argc >= 6 && !strcmp(argv[1], "page-client"))
		return do_page_client(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	fprintf(stderr, "usage: ceiling memcpy MIB REPS | zeroscan MIB | tcp SECONDS | tcp-fresh MIB | "
			"tcp-mem MIB | tcp-server ADDR PORT | tcp-client ADDR PORT SECONDS | "
			"page-server ADDR PORT | page-client ADDR PORT N GAP_US\n");
	return 2;
}
