#!/bin/sh
# Installs what `make test` needs on a fresh Debian 12 machine (as root):
# cmocka for the unit and integration tests, valgrind for the leak check,
# setpriv and unshare (util-linux), iproute2 and ping (iputils-ping) for
# the network tests' namespaces, bridge and pings. Nothing else is fetched.
set -e
if [ -f /usr/include/cmocka.h ] && ls /usr/lib/*/libcmocka.so >/dev/null 2>&1 &&
   command -v valgrind >/dev/null && command -v setpriv >/dev/null && command -v unshare >/dev/null &&
   command -v ip >/dev/null && command -v ping >/dev/null; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "tests: libcmocka-dev is missing; run as root or: apt-get install libcmocka-dev" >&2
	exit 1
fi
echo "tests: installing libcmocka-dev valgrind util-linux iproute2 iputils-ping" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq libcmocka-dev valgrind util-linux iproute2 iputils-ping >/dev/null
