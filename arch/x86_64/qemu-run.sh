#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Boot the cairn test kernel under QEMU (TCG, never KVM) and say how it went.
#
#   qemu-run.sh KERNEL [--smp N] [--mem M] [--map NAME] [--cpu MODEL]
#               [--timeout S] [--expect-fail | --expect OUTCOME]
#               [--expect-output REGEX] -- CMDLINE...
#
# The console streams to stdout. The last line is one of
#   qemu-run: PASS ...                         guest verdict PASS (and no
#                                              CPU's verdict FAIL, TRAP or
#                                              PANIC line)
#   qemu-run: FAIL: guest reported a failure   a check failed (exit value 0x11)
#   qemu-run: FAIL: guest trapped              unexpected exception (0x12)
#   qemu-run: FAIL: guest could not boot       (0x13)
#   qemu-run: FAIL: triple fault or reset      QEMU exited 0 under -no-reboot
#   qemu-run: FAIL: hung                       killed by the timeout
# With --expect-fail the run passes only if the guest failed by itself (exit
# 0x11 or 0x12, verdict FAIL on the console) and, with --expect-output, the
# console matches REGEX: a planted fault must be seen, and seen for what it is.
# A run expected to pass must match --expect-output too (what it must have
# shown on the way, say the CPUs it found), and must have run its tests on
# every CPU of --smp (or on the cpus= subset of the command line).
# --expect reset / --expect hang do the same for the runner's own verdicts
# (the qemu suite plants a triple fault and a hang to prove it tells them
# apart); --expect fail is --expect-fail.
#
# isa-debug-exit makes QEMU exit with (value << 1) | 1, so the guest's
# success value 0x10 arrives as 33; no guest value can produce 0, which is
# what a triple fault gives under -no-reboot.
#
# Memory maps (--map):
#   plain    -m as given (the firmware's usual map: a hole below 1 MiB and
#            reserved ACPI/BIOS ranges at the top of low RAM)
#   pcihole  -m 4G: the pc machine puts RAM at 0-3 GiB and 4-5 GiB around
#            the PCI hole; the kernel hands the RAM above 4 GiB to cairn at
#            run time (one 1 GiB page with --cpu max). holes= also takes
#            128 MiB-3 GiB out: the exhaustion phases touch every managed
#            frame, and QEMU backs guest RAM only where it is touched, so
#            this keeps the run near 1 GiB of host memory
#   holes    -m 512M plus holes= on the command line: the kernel removes
#            those ranges from the map (one straddles the 16 MiB area
#            boundary, one is 2 MiB aligned and so unmapped as well)
set -u

usage() {
	sed -n '4,9p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

[ $# -ge 1 ] || usage
kernel=$1
shift
# The timeout only has to tell a hang from a slow run. TCG time-slices every
# vCPU on the host's cores: smp8-512M took 76 s on 2 host cores under a load
# of 13, and 127 s in a release run of ./run test there (two tests at once),
# so 240 s was under twice the longest run. A real hang costs the wait; a
# slow run called a hang would be a failure that is not one.
smp=1 mem=256M map=plain cpu= timeout_s=600 expect=pass expect_output=
while [ $# -gt 0 ]; do
	case $1 in
	--smp) smp=$2; shift 2 ;;
	--mem) mem=$2; shift 2 ;;
	--map) map=$2; shift 2 ;;
	--cpu) cpu=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--expect-fail) expect=fail; shift ;;
	--expect) expect=$2; shift 2 ;;
	--expect-output) expect_output=$2; shift 2 ;;
	--) shift; break ;;
	*) usage ;;
	esac
done
append="$*"

case $map in
plain) ;;
pcihole)
	mem=4G
	append="$append holes=0x8000000-0xc0000000"
	;;
holes)
	mem=512M
	append="$append holes=0xe00000-0x1300000,0x4000000-0x4800000,0x9100000-0xc000000"
	;;
*) echo "qemu-run: unknown memory map '$map'" >&2; exit 2 ;;
esac

[ -f "$kernel" ] || { echo "qemu-run: no kernel at $kernel" >&2; exit 2; }
qemu=${QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || { echo "qemu-run: $qemu not installed" >&2; exit 2; }

cmd=("$qemu" -machine pc -accel tcg -smp "$smp" -m "$mem" -nodefaults -no-reboot
	-display none -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04)
[ -n "$cpu" ] && cmd+=(-cpu "$cpu")
cmd+=(-kernel "$kernel" -append "$append")

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "qemu-run: -smp $smp -m $mem map $map${cpu:+ -cpu $cpu}: $append"
start=$(date +%s.%N)
# stdin closed: QEMU must never wait for a terminal.
timeout --kill-after=5 "$timeout_s" "${cmd[@]}" </dev/null 2>&1 | sed -u 's/\r$//' | tee "$log"
status=${PIPESTATUS[0]}
secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

verdict_pass=0 verdict_fail=0 trapped=0
grep -q '^verdict: PASS' "$log" && verdict_pass=1
grep -q '^verdict: FAIL' "$log" && verdict_fail=1
# What the kernel prints first on a trap (cpu.c) or a panic (console.c);
# a passing run prints neither (a probe's expected fault prints nothing).
grep -Eq 'cpu [0-9]+: (TRAP vector|PANIC: )' "$log" && trapped=1

case $status in
33) outcome=pass what="guest verdict PASS" ;;
35) outcome=fail what="guest reported a failure" ;;
37) outcome=fail what="guest trapped" ;;
39) outcome=boot what="guest could not boot" ;;
0) outcome=reset what="triple fault or reset (QEMU exited 0 under -no-reboot)" ;;
124|137) outcome=hang what="hung: killed after ${timeout_s} s" ;;
*) outcome=qemu what="QEMU failed (exit status $status)" ;;
esac
if [ "$outcome" = pass ] && [ "$verdict_pass" != 1 ]; then
	outcome=qemu what="exit value PASS but no 'verdict: PASS' line"
fi
# The exit device takes whichever CPU writes it first: CPU 0 may exit with
# PASS after another CPU has printed its own failure (a trap, a panic). A
# FAIL verdict anywhere on the console makes the run a failure.
if [ "$outcome" = pass ] && [ "$verdict_fail" = 1 ]; then
	outcome=fail what="exit value PASS, but the console has a 'verdict: FAIL' line"
fi
# It may even exit before that CPU's verdict line is out: a TRAP or PANIC
# line is as good as its verdict.
if [ "$outcome" = pass ] && [ "$trapped" = 1 ]; then
	outcome=fail what="exit value PASS, but the console has a TRAP or PANIC line"
fi
if [ "$outcome" = fail ] && [ "$verdict_fail" != 1 ]; then
	what="$what, without a verdict line"
fi

if [ "$expect" = pass ]; then
	# A pass counts only on every CPU QEMU was given (--smp's first number),
	# or on the cpus= subset: a kernel that found fewer CPUs would pass
	# every check on the ones it found.
	smp_n=${smp%%,*} tests_n=${smp%%,*}
	for w in $append; do
		case $w in
		cpus=*) c=${w#cpus=}
			[[ $c =~ ^[0-9]+$ ]] && [ "$c" -gt 0 ] && [ "$c" -lt "$smp_n" ] && tests_n=$c ;;
		esac
	done
	if [ "$outcome" = pass ] && ! grep -Eq "^smp: $smp_n CPUs up, tests on $tests_n," "$log"; then
		echo "qemu-run: FAIL: $what, but not on $smp_n CPUs with tests on $tests_n (${secs} s)"
		exit 1
	fi
	if [ "$outcome" = pass ] && [ -n "$expect_output" ] && ! grep -Eq "$expect_output" "$log"; then
		echo "qemu-run: FAIL: $what, but the console lacks /$expect_output/ (${secs} s)"
		exit 1
	fi
	if [ "$outcome" = pass ]; then
		echo "qemu-run: PASS ($what) (${secs} s)"
		exit 0
	fi
	echo "qemu-run: FAIL: $what (${secs} s)"
	exit 1
fi
# An expected failure counts only if it is the failure expected, and (for
# guest failures) the guest said so itself and showed the expected report.
if [ "$outcome" != "$expect" ] || { [ "$expect" = fail ] && [ "$verdict_fail" != 1 ]; }; then
	echo "qemu-run: FAIL: expected outcome '$expect', got: $what (${secs} s)"
	exit 1
fi
if [ -n "$expect_output" ] && ! grep -Eq "$expect_output" "$log"; then
	echo "qemu-run: FAIL: $what as expected, but the console lacks /$expect_output/ (${secs} s)"
	exit 1
fi
echo "qemu-run: PASS (expected outcome seen: $what) (${secs} s)"
exit 0
