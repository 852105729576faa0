/* Command-line parsing into a plain options struct (pure, unit-tested). */
#ifndef MINIVMM_CLI_H
#define MINIVMM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "migrate/params.h"
#include "vmm/core/diskopt.h"
#include "vmm/core/netopt.h"
#include "vmm/core/vm.h"

#define CLI_DEFAULT_MEM (256ULL << 20)

enum cli_action { CLI_RUN, CLI_HELP, CLI_VERSION, CLI_GEN_KEY };

struct cli_opts {
	enum cli_action action;
	const char *kernel;
	const char *append;
	uint64_t mem;
	int cpus;
	bool mem_given, cpus_given; /* with --incoming: what the VM must have */
	bool prealloc;
	const char *name;
	const char *monitor;
	const char *gen_key;      /* --gen-key FILE */
	struct net_opts net;      /* --net (vmm/core/netopt.h) */
	bool dirty_ring;          /* --dirty-tracking ring */
	uint32_t dirty_ring_size; /* --dirty-ring-size; 0: the default */
	struct disk_opts disk;    /* --disk (vmm/core/diskopt.h) */
	/* migration */
	const char *incoming;     /* [HOST]:PORT or file:PATH */
	const char *migrate;      /* HOST:PORT or file:PATH */
	double migrate_after;     /* seconds; < 0 when not given */
	struct mig_tunables mig;  /* migration parameters (migrate/params.c) */
	uint32_t mig_set;         /* those given (bit: mig_param_index) */
};

/* Fills opts; on error returns -EINVAL with a one-line message in err. */
int cli_parse(int argc, char **argv, struct cli_opts *opts, char *err,
	      size_t errlen);
void cli_usage(FILE *f);

#endif
