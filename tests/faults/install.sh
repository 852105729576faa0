#!/bin/sh
# The fault matrix's drop cases need nft (Debian's nftables); iproute2
# (ip, tc) comes with tests/install-deps.sh. Nothing else is fetched.
set -e
command -v nft >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "faults: nft is missing; run as root or: apt-get install nftables" >&2
	exit 1
fi
echo "faults: installing nftables" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq nftables >/dev/null
