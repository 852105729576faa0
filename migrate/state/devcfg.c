#include "migrate/state/devcfg.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "devices/virtio/net.h"
#include "migrate/proto/stream.h"
#include "vmm/core/netopt.h"
#include "vmm/core/tap.h"
#include "vmm/core/blkdev.h"
#include "vmm/core/netdev.h"
#include "vmm/core/vm.h"

int devcfg_encode(const struct devcfg *d, uint8_t *out, size_t cap)
{
	size_t plen = d->disk ? strnlen(d->disk_path, DEVCFG_DISK_PATH_MAX) : 0;
	size_t need = 4 + (d->nic ? 8 + DEVCFG_NIC_LEN : 0) +
		      (d->disk ? 8 + DEVCFG_DISK_FIXED + plen : 0), off = 4;

	if (cap < need)
		return -ENOSPC;
	le_put32(out, (d->nic ? 1 : 0) + (d->disk ? 1 : 0));
	if (d->nic) {
		le_put32(out + off, DEVCFG_KIND_NIC);
		le_put32(out + off + 4, DEVCFG_NIC_LEN);
		memcpy(out + off + 8, d->mac, 6);
		memset(out + off + 14, 0, IFNAMSIZ);
		memcpy(out + off + 14, d->bridge, strnlen(d->bridge, IFNAMSIZ - 1));
		off += 8 + DEVCFG_NIC_LEN;
	}
	if (d->disk) {
		le_put32(out + off, DEVCFG_KIND_DISK);
		le_put32(out + off + 4, (uint32_t)(DEVCFG_DISK_FIXED + plen));
		le_put64(out + off + 8, d->disk_size);
		le_put32(out + off + 16, d->disk_flags);
		out[off + 20] = (uint8_t)plen;
		out[off + 21] = (uint8_t)(plen >> 8);
		memcpy(out + off + 22, d->disk_path, plen);
	}
	return (int)need;
}

static int decode_disk(const uint8_t *in, uint32_t elen, struct devcfg *d, char *err,
		       size_t errlen)
{
	uint32_t plen;

	if (d->disk || elen < DEVCFG_DISK_FIXED) {
		snprintf(err, errlen, "bad DEVICES: disk entry");
		return -EPROTO;
	}
	plen = (uint32_t)in[12] | (uint32_t)in[13] << 8;
	d->disk_size = le_get64(in);
	d->disk_flags = le_get32(in + 8);
	if (plen != elen - DEVCFG_DISK_FIXED || plen > DEVCFG_DISK_PATH_MAX ||
	    memchr(in + DEVCFG_DISK_FIXED, 0, plen) || (d->disk_flags & ~DEVCFG_DISK_FLAGS) ||
	    d->disk_size == 0 || d->disk_size % 512) {
		snprintf(err, errlen, "bad DEVICES: disk entry (size %llu, flags 0x%x, path %u bytes)",
			 (unsigned long long)d->disk_size, d->disk_flags, plen);
		return -EPROTO;
	}
	memcpy(d->disk_path, in + DEVCFG_DISK_FIXED, plen);
	d->disk_path[plen] = '\0';
	d->disk = true;
	return 0;
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
		if (kind == DEVCFG_KIND_DISK) {
			if (decode_disk(in + off, elen, d, err, errlen) < 0)
				return -EPROTO;
			off += elen;
			continue;
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
	if (vm->cfg.net.set && vm->netdev) {
		d->nic = true;
		memcpy(d->mac, vm->netdev->net->mac, 6);
		snprintf(d->bridge, sizeof(d->bridge), "%s", vm->cfg.net.bridge);
	}
	if (vm->cfg.disk.set && vm->blkdev) {
		const struct disk_opts *o = &vm->blkdev->o;

		d->disk = true;
		d->disk_size = vm->blkdev->size;
		d->disk_flags = (o->readonly ? DEVCFG_DISK_RO : 0) |
				(o->cache == DISK_CACHE_NONE ? DEVCFG_DISK_CACHE_NONE : 0);
		/* A relative path means nothing elsewhere; the target then
		 * needs its own --disk. */
		if (o->path[0] == '/' && strlen(o->path) <= DEVCFG_DISK_PATH_MAX)
			memcpy(d->disk_path, o->path, strlen(o->path) + 1);
	}
	return d->nic || d->disk;
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

int devcfg_accept_disk(const struct devcfg *d, const struct disk_opts *mine,
		       struct disk_opts *out, char *why, size_t whylen)
{
	uint64_t size;
	char err[PATH_MAX + 128];

	memset(out, 0, sizeof(*out));
	if (!d->disk) {
		if (mine && mine->set) {
			snprintf(why, whylen, "this target was started with --disk, the VM has no disk");
			return -EPERM;
		}
		return 0;
	}
	if (d->disk_flags & DEVCFG_DISK_STREAMED) {
		if (!mine || !mine->set) {
			snprintf(why, whylen, "the VM's disk comes in the stream: start the target "
				 "with --disk PATH (created if missing)");
			return -EPERM;
		}
		*out = *mine;
		out->readonly = d->disk_flags & DEVCFG_DISK_RO;
		out->copy_target = true;
		if (blkdev_prepare_copy(out, d->disk_size, err, sizeof(err)) < 0) {
			snprintf(why, whylen, "the VM's disk: %.900s", err);
			return -EPERM;
		}
		return 0;
	}
	if (mine && mine->set) {
		*out = *mine;
	} else if (d->disk_path[0]) {
		out->set = true;
		snprintf(out->path, sizeof(out->path), "%s", d->disk_path);
		out->cache = d->disk_flags & DEVCFG_DISK_CACHE_NONE ? DISK_CACHE_NONE :
			     DISK_CACHE_WRITEBACK;
	} else {
		snprintf(why, whylen, "the VM has a disk whose path the source did not send: start "
			 "the target with --disk PATH");
		return -EPERM;
	}
	/* The guest's view stays the source's: read-only or not. */
	out->readonly = d->disk_flags & DEVCFG_DISK_RO;
	/* The source holds the image's lock until it has flushed, in the
	 * pause: the target takes it then (blkdev_activate). */
	out->defer_lock = true;
	if (blkdev_probe(out, &size, err, sizeof(err)) < 0) {
		snprintf(why, whylen, "the VM's disk: %.900s", err);
		return -EPERM;
	}
	if (size != d->disk_size) {
		snprintf(why, whylen, "the VM's disk is %llu bytes, %.600s here is %llu bytes",
			 (unsigned long long)d->disk_size, out->path, (unsigned long long)size);
		return -EPERM;
	}
	return 0;
}
