#include "migrate/auth/random.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

int auth_random(void *buf, size_t len, char *err, size_t errlen)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			int e = errno;

			if (e == EINTR)
				continue;
			snprintf(err, errlen, "getrandom: %s", strerror(e));
			return -e;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
