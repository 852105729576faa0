/* Default limits for an incoming VM, read from the host. */
#include "migrate/hostlimits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int field_kib(const char *text, const char *key, uint64_t *kib)
{
	size_t kl = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		char *end;
		unsigned long long v;

		if (strncmp(p, key, kl) || p[kl] != ':')
			continue;
		v = strtoull(p + kl + 1, &end, 10);
		if (end == p + kl + 1)
			return -EINVAL;
		*kib = v;
		return 0;
	}
	return -ENOENT;
}

int hostlimits_parse_meminfo(const char *text, uint64_t *bytes)
{
	uint64_t kib;

	if (field_kib(text, "MemAvailable", &kib) && field_kib(text, "MemTotal", &kib))
		return -ENOENT;
	if (kib > UINT64_MAX / 1024)
		return -ERANGE;
	*bytes = kib * 1024;
	return 0;
}

uint64_t hostlimits_max_mem(void)
{
	char buf[8192];
	uint64_t bytes = 0;
	ssize_t n;
	int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return hostlimits_parse_meminfo(buf, &bytes) ? 0 : bytes;
}

int hostlimits_max_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (int)n : 1;
}
