#!/bin/sh
# Installs clang with libFuzzer (Debian 12: the clang package, clang 14,
# ships libclang_rt.fuzzer) when `clang -fsanitize=fuzzer` cannot link a
# fuzz target here. Nothing else is fetched.
set -e
probe() {
	d=$(mktemp -d) || return 1
	printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$d/p.c"
	clang -fsanitize=fuzzer,address,undefined -o "$d/p" "$d/p.c" >/dev/null 2>&1
	r=$?
	rm -rf "$d"
	return $r
}
command -v clang >/dev/null 2>&1 && probe && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "fuzz: clang with libFuzzer is missing; run as root or: apt-get install clang" >&2
	exit 1
fi
echo "fuzz: installing clang (libFuzzer)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq clang >/dev/null
probe || { echo "fuzz: clang -fsanitize=fuzzer still does not link" >&2; exit 1; }
