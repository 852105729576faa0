/* minivmm: a small VMM for live-migration research. Only main() exits. */
#include <stdio.h>

#include "vmm/cli.h"
#include "vmm/run.h"

#ifndef MINIVMM_VERSION
#define MINIVMM_VERSION "0.1.0"
#endif

int main(int argc, char **argv)
{
	struct cli_opts o;
	char err[256];

	if (cli_parse(argc, argv, &o, err, sizeof(err)) < 0) {
		fprintf(stderr, "minivmm: %s\n", err);
		return VMM_STATUS_USAGE;
	}
	if (o.action == CLI_HELP) {
		cli_usage(stdout);
		return VMM_STATUS_OK;
	}
	if (o.action == CLI_VERSION) {
		printf("minivmm %s\n", MINIVMM_VERSION);
		return VMM_STATUS_OK;
	}
	return vmm_main(&o);
}
