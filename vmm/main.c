/* minivmm: a small VMM for live-migration research. Only main() exits. */
#include <stdio.h>
#include <string.h>

#include "migrate/auth/keyfile.h"
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
	if (o.action == CLI_GEN_KEY) {
		if (auth_key_generate(o.gen_key, err, sizeof(err)) < 0) {
			fprintf(stderr, "minivmm: --gen-key %s\n", err);
			return VMM_STATUS_USAGE;
		}
		fprintf(stderr, "minivmm: wrote a new migration key to %s (mode 0600)\n",
			o.gen_key);
		return VMM_STATUS_OK;
	}
	/* A bad key file is bad input, found before anything boots or listens. */
	if (o.incoming || o.migrate || o.mig.key[0]) {
		struct auth_key k;
		char kerr[4200];

		if (auth_key_resolve(o.mig.key, &k, kerr, sizeof(kerr)) < 0) {
			fprintf(stderr, "minivmm: %s\n", kerr);
			return VMM_STATUS_USAGE;
		}
		memset(&k, 0, sizeof(k));
	}
	return vmm_main(&o);
}
