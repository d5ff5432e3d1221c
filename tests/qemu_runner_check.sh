#!/usr/bin/env bash
# The verdicts of arch/x86_64/qemu-run.sh, checked against a stand-in for
# QEMU (the runner's QEMU variable) that prints a console and exits with a
# chosen status: a guest run counts as passed only when everything it said
# agrees, and every way a guest can fail fails the run.
#
# Usage: qemu_runner_check.sh SOURCE_ROOT
set -uo pipefail
runner=$1/arch/x86_64/qemu-run.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0

# The stand-in: prints $FAKE_CONSOLE (\n-separated) and exits $FAKE_STATUS.
cat >"$work/qemu" <<'EOF'
#!/usr/bin/env bash
printf '%b\n' "$FAKE_CONSOLE"
exit "$FAKE_STATUS"
EOF
chmod +x "$work/qemu"
: >"$work/kernel.elf"

up='cairn test kernel\nsmp: 2 CPUs up, tests on 2, TSC 1000 MHz'

# expect WANT STATUS CONSOLE [runner args...]: the runner's exit status
# (0 or 1) for a guest that printed CONSOLE and made QEMU exit STATUS.
expect() {
	local want=$1 status=$2 console=$3
	shift 3
	local out got
	out=$(FAKE_STATUS=$status FAKE_CONSOLE=$console QEMU="$work/qemu" \
		"$runner" "$work/kernel.elf" --smp 2 --timeout 20 "$@" -- test=all 2>&1)
	got=$?
	if [ "$got" != "$want" ]; then
		echo "FAIL: exit $status, console:"
		printf '%b\n' "$console" | sed 's/^/    /'
		echo "  runner exited $got, want $want; it said: $(tail -n 1 <<<"$out")"
		fail=1
	fi
}

# A clean pass, and the plain failures.
expect 0 33 "$up\\nverdict: PASS"
expect 1 35 "$up\\nverdict: FAIL (1 failed checks)"
expect 1 37 "$up\\nverdict: FAIL (trap 14 on cpu 1)"
expect 1 0 "$up"
expect 1 33 "$up"
expect 1 33 "cairn test kernel\\nsmp: 1 CPUs up, tests on 1, TSC 1 MHz\\nverdict: PASS"

# The exit device takes whichever CPU writes it first: CPU 0 may exit with
# PASS while another CPU has already reported its own failure (a trap, a
# panic) on the console. The exit status alone would call that a pass.
expect 1 33 "$up\\ncpu 1: TRAP vector 14 (#PF page fault) error 0\\nverdict: FAIL (trap 14 on cpu 1)\\nverdict: PASS"
expect 1 33 "$up\\ncpu 1: PANIC: out of stacks\\nverdict: FAIL (panic)\\nverdict: PASS"
# ... or before its verdict line is out: the trap or panic line alone
# (and for a trap, the register lines after it) is on the console.
expect 1 33 "$up\\ncpu 1: TRAP vector 14 (#PF page fault) error 0\\nverdict: PASS"
expect 1 33 "$up\\ncpu 1: TRAP vector 13 (#GP general protection) error 0\\ncpu 1:   rip 0x1000 cr2 0 rsp 0x2000 rflags 0x2\\nverdict: PASS"
expect 1 33 "$up\\ncpu 1: PANIC: out of stacks\\nverdict: PASS"

# Expected failures: seen for what they are, and only then.
expect 0 35 "$up\\nverdict: FAIL (1 failed checks)" --expect-fail
expect 1 33 "$up\\nverdict: PASS" --expect-fail
expect 1 35 "$up" --expect-fail

if [ "$fail" = 0 ]; then
	echo "qemu-run.sh: every verdict as expected"
fi
exit "$fail"
