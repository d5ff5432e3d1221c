#!/usr/bin/env bash
# Plot bench-objects --json output: throughput against threads, one panel
# per workload, and peak RSS. usage: objects_plot.sh RESULTS.json OUT.png
# (needs gnuplot; Debian: gnuplot-nox)
set -euo pipefail
in=$1
out=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
impls="cairn glibc jemalloc tcmalloc mimalloc tbbmalloc scudo"
tests="larson xmalloc scratch simple mstress rss big"
for t in $tests; do
	for i in $impls; do
		grep -F "\"test\": \"$t\"" "$in" | grep -F "\"impl\": \"$i\"" |
			sed -E 's/.*"threads": ([0-9]+), "ops_per_s": ([0-9.]+), "peak_rss_kib": ([0-9.]+).*/\1 \2 \3/' \
			>"$dir/$t.$i.dat" || true
	done
done
{
	echo "set terminal pngcairo size 1500,1300 font ',10'"
	echo "set output '$out'"
	echo "set multiplot layout 3,3 title 'bench-objects: medians of 5 runs, 2 cores (8 threads oversubscribed)'"
	echo "set logscale x 2; set xrange [0.8:10]; set xtics (1,2,4,8); set grid; set key top left font ',8'"
	for t in $tests; do
		echo "set title '$t: million ops/s'"
		printf "plot "
		sep=""
		for i in $impls; do
			printf "%s'%s' using 1:(\$2/1e6) with linespoints title '%s'" "$sep" "$dir/$t.$i.dat" "$i"
			sep=", "
		done
		echo
	done
	for t in mstress big; do
		echo "set title '$t: peak RSS (MiB)'"
		printf "plot "
		sep=""
		for i in $impls; do
			printf "%s'%s' using 1:(\$3/1024) with linespoints title '%s'" "$sep" "$dir/$t.$i.dat" "$i"
			sep=", "
		done
		echo
	done
	echo "unset multiplot"
} | gnuplot
