#include "migrate/params.h"

#include <errno.h>
#include <string.h>

#include "migrate/policy/estimator.h"
#include "migrate/proto/stream.h"
#include "vmm/core/parse.h"

#define F(field) offsetof(struct mig_tunables, field), sizeof(((struct mig_tunables *)0)->field)
#define BOTH (MIG_PARAM_SOURCE | MIG_PARAM_TARGET)

/* In enum mig_nonconv order. */
static const char *const nonconv_choices[] = { "force", "cancel", "throttle", "postcopy", NULL };
static const char *const onoff_choices[] = { "off", "on", NULL };

/* Defaults, with their reasons and figures in docs/migration.md: two data
 * channels, one per core of the 2-core benchmark machines ("Data
 * channels"); nice 0, since a nice'd migration starves when the guest
 * keeps every core busy ("Priority"). */
const struct mig_param mig_param_table[] = {
	{ "downtime-ms", "downtime-ms", MIG_PARAM_UINT, 30, 1, 3600000, NULL, "N",
	  "downtime limit of the final pause (default 30)", MIG_PARAM_SOURCE,
	  F(downtime_ms) },
	{ "max-bandwidth", "max-bandwidth", MIG_PARAM_SIZE, 0, 0, UINT64_MAX, NULL, "RATE",
	  "bytes/s, K/M/G suffix (default 0: unlimited)", MIG_PARAM_SOURCE,
	  F(max_bandwidth) },
	{ "verify-ram", "verify-ram", MIG_PARAM_BOOL, 0, 0, 1, NULL, NULL,
	  "the target checks a digest of all RAM", MIG_PARAM_SOURCE,
	  F(verify_ram) },
	{ "channels", "migrate-channels", MIG_PARAM_UINT, 2, 0, CHANNELS_MAX, NULL, "N",
	  "parallel connections for pre-copy (0-8, default 2)", MIG_PARAM_SOURCE,
	  F(channels) },
	{ "nice", "migrate-nice", MIG_PARAM_UINT, 0, 0, 19, NULL, "N",
	  "migration threads at nice N (0-19, default 0)", BOTH,
	  F(nice) },
	{ "max-rounds", "max-rounds", MIG_PARAM_UINT, EST_DEFAULT_MAX_ROUNDS, 0, 1000000, NULL,
	  "N", "backstop: after N rounds (default 30)", MIG_PARAM_SOURCE,
	  F(max_rounds) },
	{ "max-bytes-factor", "max-bytes-factor", MIG_PARAM_UINT, EST_DEFAULT_MAX_BYTES_FACTOR,
	  0, 1000, NULL, "N", "backstop: after N x RAM sent (default 3)",
	  MIG_PARAM_SOURCE, F(max_bytes_factor) },
	{ "max-time-s", "max-time-s", MIG_PARAM_UINT, EST_DEFAULT_MAX_TIME_MS / 1000, 0,
	  86400ULL * 365, NULL, "S", "backstop: after S seconds (default 300)",
	  MIG_PARAM_SOURCE, F(max_time_s) },
	{ "on-nonconvergence", "on-nonconvergence", MIG_PARAM_CHOICE, MIG_NONCONV_THROTTLE, 0, 3,
	  nonconv_choices, "throttle|force|cancel|postcopy",
	  "rounds not shrinking: throttle (default; force at a backstop), force, cancel, "
	  "postcopy (the default with --postcopy)",
	  MIG_PARAM_SOURCE, F(nonconvergence) },
	{ "throttle-initial", "throttle-initial", MIG_PARAM_UINT, 20, 1, 99, NULL, "PCT",
	  "first throttle step, % of the time held (default 20)", MIG_PARAM_SOURCE,
	  F(throttle_initial) },
	{ "throttle-increment", "throttle-increment", MIG_PARAM_UINT, 10, 1, 99, NULL, "PCT",
	  "added at each further step (default 10)", MIG_PARAM_SOURCE,
	  F(throttle_increment) },
	{ "throttle-max", "throttle-max", MIG_PARAM_UINT, 99, 1, 99, NULL, "PCT",
	  "throttle ceiling (default 99)", MIG_PARAM_SOURCE, F(throttle_max) },
	{ "xbzrle-cache", "xbzrle-cache", MIG_PARAM_SIZE, 0, 0, UINT64_MAX, NULL, "SIZE",
	  "delta-encode re-sent pages with a cache this big (default 0: off)",
	  MIG_PARAM_SOURCE, F(xbzrle_cache) },
	{ "disk-copy", "migrate-disk", MIG_PARAM_BOOL, 0, 0, 1, NULL, NULL,
	  "send the disk too (no shared storage; the target's --disk is written)",
	  MIG_PARAM_SOURCE, F(disk_copy) },
	{ "manual-protect", NULL, MIG_PARAM_BOOL, 1, 0, 1, NULL, NULL,
	  "re-protect pages just before reading them (default on)",
	  MIG_PARAM_SOURCE, F(manual_protect) },
	{ "postcopy", "postcopy", MIG_PARAM_BOOL, 0, 0, 1, NULL, NULL,
	  "allow post-copy: the target runs the guest and fetches the rest (docs/postcopy.md)",
	  MIG_PARAM_SOURCE, F(postcopy) },
	{ "stats-json", "stats-json", MIG_PARAM_PATH, 0, 0, 0, NULL, "PATH",
	  "write migration statistics as JSON", BOTH, F(stats_json) },
	{ "dirty-trace", "dirty-trace", MIG_PARAM_PATH, 0, 0, 0, NULL, "PATH",
	  "record each round's dirty pages (source)", MIG_PARAM_SOURCE, F(dirty_trace) },
	{ "key", "migrate-key", MIG_PARAM_PATH, 0, 0, 0, NULL, "FILE",
	  "key file, both ends (default: the default key if present)",
	  BOTH, F(key) },
	{ "integrity", "migrate-integrity", MIG_PARAM_CHOICE, 1, 0, 1, onoff_choices, "on|off",
	  "with a key, a MAC on every page frame too (default on)", MIG_PARAM_SOURCE,
	  F(integrity) },
};

const size_t mig_param_count = sizeof(mig_param_table) / sizeof(mig_param_table[0]);

_Static_assert(sizeof(mig_param_table) / sizeof(mig_param_table[0]) <= 32,
	       "set masks are 32 bits");

static void *field(struct mig_tunables *t, const struct mig_param *p)
{
	return (char *)t + p->offset;
}

static const void *cfield(const struct mig_tunables *t, const struct mig_param *p)
{
	return (const char *)t + p->offset;
}

static void store(struct mig_tunables *t, const struct mig_param *p, uint64_t v)
{
	void *f = field(t, p);

	if (p->size == sizeof(bool))
		*(bool *)f = v != 0;
	else if (p->size == sizeof(uint32_t))
		*(uint32_t *)f = (uint32_t)v;
	else
		*(uint64_t *)f = v;
}

static uint64_t load(const struct mig_tunables *t, const struct mig_param *p)
{
	const void *f = cfield(t, p);

	if (p->size == sizeof(bool))
		return *(const bool *)f;
	if (p->size == sizeof(uint32_t))
		return *(const uint32_t *)f;
	return *(const uint64_t *)f;
}

void mig_tunables_default(struct mig_tunables *t)
{
	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < mig_param_count; i++)
		if (mig_param_table[i].kind != MIG_PARAM_PATH)
			store(t, &mig_param_table[i], mig_param_table[i].def);
}

const struct mig_param *mig_param_by_name(const char *name)
{
	for (size_t i = 0; i < mig_param_count; i++)
		if (!strcmp(mig_param_table[i].name, name))
			return &mig_param_table[i];
	return NULL;
}

const struct mig_param *mig_param_by_flag(const char *flag)
{
	for (size_t i = 0; i < mig_param_count; i++)
		if (mig_param_table[i].flag && !strcmp(mig_param_table[i].flag, flag))
			return &mig_param_table[i];
	return NULL;
}

unsigned mig_param_index(const struct mig_param *p)
{
	return (unsigned)(p - mig_param_table);
}

void mig_param_range_text(const struct mig_param *p, char *out, size_t cap)
{
	switch (p->kind) {
	case MIG_PARAM_UINT:
		snprintf(out, cap, "an integer from %llu to %llu", (unsigned long long)p->min,
			 (unsigned long long)p->max);
		break;
	case MIG_PARAM_SIZE:
		if (p->metavar && !strcmp(p->metavar, "SIZE"))
			snprintf(out, cap, "a size in bytes (e.g. 64M; 0: off)");
		else
			snprintf(out, cap, "a rate in bytes/s (e.g. 100M; 0: unlimited)");
		break;
	case MIG_PARAM_BOOL:
		snprintf(out, cap, "on or off");
		break;
	case MIG_PARAM_CHOICE:
		snprintf(out, cap, "%s", p->metavar);
		break;
	case MIG_PARAM_PATH:
		snprintf(out, cap, "a path shorter than %d bytes, or none", MIG_PATH_MAX);
		break;
	}
}

int mig_param_set(struct mig_tunables *t, const struct mig_param *p, const char *value,
		  char *err, size_t errlen)
{
	char want[96];
	uint64_t v = 0;
	bool b;
	int ret = -EINVAL;

	switch (p->kind) {
	case MIG_PARAM_UINT:
		ret = parse_u64(value, p->min, p->max, &v);
		break;
	case MIG_PARAM_SIZE:
		ret = parse_size(value, &v);
		break;
	case MIG_PARAM_BOOL:
		/* b is unset when the value is refused (found by fuzz_monitor). */
		ret = parse_bool(value, &b);
		v = !ret && b;
		break;
	case MIG_PARAM_CHOICE:
		for (uint64_t i = 0; p->choices[i]; i++)
			if (!strcmp(value, p->choices[i])) {
				v = i;
				ret = 0;
			}
		break;
	case MIG_PARAM_PATH:
		if (strlen(value) >= p->size)
			break;
		snprintf(field(t, p), p->size, "%s", strcmp(value, "none") ? value : "");
		return 0;
	}
	if (ret) {
		mig_param_range_text(p, want, sizeof(want));
		snprintf(err, errlen, "%s '%s': must be %s", p->name, value, want);
		return -EINVAL;
	}
	store(t, p, v);
	return 0;
}

void mig_param_format(const struct mig_tunables *t, const struct mig_param *p, char *out,
		      size_t cap)
{
	uint64_t v;

	if (p->kind == MIG_PARAM_PATH) {
		const char *s = cfield(t, p);

		snprintf(out, cap, "%s", *s ? s : "none");
		return;
	}
	v = load(t, p);
	if (p->kind == MIG_PARAM_BOOL)
		snprintf(out, cap, "%s", v ? "on" : "off");
	else if (p->kind == MIG_PARAM_CHOICE)
		snprintf(out, cap, "%s", p->choices[v]);
	else
		snprintf(out, cap, "%llu", (unsigned long long)v);
}

void mig_param_copy(struct mig_tunables *dst, const struct mig_tunables *src,
		    const struct mig_param *p)
{
	memcpy(field(dst, p), cfield(src, p), p->size);
}

void mig_param_usage(FILE *f, unsigned sides)
{
	for (size_t i = 0; i < mig_param_count; i++) {
		const struct mig_param *p = &mig_param_table[i];
		char opt[64];

		if (!p->flag || !(p->sides & sides))
			continue;
		snprintf(opt, sizeof(opt), "%s%s%s", p->flag, p->metavar ? " " : "",
			 p->metavar ? p->metavar : "");
		if (strlen(opt) > 18)
			fprintf(f, "      --%s\n%27s%s\n", opt, "", p->help);
		else
			fprintf(f, "      --%-19s%s\n", opt, p->help);
	}
}

void mig_param_monitor_help(FILE *f)
{
	for (size_t i = 0; i < mig_param_count; i++) {
		const struct mig_param *p = &mig_param_table[i];
		char want[96];

		mig_param_range_text(p, want, sizeof(want));
		fprintf(f, "  %-20s %s; %s\n", p->name, want, p->help);
	}
}
