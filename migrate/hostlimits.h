/* What this host can give an incoming VM when the operator did not say
 * (--mem/--cpus): a peer must not be able to ask for 1 TiB and 64 vCPUs
 * of a host that has neither. docs/migration.md, "Robustness". */
#ifndef MINIVMM_MIGRATE_HOSTLIMITS_H
#define MINIVMM_MIGRATE_HOSTLIMITS_H

#include <stddef.h>
#include <stdint.h>

/* From /proc/meminfo's text: MemAvailable, or MemTotal when the kernel
 * has no MemAvailable, in bytes; -ENOENT when neither is there. */
int hostlimits_parse_meminfo(const char *text, uint64_t *bytes);
/* The largest RAM an incoming VM may have here (0: unknown, no limit). */
uint64_t hostlimits_max_mem(void);
/* The most vCPUs an incoming VM may have here: the online CPUs. */
int hostlimits_max_cpus(void);

#endif
