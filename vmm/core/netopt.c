#include "vmm/core/netopt.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

bool net_ifname_valid(const char *s)
{
	size_t n = strlen(s);

	/* dev_valid_name(): not empty, < IFNAMSIZ, not . or .., no '/',
	 * ':' or whitespace; we also keep to printable ASCII. */
	if (n == 0 || n >= IFNAMSIZ || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isgraph((unsigned char)s[i]) || s[i] == '/' || s[i] == ':' || s[i] == ',' ||
		    s[i] == '=')
			return false;
	return true;
}

int net_mac_parse(const char *s, uint8_t mac[6])
{
	for (int i = 0; i < 6; i++) {
		int hi, lo;

		if (!isxdigit((unsigned char)s[0]) || !isxdigit((unsigned char)s[1]))
			return -EINVAL;
		hi = isdigit((unsigned char)s[0]) ? s[0] - '0' : tolower((unsigned char)s[0]) - 'a' + 10;
		lo = isdigit((unsigned char)s[1]) ? s[1] - '0' : tolower((unsigned char)s[1]) - 'a' + 10;
		mac[i] = (uint8_t)(hi << 4 | lo);
		s += 2;
		if (i < 5 && *s++ != ':')
			return -EINVAL;
	}
	if (*s || (mac[0] & 1))
		return -EINVAL; /* trailing bytes, or a multicast address */
	return 0;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)

int net_opts_parse(const char *s, struct net_opts *o, char *err, size_t errlen)
{
	char buf[256], *save = NULL, *kv;

	memset(o, 0, sizeof(*o));
	if (strlen(s) >= sizeof(buf))
		FAIL("--net: too long");
	snprintf(buf, sizeof(buf), "%s", s);
	for (kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *v = strchr(kv, '=');

		if (!v)
			FAIL("--net: '%s' is not KEY=VALUE (keys: tap, bridge, mac)", kv);
		*v++ = '\0';
		if (!strcmp(kv, "tap")) {
			if (!net_ifname_valid(v))
				FAIL("--net: tap name '%s' is not an interface name (1-%d characters, no '/', ':', ',' or blanks)",
				     v, IFNAMSIZ - 1);
			snprintf(o->tap, sizeof(o->tap), "%s", v);
		} else if (!strcmp(kv, "bridge")) {
			if (!net_ifname_valid(v))
				FAIL("--net: bridge name '%s' is not an interface name (1-%d characters, no '/', ':', ',' or blanks)",
				     v, IFNAMSIZ - 1);
			snprintf(o->bridge, sizeof(o->bridge), "%s", v);
		} else if (!strcmp(kv, "mac")) {
			if (net_mac_parse(v, o->mac))
				FAIL("--net: mac '%s' is not a unicast MAC address like 52:54:00:12:34:56", v);
			o->mac_given = true;
		} else {
			FAIL("--net: unknown key '%s' (keys: tap, bridge, mac)", kv);
		}
	}
	if (!o->tap[0])
		FAIL("--net: tap=IFNAME is required");
	o->set = true;
	return 0;
}
