#include "vmm/core/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* By ioctl, not /sys: sysfs shows the namespace it was mounted in,
 * which need not be ours (unshare -n). A bridge's driver is "bridge". */
static int is_bridge(const char *br)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq ifr;
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;

	if (sock < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", br);
	if (ioctl(sock, SIOCGIFINDEX, &ifr) < 0) {
		ret = -ENODEV;
	} else {
		ifr.ifr_data = (void *)&info;
		if (ioctl(sock, SIOCETHTOOL, &ifr) < 0 || strcmp(info.driver, "bridge") != 0)
			ret = -ENOTTY;
	}
	close(sock);
	return ret;
}

static int if_up(int sock, const char *name, char *err, size_t errlen)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) {
		snprintf(err, errlen, "SIOCGIFFLAGS %s: %s", name, strerror(errno));
		return -errno;
	}
	if (ifr.ifr_flags & IFF_UP)
		return 0;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) {
		snprintf(err, errlen, "SIOCSIFFLAGS %s up: %s", name, strerror(errno));
		return -errno;
	}
	return 0;
}

int tap_bridge_check(const char *br, char *err, size_t errlen)
{
	int ret = is_bridge(br);

	if (ret == -ENODEV)
		snprintf(err, errlen, "bridge %s not found on this host", br);
	else if (ret < 0)
		snprintf(err, errlen, "%s is not a bridge on this host", br);
	return ret;
}

int tap_open(const char *name, const char *bridge, char *err, size_t errlen)
{
	struct ifreq ifr;
	int fd = -1, sock = -1, ret;

	/* Judge the bridge first: a tap made for nothing is not left over. */
	if (bridge && bridge[0] && (ret = is_bridge(bridge)) < 0) {
		snprintf(err, errlen, ret == -ENODEV ? "--net: bridge '%s' does not exist"
						     : "--net: '%s' is not a bridge", bridge);
		return ret;
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "open /dev/net/tun: %s", strerror(errno));
		return ret;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		if (errno == EBUSY)
			snprintf(err, errlen, "--net: tap '%s' is in use by another process", name);
		else if (errno == EINVAL)
			snprintf(err, errlen, "--net: '%s' exists and is not a tap (TUNSETIFF: %s)",
				 name, strerror(EINVAL));
		else
			snprintf(err, errlen, "TUNSETIFF %s: %s", name, strerror(errno));
		goto fail;
	}
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		ret = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto fail;
	}
	if (bridge && bridge[0]) {
		struct ifreq br, idx;

		memset(&idx, 0, sizeof(idx));
		snprintf(idx.ifr_name, sizeof(idx.ifr_name), "%s", name);
		if (ioctl(sock, SIOCGIFINDEX, &idx) < 0) {
			ret = -errno;
			snprintf(err, errlen, "SIOCGIFINDEX %s: %s", name, strerror(errno));
			goto fail;
		}
		memset(&br, 0, sizeof(br));
		snprintf(br.ifr_name, sizeof(br.ifr_name), "%s", bridge);
		br.ifr_ifindex = idx.ifr_ifindex;
		/* EBUSY: already a port of a bridge (this one, if the tap
		 * is persistent and was attached before: fine). */
		if (ioctl(sock, SIOCBRADDIF, &br) < 0 && errno != EBUSY) {
			ret = -errno;
			snprintf(err, errlen, "SIOCBRADDIF %s to %s: %s", name, bridge,
				 strerror(errno));
			goto fail;
		}
	}
	ret = if_up(sock, name, err, errlen);
	if (ret)
		goto fail;
	close(sock);
	return fd;
fail:
	if (sock >= 0)
		close(sock);
	close(fd);
	return ret;
}

ssize_t tap_send(void *opaque, const void *frame, size_t len)
{
	ssize_t n = write((int)(intptr_t)opaque, frame, len);

	return n < 0 ? -errno : n;
}

ssize_t tap_recv(void *opaque, void *buf, size_t cap)
{
	ssize_t n;

	do
		n = read((int)(intptr_t)opaque, buf, cap);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}
