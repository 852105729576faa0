/* Migration parameters: one table (name, command-line flag, default,
 * range, help) from which the command line, `--help`, the monitor's
 * `migrate_set_parameter` and `help` are all made. A new parameter is a
 * field in struct mig_tunables and a row in params.c. */
#ifndef MINIVMM_MIGRATE_PARAMS_H
#define MINIVMM_MIGRATE_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MIG_PATH_MAX 4096

enum mig_nonconv {
	MIG_NONCONV_FORCE,  /* switch over anyway, with a longer pause */
	MIG_NONCONV_CANCEL, /* give up; the guest keeps running here */
	MIG_NONCONV_THROTTLE, /* slow the vCPUs while rounds do not shrink, then force */
	MIG_NONCONV_POSTCOPY, /* switch to post-copy (needs postcopy on; its default then) */
};

struct mig_tunables {
	uint32_t downtime_ms;
	uint64_t max_bandwidth;     /* bytes/s, 0 = unlimited */
	bool verify_ram;
	uint32_t max_rounds;
	uint32_t max_bytes_factor;  /* x RAM */
	uint64_t max_time_s;
	uint32_t nonconvergence;    /* enum mig_nonconv */
	bool manual_protect;        /* use KVM_CLEAR_DIRTY_LOG when offered */
	uint32_t channels;          /* data channels for the pre-copy rounds */
	uint32_t nice;              /* migration threads below the vCPUs (0-19) */
	uint32_t throttle_initial;  /* percent of the time the vCPUs are held */
	uint32_t throttle_increment;
	uint32_t throttle_max;
	uint64_t xbzrle_cache;      /* bytes of delta-encoding cache, 0 = off */
	bool disk_copy;             /* the disk travels in the stream (no shared storage) */
	bool postcopy;              /* post-copy allowed (docs/postcopy.md) */
	char stats_json[MIG_PATH_MAX];
	char dirty_trace[MIG_PATH_MAX];
	char key[MIG_PATH_MAX];     /* migration key file; "": the default one if present */
	bool integrity;             /* with a key: MACs on PAGES frames too */
};

enum mig_param_kind {
	MIG_PARAM_UINT,   /* decimal, within [min, max] */
	MIG_PARAM_SIZE,   /* K/M/G/T suffix allowed; 0 = unlimited (or off) */
	MIG_PARAM_BOOL,   /* on/off; on the command line a flag without value */
	MIG_PARAM_CHOICE, /* one of choices[], stored as its index */
	MIG_PARAM_PATH,   /* "none" clears it */
};

enum mig_param_side {
	MIG_PARAM_SOURCE = 1,
	MIG_PARAM_TARGET = 2,
};

struct mig_param {
	const char *name;       /* monitor name */
	const char *flag;       /* command-line long option, NULL: monitor only */
	enum mig_param_kind kind;
	uint64_t def, min, max; /* UINT: range; SIZE: max */
	const char *const *choices;
	const char *metavar;    /* in --help: N, RATE, PATH */
	const char *help;       /* one line */
	unsigned sides;         /* enum mig_param_side bits */
	size_t offset, size;    /* the field in struct mig_tunables */
};

extern const struct mig_param mig_param_table[];
extern const size_t mig_param_count;

void mig_tunables_default(struct mig_tunables *t);
/* By monitor name or command-line flag (without "--"); NULL if none. */
const struct mig_param *mig_param_by_name(const char *name);
const struct mig_param *mig_param_by_flag(const char *flag);
/* Index in the table: the bit a set mask uses for it. */
unsigned mig_param_index(const struct mig_param *p);
/* Parses value into p's field of t; -EINVAL with a one-line message. */
int mig_param_set(struct mig_tunables *t, const struct mig_param *p, const char *value,
		  char *err, size_t errlen);
/* The value as mig_param_set would take it back. */
void mig_param_format(const struct mig_tunables *t, const struct mig_param *p, char *out,
		      size_t cap);
/* Copies p's field from src to dst. */
void mig_param_copy(struct mig_tunables *dst, const struct mig_tunables *src,
		    const struct mig_param *p);
/* What p accepts, for messages: "an integer from 0 to 8". */
void mig_param_range_text(const struct mig_param *p, char *out, size_t cap);
/* `--help` lines for the parameters of these sides, and the monitor's list. */
void mig_param_usage(FILE *f, unsigned sides);
void mig_param_monitor_help(FILE *f);

#endif
