/* Random bytes for keys, nonces and tokens: getrandom(2), blocking until
 * the kernel's pool is initialised, never a userspace generator. */
#ifndef MINIVMM_AUTH_RANDOM_H
#define MINIVMM_AUTH_RANDOM_H

#include <stddef.h>

int auth_random(void *buf, size_t len, char *err, size_t errlen);

#endif
