#!/bin/bash
# Network-namespace helpers for the net demo and tests: one namespace with
# a bridge (10.77.0.1/24) that the VMs' taps join; everything is made here
# and removed by netns_down. Source it; needs root and iproute2.
#   netns_up NAME      create namespace NAME with lo up and bridge br0
#   netns_exec NAME CMD...
#   netns_down NAME    delete it (taps and bridge go with it)
NETNS_BRIDGE=${NETNS_BRIDGE:-br0}
NETNS_HOST_IP=${NETNS_HOST_IP:-10.77.0.1/24}

netns_need() {
	local missing=
	for c in ip ping; do command -v "$c" >/dev/null || missing="$missing $c"; done
	if [ -n "$missing" ]; then
		echo "netns: missing:$missing (tests/install-deps.sh installs iproute2 iputils-ping)" >&2
		return 1
	fi
	[ -c /dev/net/tun ] || { echo "netns: /dev/net/tun is missing" >&2; return 1; }
}

netns_up() {
	local ns=$1
	netns_need || return 1
	ip netns del "$ns" 2>/dev/null
	ip netns add "$ns" || return 1
	ip -n "$ns" link set lo up &&
	ip -n "$ns" link add "$NETNS_BRIDGE" type bridge &&
	# No STP delay: a tap that joins forwards at once.
	ip -n "$ns" link set "$NETNS_BRIDGE" type bridge forward_delay 0 stp_state 0 &&
	# A fixed address: a bridge without one takes its ports' lowest MAC,
	# so it would change when the source's tap goes, and the replies the
	# guest sends to the old one would be lost.
	ip -n "$ns" link set "$NETNS_BRIDGE" address 02:00:00:77:00:01 &&
	ip -n "$ns" addr add "$NETNS_HOST_IP" dev "$NETNS_BRIDGE" &&
	ip -n "$ns" link set "$NETNS_BRIDGE" up
}

netns_exec() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

netns_down() {
	ip netns del "$1" 2>/dev/null
	return 0
}
