/* Whether a destination URI (what a source migrates to) names the
 * address this target listens on, from this host: the same-host name
 * check's proof that the local VM of that name is migrating to us, not
 * somewhere else (docs/migration.md, "Robustness"). */
#include "migrate/transport/transport.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* An address is this host's when a socket can be bound to it. */
static bool host_is_local(const char *host)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM }, *res = NULL;
	bool local = false;

	if (getaddrinfo(host, "0", &hints, &res))
		return false;
	for (struct addrinfo *ai = res; ai && !local; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			continue;
		local = bind(fd, ai->ai_addr, ai->ai_addrlen) == 0;
		close(fd);
	}
	freeaddrinfo(res);
	return local;
}

bool transport_same_endpoint(const char *dest_uri, const char *listen_uri)
{
	struct transport_addr d, l;
	struct stat sd, sl;
	char err[64];

	if (!dest_uri || !listen_uri ||
	    transport_parse(dest_uri, false, &d, err, sizeof(err)) ||
	    transport_parse(listen_uri, true, &l, err, sizeof(err)) || d.kind != l.kind)
		return false;
	switch (d.kind) {
	case TRANSPORT_TCP:
		/* A target on one address is only reached by that spelling
		 * (string compare: names are not resolved to each other). */
		return d.port == l.port && host_is_local(d.host) &&
		       (!l.host[0] || !strcmp(d.host, l.host));
	case TRANSPORT_UNIX:
		/* The same socket file, however each side spells the path. */
		return stat(d.path, &sd) == 0 && stat(l.path, &sl) == 0 &&
		       sd.st_dev == sl.st_dev && sd.st_ino == sl.st_ino;
	case TRANSPORT_FILE:
		return false;
	}
	return false;
}
