/* What a VM's devices need of the host it moves to, sent in a DEVICES
 * frame right after HELLO (docs/migration-stream.md) so that a target that
 * cannot provide it refuses before any RAM moves: today the NIC, its MAC
 * and the bridge its tap joins. Pure encode/decode (fuzzed with the other
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

#define DEVCFG_KIND_NIC 1u
#define DEVCFG_NIC_LEN (6 + IFNAMSIZ)

struct devcfg {
	bool nic;
	uint8_t mac[6];
	char bridge[IFNAMSIZ]; /* "" = the source's tap is on no bridge */
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

#endif
