/* The --net option: tap=IFNAME[,bridge=BR][,mac=52:54:00:xx:xx:xx].
 * Pure (unit-tested); the tap itself is vmm/core/tap.c's. */
#ifndef MINIVMM_NETOPT_H
#define MINIVMM_NETOPT_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct net_opts {
	bool set;
	char tap[IFNAMSIZ];
	char bridge[IFNAMSIZ]; /* "" = attach to no bridge */
	bool mac_given;
	uint8_t mac[6];
};

/* Fills o from s; -EINVAL with a one-line message naming the bad part. */
int net_opts_parse(const char *s, struct net_opts *o, char *err, size_t errlen);
/* Interface names the kernel accepts: 1..15 bytes, no '/', ':', blank. */
bool net_ifname_valid(const char *s);
/* "aa:bb:cc:dd:ee:ff", unicast; 0 or -EINVAL. */
int net_mac_parse(const char *s, uint8_t mac[6]);

#endif
