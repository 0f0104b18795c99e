#!/usr/bin/env bash
# Strata against NATS JetStream, side by side, on this machine and loopback.
#
#   scripts/bench/compare.sh          the short run (a few minutes)
#   FULL=1 scripts/bench/compare.sh   longer runs (15 s a measurement) and more scaling points
#
# It installs nats-server $NATS_VERSION with `go install` into bin/tools,
# builds bin/strata (make build) and this module's jsbench and chart, then,
# in four phases (RF=1 and RF=3, each with lazy and fsync-per-batch
# durability), runs the same workloads on both systems:
#   - throughput at full speed: 1 KiB and 100 B records, 1 and 4 producers,
#     as many partitions as streams (= producers), the same number of
#     records in flight per producer ($WINDOW: JetStream's async publish
#     window; Strata's --buffer-memory of WINDOW records, --linger 0);
#   - produce latency (p50 / p99 / p99.9) at a fixed rate both sustain (half
#     the slower one's 1 KiB single-producer throughput, at most $MAX_RATE);
#   - end-to-end latency (produce -> consumed) at that rate;
#   - consume throughput replaying the 1 KiB 4-producer log just written.
# RF=1 is one `strata server` (controller + broker) against one nats-server;
# RF=3 is scripts/cluster.sh (3 nodes, each controller + broker; topics with
# acks=all, min.insync.replicas=2) against a 3-node JetStream cluster with
# R3 streams. Lazy: Strata leaves writes to the page cache, JetStream runs its
# default sync_interval (2 min). fsync: the topic's flush.messages=1 (fsync
# per appended batch) against JetStream's sync_interval: always.
# Then Strata alone: throughput against partitions (1, 8, 64, 512) and
# record size (100 B .. 64 KiB).
#
# Output: bench-results/<date>-<host>.md (machine, settings, tables with the
# Strata / JetStream ratio per row), .csv and .png (chart). Scratch data and
# every command's JSON go to bench-results/tmp/ (not committed).
# Every process it starts is bounded by `timeout` and stopped by pid on exit.
# Ports: BASE_PORT (default 25000) .. BASE_PORT+500.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

NATS_VERSION=${NATS_VERSION:-v2.12.15}
FULL=${FULL:-0}
WINDOW=${WINDOW:-256}
MAX_RATE=${MAX_RATE:-20000}
BASE_PORT=${BASE_PORT:-25000}
TOOLS=$ROOT/bin/tools
STRATA=$ROOT/bin/strata
JSBENCH=$TOOLS/jsbench
CHART=$TOOLS/chart
NATS=$TOOLS/nats-server
if [[ $FULL == 1 ]]; then
  dur_def=15s scale_def=8s sizes_def="100 1024 4096 16384 65536"
else
  dur_def=3s scale_def=2s sizes_def="100 1024 16384 65536"
fi
# DUR, SCALE_DUR, PARTS and SIZES may be set to override (e.g. DUR=1s for a smoke run).
DUR=${DUR:-$dur_def}
SCALE_DUR=${SCALE_DUR:-$scale_def}
read -ra PARTS <<<"${PARTS:-1 8 64 512}"
read -ra SIZES <<<"${SIZES:-$sizes_def}"
LIFE=3600 # no server outlives this many seconds, whatever happens
CMD_LIMIT=300

STAMP=$(date -u +%Y-%m-%d-%H%M)
HOST=$(hostname -s 2>/dev/null || echo host)
OUT=bench-results/$STAMP-$HOST
WORK=$ROOT/bench-results/tmp/$STAMP
CSV=$WORK/results.csv
mkdir -p "$WORK/json" bench-results

# --- processes: every server is started here, under timeout, and killed by pid
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bg_run() { # bg_run LOG CMD... : start CMD bounded by LIFE, remember its pid
  local log=$1
  shift
  timeout "$LIFE" "$@" >"$log" 2>&1 &
  PIDS+=($!)
}
# stop_matching WORD: stop the remembered processes whose command line has WORD.
stop_matching() {
  local keep=() p
  for p in "${PIDS[@]}"; do
    if [[ $(ps -o args= -p "$p" 2>/dev/null) == *"$1"* ]]; then
      kill -TERM "$p" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$p" 2>/dev/null || true
    else
      keep+=("$p")
    fi
  done
  PIDS=("${keep[@]}")
}

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
# http_ok PORT PATH: GET answers 200 (bash's /dev/tcp).
http_ok() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET %s HTTP/1.0\r\n\r\n' "$2" >&3 &&
    timeout 1 head -1 <&3 | grep -q ' 200 ') 2>/dev/null
}
# port_free PORT: nothing listens there (a leftover server would be measured instead).
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    log "port $1 is in use: stop what listens there or set BASE_PORT"
    exit 1
  fi
}
wait_http() { # wait_http PORT PATH WHAT
  local deadline=$((SECONDS + 60))
  until http_ok "$1" "$2"; do
    ((SECONDS < deadline)) || { log "$3 not ready on :$1$2 within 60 s"; exit 1; }
    sleep 0.2
  done
}
# jget KEY FILE: the first numeric value of "KEY" in a JSON file.
jget() { sed -n "s/.*\"$1\": *\([-0-9.eE+]*\).*/\1/p" "$2" | head -1; }
csv() { (IFS=,; echo "$*") >>"$CSV"; }
# settle: before every timed measurement, of either system, the dirty page
# cache the previous one left is written back (untimed). Otherwise whoever
# runs next pays for it: an fsync waits behind gigabytes of writeback (RF3
# fsync p99 45 ms for Strata, run right after the throughput rows, against
# 3-9 ms for either system with the page cache clean).
settle() { sync; }

# --- tools
log "installing nats-server $NATS_VERSION, building strata, jsbench and chart"
[[ -x $NATS && $("$NATS" --version 2>/dev/null) == *"${NATS_VERSION#v}"* ]] ||
  GOBIN=$TOOLS go install "github.com/nats-io/nats-server/v2@$NATS_VERSION"
make build >/dev/null
(cd scripts/bench && go build -o "$JSBENCH" ./jsbench && go build -o "$CHART" ./chart)

# --- servers
S1_BROKER=$((BASE_PORT + 2)) S1_CTRL=$((BASE_PORT + 3)) S1_METRICS=$((BASE_PORT + 4))
CLUSTER_BASE=$((BASE_PORT + 100)) # cluster.sh node i: CLUSTER_BASE+100*i+{2,3,4}
NATS_PORT=$((BASE_PORT + 22))     # node i: NATS_PORT+i-1, routes +10, monitoring +20

start_strata() { # start_strata RF
  rm -rf "$WORK/strata"
  local port
  for port in $S1_BROKER $S1_CTRL $S1_METRICS $((CLUSTER_BASE + 102)) $((CLUSTER_BASE + 203)) $((CLUSTER_BASE + 304)); do port_free "$port"; done
  if [[ $1 == 1 ]]; then
    bg_run "$WORK/strata1.log" "$STRATA" server --node-id 1 --roles controller,broker --data-dir "$WORK/strata/n1" \
      --broker-addr "127.0.0.1:$S1_BROKER" --controller-addr "127.0.0.1:$S1_CTRL" \
      --metrics-addr "127.0.0.1:$S1_METRICS" --quorum "1@127.0.0.1:$S1_CTRL"
    wait_http "$S1_METRICS" /readyz "strata"
    export STRATA_BOOTSTRAP=127.0.0.1:$S1_BROKER
  else
    # cluster.sh starts "$STRATA server ...": a wrapper bounds each node in time.
    mkdir -p "$WORK/strata"
    printf '#!/bin/sh\nexec timeout %s %q "$@"\n' "$LIFE" "$STRATA" >"$WORK/strata-bounded"
    chmod +x "$WORK/strata-bounded"
    BASE_PORT=$CLUSTER_BASE CLUSTER_DIR=$WORK/strata STRATA=$WORK/strata-bounded timeout 120 scripts/cluster.sh up >/dev/null
    local i
    for i in 1 2 3; do PIDS+=("$(cat "$WORK/strata/n$i.pid")"); done
    export STRATA_BOOTSTRAP=127.0.0.1:$((CLUSTER_BASE + 102)),127.0.0.1:$((CLUSTER_BASE + 202)),127.0.0.1:$((CLUSTER_BASE + 302))
  fi
}

start_nats() { # start_nats RF DURABILITY
  local rf=$1 sync="" i routes=() conf
  [[ $2 == fsync ]] && sync="sync_interval: always"
  rm -rf "$WORK/nats"
  mkdir -p "$WORK/nats"
  for ((i = 1; i <= rf; i++)); do port_free $((NATS_PORT + i - 1)); port_free $((NATS_PORT + 20 + i - 1)); done
  for ((i = 1; i <= rf; i++)); do routes+=("nats-route://127.0.0.1:$((NATS_PORT + 10 + i - 1))"); done
  NATS_URLS=""
  for ((i = 1; i <= rf; i++)); do
    conf=$WORK/nats/n$i.conf
    {
      echo "server_name: n$i"
      echo "listen: 127.0.0.1:$((NATS_PORT + i - 1))"
      echo "http: 127.0.0.1:$((NATS_PORT + 20 + i - 1))"
      echo "jetstream { store_dir: \"$WORK/nats/n$i\", $sync }"
      if ((rf > 1)); then
        echo "cluster { name: bench, listen: 127.0.0.1:$((NATS_PORT + 10 + i - 1)), routes: [$(IFS=,; echo "${routes[*]}")] }"
      fi
    } >"$conf"
    bg_run "$WORK/nats/n$i.log" "$NATS" -c "$conf"
    NATS_URLS+="${NATS_URLS:+,}nats://127.0.0.1:$((NATS_PORT + i - 1))"
  done
  for ((i = 1; i <= rf; i++)); do wait_http "$((NATS_PORT + 20 + i - 1))" "/healthz?js-enabled-only=true" "nats-server n$i"; done
}

# js_setup STREAMS RF: fresh streams (a new cluster needs a moment for its meta leader).
js_setup() {
  local try
  for try in $(seq 40); do
    if timeout 60 "$JSBENCH" -servers "$NATS_URLS" -mode setup -streams "$1" -replicas "$2" 2>"$WORK/js_setup.err"; then return; fi
    sleep 0.5
  done
  log "jetstream setup failed: $(cat "$WORK/js_setup.err")"
  exit 1
}

TOPIC_N=0
# strata_topic PARTITIONS RF DURABILITY: a new topic, named in TOPIC.
strata_topic() {
  local cfg=()
  TOPIC_N=$((TOPIC_N + 1))
  TOPIC=bench-$TOPIC_N
  [[ $3 == fsync ]] && cfg+=(--config flush.messages=1)
  [[ $2 == 3 ]] && cfg+=(--config min.insync.replicas=2)
  timeout 60 "$STRATA" topics create "$TOPIC" --partitions "$1" --replication-factor "$2" "${cfg[@]}" >/dev/null
}
strata_drop() { timeout 60 "$STRATA" topics delete "$1" >/dev/null 2>&1 || true; }

# The producer settings both sides share: WINDOW records unacknowledged per producer.
strata_window() { echo --acks all --linger 0 --buffer-memory $((WINDOW * ($1 + 41))) --reporting-interval 1h; }

human() { case $1 in 100) echo 100B ;; 1024) echo 1KiB ;; 4096) echo 4KiB ;; 16384) echo 16KiB ;; 65536) echo 64KiB ;; *) echo "${1}B" ;; esac; }

# throughput RF DUR SIZE PRODUCERS [consume]: one row on both systems.
throughput() {
  local rf=$1 dur=$2 size=$3 p=$4 t sj jj tag
  tag=tput-r$rf-$dur-$size-p$p
  strata_topic "$p" "$rf" "$dur"
  t=$TOPIC
  log "throughput RF$rf $dur $(human "$size") x$p"
  settle
  timeout $CMD_LIMIT "$STRATA" perf produce --topic "$t" --producers "$p" --duration "$DUR" --record-size "$size" \
    $(strata_window "$size") --output json >"$WORK/json/$tag-strata.json"
  js_setup "$p" "$rf"
  settle
  timeout $CMD_LIMIT "$JSBENCH" -servers "$NATS_URLS" -mode pub -producers "$p" -streams "$p" -size "$size" \
    -window "$WINDOW" -duration "$DUR" >"$WORK/json/$tag-js.json"
  sj=$WORK/json/$tag-strata.json jj=$WORK/json/$tag-js.json
  csv throughput "$rf" "$dur" "$(human "$size")" "$p" "$p" "" records/s "$(jget records_per_sec "$sj")" "$(jget records_per_sec "$jj")"
  csv throughput "$rf" "$dur" "$(human "$size")" "$p" "$p" "" MB/s "$(jget mb_per_sec "$sj")" "$(jget mb_per_sec "$jj")"
  if [[ ${5:-} == consume ]]; then
    log "consume RF$rf $dur $(human "$size") x$p: replay $(jget records "$sj") / $(jget records "$jj") records"
    settle
    timeout $CMD_LIMIT "$STRATA" perf consume --topic "$t" --num-records "$(jget records "$sj")" --output json >"$WORK/json/cons-$tag-strata.json"
    settle
    timeout $CMD_LIMIT "$JSBENCH" -servers "$NATS_URLS" -mode consume -streams "$p" >"$WORK/json/cons-$tag-js.json"
    sj=$WORK/json/cons-$tag-strata.json jj=$WORK/json/cons-$tag-js.json
    csv consume "$rf" "$dur" "$(human "$size")" 1 "$p" "" records/s "$(jget records_per_sec "$sj")" "$(jget records_per_sec "$jj")"
    csv consume "$rf" "$dur" "$(human "$size")" 1 "$p" "" MB/s "$(jget mb_per_sec "$sj")" "$(jget mb_per_sec "$jj")"
  fi
  strata_drop "$t"
  RATE_CAND=$(awk -v a="$(jget records_per_sec "$WORK/json/$tag-strata.json")" -v b="$(jget records_per_sec "$WORK/json/$tag-js.json")" \
    -v m="$MAX_RATE" 'BEGIN { r = (a < b ? a : b) / 2; if (r > m) r = m; if (r >= 1000) r = int(r / 1000) * 1000; else r = int(r / 100) * 100; if (r < 100) r = 100; print r }')
}

# latency RF DUR RATE: produce -> ack and produce -> consumed, 1 KiB, one producer, one partition / stream.
latency() {
  local rf=$1 dur=$2 rate=$3 t tag=lat-r$1-$2 k
  log "latency RF$rf $dur at $rate records/s"
  strata_topic 1 "$rf" "$dur"
  t=$TOPIC
  settle
  timeout $CMD_LIMIT "$STRATA" perf produce --topic "$t" --duration "$DUR" --record-size 1024 --throughput "$rate" \
    $(strata_window 1024) --output json >"$WORK/json/$tag-strata.json"
  settle
  timeout $CMD_LIMIT "$STRATA" perf end-to-end --topic "$t" --duration "$DUR" --record-size 1024 --throughput "$rate" \
    --acks all --linger 0 --output json >"$WORK/json/e2e-$tag-strata.json"
  strata_drop "$t"
  js_setup 1 "$rf"
  settle
  timeout $CMD_LIMIT "$JSBENCH" -servers "$NATS_URLS" -mode pub -size 1024 -window "$WINDOW" -duration "$DUR" -rate "$rate" >"$WORK/json/$tag-js.json"
  settle
  timeout $CMD_LIMIT "$JSBENCH" -servers "$NATS_URLS" -mode e2e -size 1024 -window "$WINDOW" -duration "$DUR" -rate "$rate" >"$WORK/json/e2e-$tag-js.json"
  for k in p50 p99 p99_9; do
    csv latency "$rf" "$dur" 1KiB 1 1 "$rate" "${k/_/.} ms" "$(jget "$k" "$WORK/json/$tag-strata.json")" "$(jget "$k" "$WORK/json/$tag-js.json")"
  done
  for k in p50 p99 p99_9; do
    csv e2e "$rf" "$dur" 1KiB 1 1 "$rate" "${k/_/.} ms" "$(jget "$k" "$WORK/json/e2e-$tag-strata.json")" "$(jget "$k" "$WORK/json/e2e-$tag-js.json")"
  done
}

# scaling: Strata alone (RF=1, lazy, 4 producers, the same window). Each
# partition count is measured twice on one topic: just created ("new"), then
# after each partition holds 64 records more ("warm"): a partition's first
# tens of KiB are written slowly (see the README), which shows with many.
scaling() {
  local n size t tag
  for n in "${PARTS[@]}"; do
    strata_topic "$n" 1 lazy
    t=$TOPIC
    log "scaling: $n partitions (new topic)"
    settle
    timeout $CMD_LIMIT "$STRATA" perf produce --topic "$t" --producers 4 --duration "$SCALE_DUR" --record-size 1024 \
      $(strata_window 1024) --output json >"$WORK/json/scale-parts-$n-new.json"
    settle
    timeout $CMD_LIMIT "$STRATA" perf produce --topic "$t" --producers 4 --num-records $((n * 64)) --record-size 1024 \
      $(strata_window 1024) --output json >/dev/null
    log "scaling: $n partitions (warm topic)"
    settle
    timeout $CMD_LIMIT "$STRATA" perf produce --topic "$t" --producers 4 --duration "$SCALE_DUR" --record-size 1024 \
      $(strata_window 1024) --output json >"$WORK/json/scale-parts-$n-warm.json"
    for tag in new warm; do
      csv scaling 1 lazy 1KiB 4 "$n" "" "MB/s ($tag topic)" "$(jget mb_per_sec "$WORK/json/scale-parts-$n-$tag.json")" ""
    done
    strata_drop "$t"
  done
  for size in "${SIZES[@]}"; do
    log "scaling: $(human "$size") records"
    strata_topic 4 1 lazy
    t=$TOPIC
    tag=scale-size-$size
    settle
    timeout $CMD_LIMIT "$STRATA" perf produce --topic "$t" --producers 4 --duration "$SCALE_DUR" --record-size "$size" \
      $(strata_window "$size") --output json >"$WORK/json/$tag.json"
    csv scaling 1 lazy "$(human "$size")" 4 4 "" records/s "$(jget records_per_sec "$WORK/json/$tag.json")" ""
    csv scaling 1 lazy "$(human "$size")" 4 4 "" MB/s "$(jget mb_per_sec "$WORK/json/$tag.json")" ""
    strata_drop "$t"
  done
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$SECONDS
echo "section,rf,durability,size,producers,partitions,rate,metric,strata,jetstream" >"$CSV"
declare -A RATES
for rf in 1 3; do
  start_strata "$rf"
  for dur in lazy fsync; do
    start_nats "$rf" "$dur"
    throughput "$rf" "$dur" 1024 1
    RATES[$rf-$dur]=$RATE_CAND
    throughput "$rf" "$dur" 1024 4 consume
    throughput "$rf" "$dur" 100 1
    throughput "$rf" "$dur" 100 4
    latency "$rf" "$dur" "${RATES[$rf-$dur]}"
    if [[ $rf == 1 && $dur == lazy ]]; then scaling; fi
    stop_matching nats-server # the next phase starts its own; Strata stays for this RF
  done
  if [[ $rf == 3 ]]; then
    BASE_PORT=$CLUSTER_BASE CLUSTER_DIR=$WORK/strata STRATA=$WORK/strata-bounded timeout 150 scripts/cluster.sh down >/dev/null || true
  fi
  cleanup
  rm -rf "$WORK/strata" "$WORK/nats"
done
ELAPSED=$((SECONDS - START))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report
cp "$CSV" "$OUT.csv"
"$CHART" -csv "$CSV" -png "$OUT.png" -md "$WORK/tables.md"
{
  echo "# Strata against NATS JetStream — $(date -u '+%Y-%m-%d %H:%M') UTC on $HOST"
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) memory, $(uname -sr)."
  echo "Load average before / after: $LOAD_BEFORE / $LOAD_AFTER. Run took ${ELAPSED} s."
  echo "Strata $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench-results' || echo ' (with local changes)'), $("$NATS" --version), nats.go $(cd scripts/bench && go list -m -f '{{.Version}}' github.com/nats-io/nats.go), $(go version | cut -d' ' -f3)."
  echo
  echo "Command: \`$([[ $FULL == 1 ]] && echo 'FULL=1 ')scripts/bench/compare.sh\` — $DUR a measurement, in-flight window $WINDOW records per producer"
  echo "(JetStream: PublishAsyncMaxPending $WINDOW; Strata: --buffer-memory of $WINDOW records, --linger 0, acks=all, max 5 requests in flight per broker)."
  echo "Both systems run on the same cores as their load generators, over loopback; each measurement starts after a sync (the previous one's dirty pages written back, untimed). lazy = page cache (Strata) vs JetStream's"
  echo "default sync_interval; fsync = topic flush.messages=1 (an fsync per appended batch) vs JetStream sync_interval: always."
  echo "RF=3: three Strata nodes (controller + broker each; acks=all, min.insync.replicas=2) vs three nats-servers with R3 streams."
  echo "Consume replays the log the 1 KiB x4 throughput row just wrote (page cache, 4 partitions / streams, one consumer)."
  echo "MB/s is MiB/s of record values. Ratio = Strata / JetStream: above 1 is better for Strata in throughput rows, below 1 in latency rows."
  echo
  echo "![Strata against NATS JetStream]($(basename "$OUT").png)"
  cat "$WORK/tables.md"
} >"$OUT.md"
log "wrote $OUT.md, $OUT.csv and $OUT.png"
