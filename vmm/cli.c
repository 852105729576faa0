#include "vmm/cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/core/parse.h"
#include "migrate/transport/transport.h"

#define CLI_MIN_MEM (4ULL << 20)

enum {
	OPT_MONITOR = 256, OPT_INCOMING, OPT_MIGRATE, OPT_MIGRATE_AFTER, OPT_PREALLOC, OPT_NET, OPT_DISK,
	OPT_DIRTY_TRACKING, OPT_DIRTY_RING_SIZE, OPT_GEN_KEY,
	OPT_PARAM, /* OPT_PARAM + i: migration parameter i (migrate/params.c) */
};

static const struct option core_opts[] = {
	{ "kernel", required_argument, NULL, 'k' },
	{ "append", required_argument, NULL, 'a' },
	{ "mem", required_argument, NULL, 'm' },
	{ "cpus", required_argument, NULL, 'c' },
	{ "name", required_argument, NULL, 'n' },
	{ "monitor", required_argument, NULL, OPT_MONITOR },
	{ "incoming", required_argument, NULL, OPT_INCOMING },
	{ "migrate", required_argument, NULL, OPT_MIGRATE },
	{ "migrate-after", required_argument, NULL, OPT_MIGRATE_AFTER },
	{ "prealloc", no_argument, NULL, OPT_PREALLOC },
	{ "net", required_argument, NULL, OPT_NET },
	{ "dirty-tracking", required_argument, NULL, OPT_DIRTY_TRACKING },
	{ "dirty-ring-size", required_argument, NULL, OPT_DIRTY_RING_SIZE },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "gen-key", required_argument, NULL, OPT_GEN_KEY },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
};

#define NCORE (sizeof(core_opts) / sizeof(core_opts[0]))
#define MAX_OPTS (NCORE + 32 + 1)

/* getopt's table: the core options, then every parameter with a flag. */
static void build_opts(struct option *out)
{
	size_t n = NCORE;

	memcpy(out, core_opts, sizeof(core_opts));
	for (size_t i = 0; i < mig_param_count && n < MAX_OPTS - 1; i++) {
		const struct mig_param *p = &mig_param_table[i];

		if (!p->flag)
			continue;
		out[n++] = (struct option){ p->flag, p->kind == MIG_PARAM_BOOL ? no_argument :
					    required_argument, NULL, OPT_PARAM + (int)i };
	}
	out[n] = (struct option){ NULL, 0, NULL, 0 };
}

void cli_usage(FILE *f)
{
	fprintf(f,
"usage: minivmm --kernel FILE [--append \"ARGS\"] [--mem SIZE] [--cpus N]\n"
"               [--name NAME] [--monitor PATH] [--net tap=IF[,...]]\n"
"               [--disk PATH[,readonly][,cache=none|writeback]]\n"
"               [migration options]\n"
"       minivmm --incoming [HOST]:PORT|unix:PATH|file:PATH\n"
"               [--mem SIZE [--prealloc]] [--cpus N] [--migrate-nice N]\n"
"               [--stats-json PATH] [--name NAME] [--disk PATH[,cache=...]]\n"
"               [--migrate-key FILE]\n"
"       minivmm --migrate HOST:PORT|unix:PATH|file:PATH [--name NAME]\n"
"               [migration options]\n"
"       minivmm --gen-key FILE\n"
"       minivmm --help | --version\n"
"\n"
"Run a Multiboot guest on /dev/kvm, and live-migrate it.\n"
"\n"
"  -k, --kernel FILE        Multiboot v1 image (ELF or a.out kludge) to boot\n"
"  -a, --append ARGS        guest command line (multiboot cmdline)\n"
"  -m, --mem SIZE           guest RAM, with K/M/G/T suffix (default 256M;\n"
"                           at least 4M, a multiple of 4K)\n"
"  -c, --cpus N             vCPUs (default 1); vCPU 0 boots, the others wait\n"
"                           for INIT/SIPI from the guest\n"
"      --prealloc           populate all guest RAM before the guest runs\n"
"  -n, --name NAME          VM name, unique on this host (default vm-PID);\n"
"                           letters, digits, '.', '_', '-'\n"
"      --net tap=IFNAME[,bridge=BR][,mac=52:54:00:xx:xx:xx]\n"
"                           a virtio-net NIC (virtio-pci, IRQ 10) on tap\n"
"                           IFNAME, created if missing, attached to bridge BR\n"
"                           and set up; the MAC defaults to 52:54:00 plus a\n"
"                           hash of the VM name\n"
"      --dirty-tracking bitmap|ring\n"
"                           how migration finds dirtied pages: KVM's bitmap\n"
"                           per memory slot (default), or a ring per vCPU\n"
"                           (KVM_CAP_DIRTY_LOG_RING; chosen when the VM is\n"
"                           made, so also on --incoming)\n"
"      --dirty-ring-size N  ring entries per vCPU, a power of two, at least 4096 (default)\n"
"      --disk PATH[,readonly][,cache=none|writeback]\n"
"                           a virtio-blk disk on the raw image PATH, locked\n"
"                           (one writer per image); cache=none: O_DIRECT.\n"
"                           With --incoming: where the VM's disk is here\n"
"                           (default: the source's path)\n"
"      --monitor PATH       monitor socket (default /run/minivmm/NAME.sock, or\n"
"                           $XDG_RUNTIME_DIR/minivmm/NAME.sock when not root)\n"
"\n"
"Migration:\n"
"      --incoming ADDR      wait for a migration on [HOST]:PORT (all addresses\n"
"                           when HOST is empty; [v6]:PORT for IPv6) or on the\n"
"                           socket unix:PATH (made 0600, removed after), or\n"
"                           restore from file:PATH, then become that VM.\n"
"                           --mem and --cpus, when given, are what the\n"
"                           incoming VM must have (refused otherwise);\n"
"                           --prealloc populates --mem of RAM while waiting,\n"
"                           so receiving does not fault it in\n"
"      --migrate ADDR       migrate to HOST:PORT or unix:PATH (or save to\n"
"                           file:PATH). With --kernel: the VM booted here,\n"
"                           after --migrate-after; without: the running VM\n"
"                           named by --name (or the only one on this host),\n"
"                           through its monitor\n"
"      --migrate-after SEC  seconds to run before migrating (default 0)\n"
"      --gen-key FILE       write a new random migration key to FILE (0600,\n"
"                           never over an existing file) and exit; give the\n"
"                           same file to both ends with --migrate-key. Without\n"
"                           --migrate-key, /etc/minivmm/migrate.key (root) or\n"
"                           $XDG_CONFIG_HOME/minivmm/migrate.key is used when\n"
"                           present ($MINIVMM_KEY_DIR replaces the directory)\n");
	mig_param_usage(f, MIG_PARAM_SOURCE | MIG_PARAM_TARGET);
	fprintf(f,
"\n"
"  -h, --help               this text\n"
"  -V, --version            print the version\n"
"\n"
"Exit status: the guest's, when it leaves through the debug-exit port 0xf4\n"
"((value << 1) | 1, as QEMU's isa-debug-exit) or 0 when it powers off through\n"
"port 0x604; 0 after `quit`, SIGINT/SIGTERM, or a completed migration on the\n"
"source; 2 for bad usage or input; 3 for a failed migration; 4 when the guest\n"
"crashed (triple fault, emulation failure).\n");
}

static int parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= VM_NAME_MAX || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

static int set_param(struct cli_opts *o, const struct mig_param *p, const char *value,
		     char *err, size_t errlen)
{
	char want[96], e2[160];

	if (mig_param_set(&o->mig, p, value ? value : "on", e2, sizeof(e2)) < 0) {
		mig_param_range_text(p, want, sizeof(want));
		snprintf(err, errlen, "--%s '%s': must be %s", p->flag, value, want);
		return -EINVAL;
	}
	o->mig_set |= 1u << mig_param_index(p);
	return 0;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)

int cli_parse(int argc, char **argv, struct cli_opts *o, char *err,
	      size_t errlen)
{
	struct option opts[MAX_OPTS];
	struct transport_addr a;
	char why[200];
	int c, ret;
	long v;

	memset(o, 0, sizeof(*o));
	o->action = CLI_RUN;
	o->mem = CLI_DEFAULT_MEM;
	o->cpus = 1;
	o->migrate_after = -1;
	mig_tunables_default(&o->mig);
	build_opts(opts);
	optind = 0; /* glibc: restart the scan, so tests can parse repeatedly */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":k:a:m:c:n:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'k': o->kernel = optarg; break;
		case 'a': o->append = optarg; break;
		case 'm':
			o->mem_given = true;
			if (parse_size(optarg, &o->mem))
				FAIL("--mem '%s': not a size (use e.g. 256M, 2G)", optarg);
			if (o->mem < CLI_MIN_MEM)
				FAIL("--mem %s: too small (at least 4M)", optarg);
			if (o->mem > VM_MAX_MEM)
				FAIL("--mem %s: too large (at most 1T)", optarg);
			if (o->mem % VM_PAGE_SIZE)
				FAIL("--mem %s: not a multiple of 4K", optarg);
			break;
		case 'c':
			if (parse_int(optarg, 1, VM_MAX_CPUS, &v))
				FAIL("--cpus '%s': must be an integer from 1 to %d", optarg,
				     VM_MAX_CPUS);
			o->cpus = (int)v;
			o->cpus_given = true;
			break;
		case 'n':
			if (!valid_name(optarg))
				FAIL("--name '%s': use 1-%d letters, digits, '.', '_' or '-'",
				     optarg, VM_NAME_MAX - 1);
			o->name = optarg;
			break;
		case OPT_MONITOR: o->monitor = optarg; break;
		case OPT_INCOMING: o->incoming = optarg; break;
		case OPT_MIGRATE: o->migrate = optarg; break;
		case OPT_MIGRATE_AFTER: {
			char *end;
			double d = strtod(optarg, &end);

			if (end == optarg || *end || !(d >= 0) || d > 1e6)
				FAIL("--migrate-after '%s': not a number of seconds", optarg);
			o->migrate_after = d;
			break;
		}
		case OPT_PREALLOC: o->prealloc = true; break;
		case OPT_NET:
			if (o->net.set)
				FAIL("--net: one NIC only for now");
			if (net_opts_parse(optarg, &o->net, why, sizeof(why)))
				FAIL("%s", why);
			break;
		case OPT_DIRTY_TRACKING:
			if (!strcmp(optarg, "ring"))
				o->dirty_ring = true;
			else if (!strcmp(optarg, "bitmap"))
				o->dirty_ring = false;
			else
				FAIL("--dirty-tracking '%s': bitmap or ring", optarg);
			break;
		case OPT_DIRTY_RING_SIZE:
			if (parse_int(optarg, 1, 1 << 20, &v) || (v & (v - 1)))
				FAIL("--dirty-ring-size '%s': a power of two up to 1048576", optarg);
			o->dirty_ring_size = (uint32_t)v;
			break;
		case OPT_DISK:
			if (o->disk.set)
				FAIL("--disk: one disk only for now");
			if (disk_opts_parse(optarg, &o->disk, why, sizeof(why)))
				FAIL("%s", why);
			break;
		case OPT_GEN_KEY: o->action = CLI_GEN_KEY; o->gen_key = optarg; break;
		case 'h': o->action = CLI_HELP; return 0;
		case 'V': o->action = CLI_VERSION; return 0;
		case ':':
			FAIL("option '%s' needs a value", argv[optind - 1]);
		default:
			if (c >= OPT_PARAM && (size_t)(c - OPT_PARAM) < mig_param_count) {
				ret = set_param(o, &mig_param_table[c - OPT_PARAM], optarg, err,
						errlen);
				if (ret)
					return ret;
				break;
			}
			FAIL("unknown option '%s' (see --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		FAIL("unexpected argument '%s' (see --help)", argv[optind]);
	if (o->action == CLI_GEN_KEY) {
		if (o->kernel || o->incoming || o->migrate)
			FAIL("--gen-key writes a key and exits: no --kernel, --incoming or --migrate");
		return 0;
	}
	if (o->incoming && (o->kernel || o->migrate))
		FAIL("--incoming takes the VM from the stream: no --kernel or --migrate");
	if (!o->kernel && !o->incoming && !o->migrate)
		FAIL("no --kernel given (see --help)");
	if (o->prealloc && o->incoming && !o->mem_given)
		FAIL("--prealloc with --incoming needs --mem: the RAM size to populate");
	if (o->prealloc && !o->kernel && !o->incoming)
		FAIL("--prealloc applies to a VM booted or received here, not to --migrate alone");
	if (o->dirty_ring_size && !o->dirty_ring)
		FAIL("--dirty-ring-size needs --dirty-tracking ring");
	if (o->dirty_ring && !o->kernel && !o->incoming)
		FAIL("--dirty-tracking is chosen where the VM is made: with --kernel or --incoming");
	if (o->migrate_after >= 0 && !(o->kernel && o->migrate))
		FAIL("--migrate-after needs --kernel and --migrate");
	/* A typo is bad usage (exit 2), not a failed migration later. */
	if (o->incoming && transport_parse(o->incoming, true, &a, why, sizeof(why)) < 0)
		FAIL("--incoming: %s", why);
	if (o->migrate && transport_parse(o->migrate, false, &a, why, sizeof(why)) < 0)
		FAIL("--migrate: %s", why);
	return 0;
}
