#!/usr/bin/env bash
# Real programs under LD_PRELOAD=libcairn-malloc.so must print exactly what
# they print on the system allocator. usage: preload.sh SHIM SRCDIR [PROGRAM...]
# (PROGRAMs: preload_threads, preload_exit, preload_atfork, built without the shim)
set -uo pipefail
shim=$1
src=$2
ours=("${@:3}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0 ran=0

seq 1 200000 | awk '{ print ($1 * 7919) % 100003, $1, "line" $1 }' >"$work/input"

# name, then the command (run by bash -c, with $work and $src set)
cases=(
	"sort" "sort -k1,1n -k2,2nr \"\$work/input\""
	"sort-parallel" "sort --parallel=4 -S 8M -t ' ' -k3 \"\$work/input\" | md5sum"
	"gzip" "gzip -9 -c \"\$work/input\" | gzip -d -c | md5sum; gzip -6 -c \"\$work/input\" | wc -c"
	"lua5.4" "lua5.4 \"\$src/preload.lua\""
	"python3" "/usr/bin/python3 \"\$src/preload.py\""
	"python3-huge" "/usr/bin/python3 -c 'b = bytes(2 * 1024**3 + 5); c = bytearray(b[:16]); c += b\"x\"; print(len(b), b[-1], b.count(0, 0, 4096), c)'"
	"perl" "perl -e 'my %h; \$h{\$_ % 9973} .= \"x\" x (\$_ % 11) for 1..300000; my \$t = 0; \$t += length(\$h{\$_}) for sort keys %h; print scalar(keys %h), \" \$t\\n\"'"
	"awk" "awk '{ a[\$1] = a[\$1] \$3 } END { n = 0; for (k in a) n += length(a[k]); print n }' \"\$work/input\""
)
for prog in "${ours[@]}"; do
	cases+=("$(basename "$prog")" "\"$prog\"")
done

for ((i = 0; i < ${#cases[@]}; i += 2)); do
	name=${cases[i]}
	cmd=${cases[i + 1]}
	prog=${name%%-*}
	if [[ $name != preload_* ]] && ! command -v "$prog" >/dev/null &&
		[[ ! -x /usr/bin/$prog ]]; then
		echo "SKIP $name: $prog is not installed"
		continue
	fi
	export work src
	want=$(bash -c "$cmd" 2>&1; echo "exit $?")
	got=$(LD_PRELOAD=$shim bash -c "$cmd" 2>&1; echo "exit $?")
	ran=$((ran + 1))
	if [[ "$want" == "$got" ]]; then
		echo "PASS $name"
	else
		echo "FAIL $name: output differs under the shim"
		diff <(echo "$want") <(echo "$got") | head -20
		failed=$((failed + 1))
	fi
done
echo "preload: $ran programs, $failed failed"
((ran > 0 && failed == 0))
