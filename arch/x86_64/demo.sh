#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The demo: boot the test kernel from build directory BUILD on 4 vCPUs
# (QEMU, TCG), stream its console, then summarise it.
#
#   demo.sh BUILD [CMDLINE...]     default: test=all seed=1 ops=100000
#
# Environment: SMP (default 4), MEM (default 1G).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: demo.sh BUILD [CMDLINE...]}
shift
kernel=$build/arch/x86_64/cairn-kernel.elf
[ -f "$kernel" ] || { echo "demo: no kernel at $kernel (configure with -Dkernel=true)" >&2; exit 1; }
[ $# -gt 0 ] || set -- test=all seed=1 ops=100000

log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$here/qemu-run.sh" "$kernel" --smp "${SMP:-4}" --mem "${MEM:-1G}" -- "$@" | tee "$log"
status=${PIPESTATUS[0]}

echo
echo "==== report ===="
awk '
/^smp: /            { sub(/,$/, "", $7); print "CPUs:        " $2 " up, tests on " $7 }
/^mem: [0-9]+ MiB/  { print "memory:      " $2 " MiB managed by cairn frames" }
/^test [a-z-]+: (ok|FAILED)$/ { sub(/:$/, "", $2); tests = tests " " $2 "=" $3 }
/^cpu [0-9]+: ops / { printf "cpu %-3s      %s operations\n", $2, $4 }
/^total: /          { print "throughput:  " $9 " ops/s (" $5 " operations in " $7 " ms)" }
/^errors: /         { print "errors:      " $2 }
/^verdict: /        { sub(/^verdict: /, ""); print "verdict:     " $0 }
END                 { if (tests) print "tests:      " tests }
' "$log"
tail -n 1 "$log"
exit "$status"
