/* SHA-256 and frame-MAC throughput (docs/benchmarks.md, "Integrity"):
 * the portable block function, the SHA extensions where the CPU has them,
 * and HMAC-SHA256 over 1 MiB PAGES-sized frames as the migration uses it.
 * Build and run: make bench-sha256. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "migrate/auth/hmac.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define BUF (1u << 20)

static double blocks(void (*fn)(uint32_t *, const uint8_t *, size_t), const uint8_t *b, int reps)
{
	uint32_t h[8] = { 0 };
	double t = now();

	for (int i = 0; i < reps; i++)
		fn(h, b, BUF / 64);
	t = now() - t;
	if (h[0] == 0x12345678)
		printf("!");
	return (double)BUF * reps / t / 1e6;
}

int main(int argc, char **argv)
{
	int reps = argc > 1 ? atoi(argv[1]) : 256;
	uint8_t *b = malloc(BUF), tag[SHA256_LEN];
	struct hmac_key k;
	double t;

	if (!b || reps <= 0)
		return 1;
	for (size_t i = 0; i < BUF; i++)
		b[i] = (uint8_t)(i * 131 + 7);
	printf("sha256 portable C:      %7.0f MB/s\n", blocks(sha256_blocks_c, b, reps));
	if (sha256_have_ni())
		printf("sha256 SHA extensions:  %7.0f MB/s\n", blocks(sha256_blocks_ni, b, reps));
	else
		printf("sha256 SHA extensions:  not on this CPU\n");
	hmac_key_init(&k, "k", 1);
	t = now();
	for (int i = 0; i < reps; i++) {
		struct hmac h;

		hmac_start(&h, &k);
		hmac_update(&h, b, BUF);
		hmac_final(&h, tag);
	}
	t = now() - t;
	printf("frame MAC, 1 MiB frames: %7.0f MB/s (%s)\n", (double)BUF * reps / t / 1e6,
	       sha256_have_ni() ? "SHA extensions" : "portable");
	free(b);
	return 0;
}
