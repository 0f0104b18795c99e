#!/usr/bin/env bash
# Append throughput of the storage engine beside buffered dd (bs=1M) writing the
# same number of bytes to the same disk, interleaved in one run, and the ratio.
#   scripts/bench-storage.sh            # 1 GiB per run, 3 rounds
#   SIZE_MB=256 ROUNDS=5 scripts/bench-storage.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${STRATA_BENCH_DIR:-$PWD/data/bench}
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-3}
mkdir -p "$DIR"
bin=$(mktemp -d)/storage.test
trap 'rm -rf "$(dirname "$bin")" "$DIR"/dd.out' EXIT
go test -c -o "$bin" ./storage/

# Each measurement starts with no dirty pages left by the one before (sync,
# untimed), so neither side pays for the other's writeback.
dd_mbps() {
  local out bytes secs
  sync
  out=$(dd if=/dev/zero of="$DIR/dd.out" bs=1M count="$SIZE_MB" 2>&1 | tail -1)
  rm -f "$DIR/dd.out"
  bytes=$(echo "$out" | awk '{print $1}')
  secs=$(echo "$out" | sed -E 's/.*copied, ([0-9.]+) s.*/\1/')
  awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f", b / s / 1e6 }'
}

bench_mbps() { # $1: sub-benchmark, $2: iterations
  sync
  STRATA_BENCH_DIR="$DIR" "$bin" -test.run '^$' -test.bench "^BenchmarkAppend/$1\$" \
    -test.benchtime "$2x" -test.benchmem | awk '/MB\/s/ { for (i = 1; i <= NF; i++) if ($(i+1) == "MB/s") print $i }'
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), disk of $DIR: $(df -h "$DIR" | awk 'NR==2 {print $1}')"
echo "bytes per run: ${SIZE_MB} MiB; rounds: $ROUNDS"
printf "%-6s %12s %18s %18s %10s %10s\n" round "dd MB/s" "append 1MiB MB/s" "append 16KiB MB/s" "ratio 1M" "ratio 16K"
for r in $(seq 1 "$ROUNDS"); do
  d=$(dd_mbps)
  big=$(bench_mbps 'batch=1MiB' "$SIZE_MB")
  small=$(bench_mbps 'batch=16KiB' "$((SIZE_MB * 64))")
  printf "%-6s %12s %18s %18s %10s %10s\n" "$r" "$d" "$big" "$small" \
    "$(awk -v a="$big" -v b="$d" 'BEGIN { printf "%.2f", a / b }')" \
    "$(awk -v a="$small" -v b="$d" 'BEGIN { printf "%.2f", a / b }')"
done
