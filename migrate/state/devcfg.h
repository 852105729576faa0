/* What a VM's devices need of the host it moves to, sent in a DEVICES
 * frame right after HELLO (docs/migration-stream.md) so that a target that
 * cannot provide it refuses before any RAM moves: the NIC, its MAC and the
 * bridge its tap joins; the disk, its size, mode and the source's path
 * (the target's default). Pure encode/decode (fuzzed with the other
 * frame decoders), plus the two ends: what a VM has, and how a target's
 * own options are completed from it. */
#ifndef MINIVMM_MIGRATE_DEVCFG_H
#define MINIVMM_MIGRATE_DEVCFG_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct net_opts;
struct disk_opts;

#define DEVCFG_KIND_NIC 1u
#define DEVCFG_NIC_LEN (6 + IFNAMSIZ)
#define DEVCFG_KIND_DISK 2u
#define DEVCFG_DISK_FIXED 14u   /* u64 size, u32 flags, u16 path length */
#define DEVCFG_DISK_PATH_MAX 1024u
#define DEVCFG_DISK_RO 1u
#define DEVCFG_DISK_CACHE_NONE 2u
#define DEVCFG_DISK_STREAMED 4u /* the disk travels in the stream (--migrate-disk) */
#define DEVCFG_DISK_FLAGS 7u

struct devcfg {
	bool nic;
	uint8_t mac[6];
	char bridge[IFNAMSIZ]; /* "" = the source's tap is on no bridge */
	bool disk;
	uint64_t disk_size;
	uint32_t disk_flags;   /* DEVCFG_DISK_* */
	char disk_path[DEVCFG_DISK_PATH_MAX + 1]; /* "" = too long to send */
};

/* Payload: u32 count; each entry u32 kind, u32 length, its bytes. A kind
 * this side does not know is refused: the target could not provide it. */
int devcfg_encode(const struct devcfg *d, uint8_t *out, size_t cap);
int devcfg_decode(const uint8_t *in, size_t len, struct devcfg *d, char *err, size_t errlen);
/* The source: what vm has (false when nothing needs saying). */
bool devcfg_from_vm(const struct vm *vm, struct devcfg *d);
/* The target: fills out (the NIC the incoming VM gets) from the target's
 * own --net (mine, may be unset) and the source's needs; -EPERM with why
 * (a missing bridge, a NIC without --net or the reverse). */
int devcfg_accept(const struct devcfg *d, const struct net_opts *mine, struct net_opts *out,
		  char *why, size_t whylen);
/* The same for the disk: out is the target's --disk (mine, may be unset)
 * or else the source's path, opened later without its lock (the source
 * still holds it); the image must exist and have the source's size.
 * -EPERM with why. */
int devcfg_accept_disk(const struct devcfg *d, const struct disk_opts *mine,
		       struct disk_opts *out, char *why, size_t whylen);

#endif
