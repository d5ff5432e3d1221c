#!/usr/bin/env bash
# What an embedder relies on, checked on the sources and on the library
# built freestanding:
#
#  1. layering: each library directory includes only the layers below it
#     (core < btree < percpu), a public header only the public headers of
#     its layer and below, a quoted include only a file of its own
#     directory; no library file includes a port's header (cairn/host.h);
#  2. libc: library files and public headers include no system header but
#     the freestanding ones;
#  3. undefined symbols: every symbol the archive needs and does not define
#     is a cairn_port_* function (no libc, no compiler runtime, no
#     memset/memcpy emitted behind our back);
#  4. names: every global symbol the archive defines starts with cairn_, so
#     that it cannot clash with a kernel's own;
#  5. no hidden global state: no writable data (.data, .bss, common,
#     thread-local) in any object of the archive; constant tables are
#     read-only data.
#
# Usage: freestanding_check.sh LIBRARY.a SOURCE_ROOT
set -euo pipefail
lib=$1
src=$2
fail=0
bad() {
	echo "FAIL: $1"
	sed 's/^/  /' <<<"$2"
	fail=1
}

# ---- 1, 2: includes ----
# The layer of each library directory and public header. A new public
# header must be given its layer here.
declare -A layer=([core]=0 [btree]=1 [percpu]=2)
declare -A header=([port.h]=0 [error.h]=0 [frames.h]=0 [btree.h]=1 [arena.h]=1
	[magazine.h]=2 [frame_cache.h]=2 [quantum_cache.h]=2 [objects.h]=2)
freestanding=" stddef.h stdint.h stdbool.h stdatomic.h stdalign.h limits.h stdarg.h "

# check_file FILE LAYER: the include lines of FILE against LAYER.
check_file() {
	local file=$1 level=$2 rel=${1#"$src"/} line name
	while IFS= read -r line; do
		if [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\<cairn/([^>]*)\> ]]; then
			name=${BASH_REMATCH[1]}
			if [[ -z ${header[$name]+x} ]]; then
				echo "$rel: <cairn/$name> is no library header"
			elif ((header[$name] > level)); then
				echo "$rel: <cairn/$name> is a layer above"
			fi
		elif [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\<([^>]*)\> ]]; then
			name=${BASH_REMATCH[1]}
			[[ $freestanding == *" $name "* ]] ||
				echo "$rel: <$name> is not a freestanding header"
		elif [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]*)\" ]]; then
			name=${BASH_REMATCH[1]}
			[[ $name != */* && -f $(dirname "$file")/$name ]] ||
				echo "$rel: \"$name\" is not a file of its own directory"
		elif [[ $line =~ ^[[:space:]]*#[[:space:]]*include ]]; then
			echo "$rel: include not checked: $line"
		fi
	done <"$file"
}

violations=$(
	for dir in "${!layer[@]}"; do
		for f in "$src/$dir"/*.[ch]; do
			check_file "$f" "${layer[$dir]}"
		done
	done
	for f in "$src"/include/cairn/*.h; do
		name=$(basename "$f")
		[[ $name == host.h ]] && continue # the host port's, not the library's
		if [[ -z ${header[$name]+x} ]]; then
			echo "include/cairn/$name: no layer (add it to this script)"
			continue
		fi
		check_file "$f" "${header[$name]}"
	done
)
[[ -z $violations ]] || bad "includes against the layering (core < btree < percpu) or not freestanding:" "$violations"

# ---- 3: undefined symbols ----
# Symbols one object of the archive needs and another defines are fine.
defined=$(nm --defined-only --format=just-symbols "$lib" | sort -u)
undefined=$(nm -u --format=just-symbols "$lib" | sort -u | comm -23 - <(echo "$defined"))
echo "undefined symbols of $(basename "$lib"):"
sed 's/^/  /' <<<"$undefined"
outside=$(grep -v '^cairn_port_' <<<"$undefined" || true)
[[ -z $outside ]] || bad "the freestanding library needs symbols outside the port:" "$outside"

# ---- 4: global names ----
unprefixed=$(nm --defined-only "$lib" | awk 'NF == 3 && $2 ~ /^[A-Z]$/ && $3 !~ /^cairn_/ { print $3 }' | sort -u)
[[ -z $unprefixed ]] || bad "global symbols without the cairn_ prefix:" "$unprefixed"

# ---- 5: writable data ----
# nm types of writable data: .bss (b), .data (d), common (C), small data
# (g, s); thread-local data is .tbss/.tdata (b, d) too. Constant tables
# are r (.rodata): the library is built -fno-pie, so none is relocated
# data, and -fno-lto, so that nm sees code and data, not LTO bytecode.
writable=$(nm --defined-only -A "$lib" | awk '$2 ~ /^[BbCDdGgSs]$/ { print $1 " " $3 }' |
	sed 's|^.*/||; s|:[0-9a-f]* | |')
# Data without a symbol: any writable section with bytes in it.
sections=$(objdump -h "$lib" | awk '
	/file format/ { obj = $1; sub(/.*\//, "", obj) }
	$2 ~ /^\.(data|bss|tdata|tbss|sdata|sbss)/ && $2 !~ /^\.data\.rel\.ro/ && $3 ~ /[1-9a-f]/ {
		print obj " " $2 " " $3 " bytes" }')
[[ -z $writable && -z $sections ]] ||
	bad "writable data (hidden global state) in the library:" "$(printf '%s\n%s' "$writable" "$sections" | sed '/^$/d')"

if ((fail)); then
	exit 1
fi
echo "PASS: layering, freestanding includes, only port symbols undefined, every global named cairn_*, no writable data"
