/* Parsers for the values people type: the command line, the monitor and
 * the migration parameters all read numbers, sizes and switches the same
 * way. Each returns 0 or -EINVAL/-ERANGE and leaves *out alone then. */
#ifndef MINIVMM_PARSE_H
#define MINIVMM_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* K/M/G/T suffixes (binary multiples, optional "i" and "B": 2G, 2GiB). */
int parse_size(const char *s, uint64_t *out);
/* A plain decimal in [min, max]; no sign, no suffix. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* on/off, 1/0, true/false, yes/no. */
int parse_bool(const char *s, bool *out);

#endif
