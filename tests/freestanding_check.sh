#!/usr/bin/env bash
# The library built freestanding must need nothing but the port: every
# undefined symbol of the archive is a cairn_port_* function (no libc, no
# compiler runtime, no memset/memcpy emitted behind our back).
set -euo pipefail
lib=$1
# Symbols one object of the archive needs and another defines are fine.
defined=$(nm --defined-only --format=just-symbols "$lib" | sort -u)
undefined=$(nm -u --format=just-symbols "$lib" | sort -u | comm -23 - <(echo "$defined"))
bad=$(grep -v '^cairn_port_' <<<"$undefined" || true)
echo "undefined symbols of $(basename "$lib"):"
sed 's/^/  /' <<<"$undefined"
if [[ -n $bad ]]; then
	echo "FAIL: the freestanding library needs symbols outside the port:"
	sed 's/^/  /' <<<"$bad"
	exit 1
fi
echo "PASS: only port symbols are undefined"
