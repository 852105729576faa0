/* Placeholder until the engine lands: every entry point says so. */
#include "migrate/migrate.h"

#include <errno.h>

int mig_start(struct vm *vm, const char *uri, const struct mig_params *p,
	      char *err, size_t errlen)
{
	(void)vm; (void)uri; (void)p;
	snprintf(err, errlen, "migration is not implemented yet");
	return -ENOSYS;
}

int mig_cancel(struct vm *vm)
{
	(void)vm;
	return -ENOENT;
}

void mig_info(struct vm *vm, FILE *out)
{
	(void)vm;
	fprintf(out, "Migration status: none\n");
}

int mig_set_parameter(struct vm *vm, const char *name, const char *value,
		      char *err, size_t errlen)
{
	(void)vm; (void)value;
	snprintf(err, errlen, "unknown parameter '%s'", name);
	return -EINVAL;
}

int mig_incoming(const char *uri, const struct mig_params *p, struct vm *vm,
		 char *err, size_t errlen)
{
	(void)uri; (void)p; (void)vm;
	snprintf(err, errlen, "migration is not implemented yet");
	return -ENOSYS;
}

int mig_incoming_commit(struct vm *vm, char *err, size_t errlen)
{
	(void)vm;
	snprintf(err, errlen, "migration is not implemented yet");
	return -ENOSYS;
}

void mig_destroy(struct vm *vm)
{
	(void)vm;
}

int mig_remote(const char *name, const char *monitor_path, const char *uri,
	       const struct mig_params *p)
{
	(void)name; (void)monitor_path; (void)uri; (void)p;
	fprintf(stderr, "minivmm: migration is not implemented yet\n");
	return 3;
}
