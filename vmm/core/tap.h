/* The tap back-end of virtio-net: /dev/net/tun without a vnet header (the
 * device adds and strips virtio_net_hdr), created when it does not exist,
 * attached to a bridge with SIOCBRADDIF and brought up, all by ioctl: no
 * iproute2 at run time. */
#ifndef MINIVMM_TAP_H
#define MINIVMM_TAP_H

#include <stddef.h>
#include <sys/types.h>

/* Opens (creating if needed) tap `name`, non-blocking; attaches it to
 * bridge (if not NULL or "") and sets it up. Returns the fd or -errno:
 * -EBUSY when another process holds the tap, -ENODEV when the bridge
 * does not exist, -ENOTTY when it is not a bridge; err has one line. */
int tap_open(const char *name, const char *bridge, char *err, size_t errlen);
/* 0 when br is a bridge on this host; else -ENODEV / -ENOTTY with
 * "bridge br0 not found on this host" / "... is not a bridge" in err. */
int tap_bridge_check(const char *br, char *err, size_t errlen);
/* virtio_net_backend callbacks; opaque is (intptr_t)fd. */
ssize_t tap_send(void *opaque, const void *frame, size_t len);
ssize_t tap_recv(void *opaque, void *buf, size_t cap);

#endif
