#include "migrate/state/devcfg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "devices/virtio/net.h"
#include "migrate/proto/stream.h"
#include "vmm/core/netopt.h"
#include "vmm/core/tap.h"
#include "vmm/core/netdev.h"
#include "vmm/core/vm.h"

int devcfg_encode(const struct devcfg *d, uint8_t *out, size_t cap)
{
	size_t need = 4 + (d->nic ? 8 + DEVCFG_NIC_LEN : 0);

	if (cap < need)
		return -ENOSPC;
	le_put32(out, d->nic ? 1 : 0);
	if (d->nic) {
		le_put32(out + 4, DEVCFG_KIND_NIC);
		le_put32(out + 8, DEVCFG_NIC_LEN);
		memcpy(out + 12, d->mac, 6);
		memset(out + 18, 0, IFNAMSIZ);
		memcpy(out + 18, d->bridge, strnlen(d->bridge, IFNAMSIZ - 1));
	}
	return (int)need;
}

int devcfg_decode(const uint8_t *in, size_t len, struct devcfg *d, char *err, size_t errlen)
{
	uint32_t count;
	size_t off = 4;

	memset(d, 0, sizeof(*d));
	if (len < 4 || (count = le_get32(in)) > 8) {
		snprintf(err, errlen, "bad DEVICES: %zu bytes", len);
		return -EPROTO;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint32_t kind, elen;

		if (len - off < 8) {
			snprintf(err, errlen, "bad DEVICES: entry %u is cut short", i);
			return -EPROTO;
		}
		kind = le_get32(in + off);
		elen = le_get32(in + off + 4);
		off += 8;
		if (elen > len - off) {
			snprintf(err, errlen, "bad DEVICES: entry %u is longer than the frame", i);
			return -EPROTO;
		}
		if (kind != DEVCFG_KIND_NIC) {
			snprintf(err, errlen, "the VM has a device of kind %u this host cannot provide",
				 kind);
			return -EPROTO;
		}
		if (elen != DEVCFG_NIC_LEN || d->nic) {
			snprintf(err, errlen, "bad DEVICES: network card entry");
			return -EPROTO;
		}
		d->nic = true;
		memcpy(d->mac, in + off, 6);
		memcpy(d->bridge, in + off + 6, IFNAMSIZ);
		if (d->bridge[IFNAMSIZ - 1] != '\0' ||
		    (d->bridge[0] && !net_ifname_valid(d->bridge)) || (d->mac[0] & 1)) {
			snprintf(err, errlen, "bad DEVICES: network card bridge or MAC");
			return -EPROTO;
		}
		off += elen;
	}
	if (off != len) {
		snprintf(err, errlen, "bad DEVICES: %zu bytes after the entries", len - off);
		return -EPROTO;
	}
	return 0;
}

bool devcfg_from_vm(const struct vm *vm, struct devcfg *d)
{
	memset(d, 0, sizeof(*d));
	if (!vm->cfg.net.set || !vm->netdev)
		return false;
	d->nic = true;
	memcpy(d->mac, vm->netdev->net->mac, 6);
	snprintf(d->bridge, sizeof(d->bridge), "%s", vm->cfg.net.bridge);
	return true;
}

int devcfg_accept(const struct devcfg *d, const struct net_opts *mine, struct net_opts *out,
		  char *why, size_t whylen)
{
	memset(out, 0, sizeof(*out));
	if (!d->nic) {
		if (mine && mine->set) {
			snprintf(why, whylen, "this target was started with --net, the VM has no "
				 "network card");
			return -EPERM;
		}
		return 0;
	}
	if (!mine || !mine->set) {
		snprintf(why, whylen, "the VM has a network card: start the target with "
			 "--net tap=IFNAME");
		return -EPERM;
	}
	*out = *mine;
	/* The guest keeps its MAC; its new tap joins the bridge it was on,
	 * unless this target names its own. */
	memcpy(out->mac, d->mac, 6);
	out->mac_given = true;
	if (!out->bridge[0])
		snprintf(out->bridge, sizeof(out->bridge), "%s", d->bridge);
	if (out->bridge[0] && tap_bridge_check(out->bridge, why, whylen) < 0)
		return -EPERM;
	return 0;
}
