#!/bin/sh
# bench-sendfile.sh: is sending a file region with Region.WriteTo within 10%
# of a bare sendfile loop over the same file? (storage/region_bench_test.go)
#
# Builds the storage test binary once, then runs the send benchmarks ROUNDS
# times, interleaved (one run of each per round, the order reversed every
# other round) so that drift on a shared machine hits them all alike. Prints
# every run, then per region size the median and mean MB/s of each benchmark
# and the ratios of SendRegion to each baseline (median over median; >= 0.90
# meets the target), and the median of BenchmarkSendPaired's own ratios (both
# sends timed in alternation on one connection: the figures least disturbed by
# a machine whose load drifts). "vs-poll" is against the bare loop waiting in
# poll(2); "vs-poller" against the same sendfile loop without Region, i.e. the
# cost of Region itself.
#
# Usage: scripts/bench-sendfile.sh [rounds] [benchtime]    (defaults: 10 500ms)
# Run from the repository root. Needs only the Go toolchain and awk.
set -eu

rounds=${1:-10}
benchtime=${2:-500ms}
benches="SendRegion BareSendfile BareSendfileBlocking StdlibReadFrom SendPaired"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/storage.test" ./storage/
# One 64 MiB file for every run, written and synced once (not per process).
head -c $((64 << 20)) /dev/urandom >"$tmp/segment.log"
sync "$tmp/segment.log" 2>/dev/null || sync
export STRATA_REGION_BENCH_FILE="$tmp/segment.log"

i=1
while [ "$i" -le "$rounds" ]; do
	order=$benches
	if [ $((i % 2)) -eq 0 ]; then
		order=$(echo "$benches" | awk '{for (j = NF; j > 0; j--) printf "%s%s", $j, (j > 1 ? " " : "")}')
	fi
	for b in $order; do
		"$tmp/storage.test" -test.run '^$' -test.bench "^Benchmark$b\$" \
			-test.benchtime "$benchtime" -test.benchmem | grep '^Benchmark' | tee -a "$tmp/out"
	done
	i=$((i + 1))
done

echo
awk '
# BenchmarkSendRegion/1MiB-2  374  1257682 ns/op  833.74 MB/s  80 B/op  4 allocs/op
{
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	split(name, part, "/"); bench = part[1]; size = part[2]
	mbs = ""; allocs = ""
	for (k = 3; k < NF; k++) {
		if ($(k + 1) == "MB/s") mbs = $k
		if ($(k + 1) == "allocs/op") allocs = $k
		if ($(k + 1) == "region/bare") { base = part[3]; np[size, base]++; pv[size, base, np[size, base]] = $k }
	}
	if (mbs == "") next
	n[bench, size]++; v[bench, size, n[bench, size]] = mbs; sum[bench, size] += mbs
	al[bench, size] = allocs
	if (n[bench, size] == 1 || mbs < lo[bench, size]) lo[bench, size] = mbs
	if (n[bench, size] == 1 || mbs > hi[bench, size]) hi[bench, size] = mbs
	if (!(size in seen)) { seen[size] = 1; sizes[++nsizes] = size }
	if (!(bench in seenb)) { seenb[bench] = 1; benches[++nbenches] = bench }
}
function median(b, s,    m, i, j, t, a) {
	m = n[b, s]
	for (i = 1; i <= m; i++) a[i] = v[b, s, i]
	for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
END {
	for (z = 1; z <= nsizes; z++) {
		s = sizes[z]
		printf "regions of %s (%d runs each)\n", s, n["SendRegion", s]
		printf "  %-22s %12s %10s %10s %10s %10s\n", "benchmark", "median MB/s", "mean", "min", "max", "allocs/op"
		for (y = 1; y <= nbenches; y++) {
			b = benches[y]
			if (n[b, s] == 0) continue
			med[b] = median(b, s)
			printf "  %-22s %12.1f %10.1f %10.1f %10.1f %10s\n", b, med[b], sum[b, s] / n[b, s], lo[b, s], hi[b, s], al[b, s]
		}
		for (y = 1; y <= nbenches; y++) {
			b = benches[y]
			if (b == "SendRegion" || n[b, s] == 0 || med[b] == 0) continue
			r = med["SendRegion"] / med[b]
			printf "  ratio SendRegion / %-22s %.3f%s\n", b, r, (b == "BareSendfile" ? (r >= 0.9 ? "  (target >= 0.90: met)" : "  (target >= 0.90: NOT met)") : "")
		}
		split("vs-poll vs-poller", bases, " ")
		for (q = 1; q <= 2; q++) {
			base = bases[q]
			m = np[s, base]
			if (m == 0) continue
			for (i = 1; i <= m; i++) a[i] = pv[s, base, i]
			for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
			pm = m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
			printf "  paired ratio SendRegion / bare %-10s %.3f  (median of %d; min %.3f, max %.3f)\n", base, pm, m, a[1], a[m]
		}
		print ""
	}
}' "$tmp/out"
