#!/usr/bin/env bash
# Produce throughput and latency of in-process brokers on loopback (issue 4):
# one broker RF=1 acks=1 against three brokers RF=3 acks=all
# (min.insync.replicas=2), 1 KiB records, raw RecordBatch bytes over gRPC.
#   scripts/bench-broker.sh
#   BENCHTIME=3s RATE_MB=20 SECONDS_LAT=4 scripts/bench-broker.sh
#   PROFILE_DIR=/tmp/prof scripts/bench-broker.sh   # also CPU profiles per setup
#   CONFIGS="p=1/c=4/batch=256KiB" scripts/bench-broker.sh   # a subset
# Takes about 3-4 minutes. Run it on an otherwise idle machine: the load is
# printed before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCHTIME=${BENCHTIME:-2s}
RATE_MB=${RATE_MB:-20}
SECONDS_LAT=${SECONDS_LAT:-4}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=$tmp/broker.test
go test -c -o "$bin" ./broker/

load() { awk '{print $1, $2, $3}' /proc/loadavg; }
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(go version | awk '{print $3}'), $(uname -r)"
echo "load before: $(load)"

CONFIGS=${CONFIGS:-"p=1/c=4/batch=16KiB p=1/c=4/batch=256KiB p=1/c=8/batch=16KiB p=1/c=8/batch=256KiB p=4/c=4/batch=16KiB p=4/c=4/batch=256KiB p=4/c=8/batch=16KiB p=4/c=8/batch=256KiB"}

# run_bench SETUP CONFIG: one throughput figure, in a process of its own that
# starts with no dirty pages (sync, untimed): a run writes gigabytes, and the
# kernel's writeback of one run must not be charged to the next (past about
# 2 GB dirty, page-cache writes on this VM slow down several times).
run_bench() {
  local setup=$1 config=$2 prof=() re=
  if [[ -n "${PROFILE_DIR:-}" ]]; then
    mkdir -p "$PROFILE_DIR"
    prof=(-test.cpuprofile "$PROFILE_DIR/cpu-${setup//[=\/]/_}-${config//[=\/]/_}.pprof")
  fi
  re="^BenchmarkProduce\$/^${setup%%/*}\$/^${setup#*/}\$"
  for part in ${config//\// }; do re+="/^${part}\$"; done
  sync
  (cd "$tmp" && "$bin" -test.run '^$' -test.bench "$re" -test.benchtime "$BENCHTIME" -test.benchmem "${prof[@]}") |
    tee -a "$tmp/raw.txt" |
    awk '/^BenchmarkProduce\// { split($1, n, "/"); for (i = 1; i <= NF; i++) v[$(i+1)] = $i; print n[4] "/" n[5] "/" n[6], v["MB/s"], v["MB/cpu-s"] }' |
    sed -E 's/-[0-9]+ / /' >>"$tmp/tput-${setup//[=\/]/_}" ||
    { grep -E -B2 -A5 'FAIL|panic' "$tmp/raw.txt"; echo "FAILED: $setup $config"; exit 1; }
}
for config in $CONFIGS; do
  run_bench 'rf=1/acks=1' "$config"
  run_bench 'rf=3/acks=all' "$config"
done

echo
echo "throughput, closed loop (p partitions, c producer goroutines each with its own connection, batch of 1 KiB records):"
echo "(MB/cpu-s: bytes per CPU second of the whole process, client included; less sensitive than MB/s to other load)"
printf "%-22s %12s %12s %14s %12s %7s %9s\n" config "RF=1 MB/s" "MB/cpu-s" "RF=3all MB/s" "MB/cpu-s" ratio "cpu ratio"
LC_ALL=C join <(LC_ALL=C sort "$tmp/tput-rf_1_acks_1") <(LC_ALL=C sort "$tmp/tput-rf_3_acks_all") |
  awk '{ printf "%-22s %12.1f %12.1f %14.1f %12.1f %7.2f %9.2f\n", $1, $2, $3, $4, $5, $4 / $2, $5 / $3 }'

sync
STRATA_BENCH_RATE_MB=$RATE_MB STRATA_BENCH_SECONDS=$SECONDS_LAT \
  "$bin" -test.run '^$' -test.bench '^BenchmarkProduceLatency$' -test.benchtime 1x | tee -a "$tmp/raw.txt" >"$tmp/lat"
echo
echo "latency at a fixed rate of $RATE_MB MB/s, open loop, 16 KiB batches, 4 partitions, ${SECONDS_LAT}s:"
printf "%-16s %10s %10s %10s %10s %10s\n" setup "MB/s" "p50 ms" "p99 ms" "p99.9 ms" "max ms"
awk '/^BenchmarkProduceLatency\// {
  split($1, n, "/"); name = n[2] "/" n[3]; sub(/-[0-9]+$/, "", name)
  for (i = 1; i <= NF; i++) v[$(i+1)] = $i
  printf "%-16s %10.1f %10.2f %10.2f %10.2f %10.2f\n", name, v["MB/s"], v["ms-p50"], v["ms-p99"], v["ms-p99.9"], v["ms-max"]
}' "$tmp/lat"
if grep -q -E '^(--- FAIL|FAIL)' "$tmp/raw.txt"; then
  echo; grep -E -A3 '^--- FAIL' "$tmp/raw.txt" || true
  echo "FAILED"; exit 1
fi
echo
echo "load after: $(load)"
