#!/usr/bin/env bash
# A three-node Strata cluster on this machine (each node a controller and a
# broker), for trying things out and for the CLI's end-to-end tests.
#
#   scripts/cluster.sh up       start nodes 1-3, wait until every /readyz answers
#   scripts/cluster.sh status   each node's /readyz, then `strata cluster describe`
#   scripts/cluster.sh down     SIGTERM every node (controlled shutdown) and wait
#
# Node i listens on 127.0.0.1:$((BASE_PORT + 100*i + 2)) (broker),
# ...+3 (controller) and ...+4 (metrics); BASE_PORT defaults to 9000, so node 1
# is 9102/9103/9104. Data and logs go to $CLUSTER_DIR (default data/cluster);
# the binary is $STRATA (default bin/strata, built if missing).
# Clients: export STRATA_BOOTSTRAP=127.0.0.1:9102,127.0.0.1:9202,127.0.0.1:9302
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_PORT=${BASE_PORT:-9000}
CLUSTER_DIR=${CLUSTER_DIR:-data/cluster}
STRATA=${STRATA:-bin/strata}
NODES=(1 2 3)

port() { echo $((BASE_PORT + 100 * $1 + $2)); }
quorum() {
  local q=() i
  for i in "${NODES[@]}"; do q+=("$i@127.0.0.1:$(port "$i" 3)"); done
  (IFS=,; echo "${q[*]}")
}
bootstrap() {
  local b=() i
  for i in "${NODES[@]}"; do b+=("127.0.0.1:$(port "$i" 2)"); done
  (IFS=,; echo "${b[*]}")
}
# ready: GET /readyz answers 200 (bash's /dev/tcp: no curl needed).
ready() {
  (exec 3<>"/dev/tcp/127.0.0.1/$(port "$1" 4)" && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 &&
    timeout 1 head -1 <&3 | grep -q ' 200 ') 2>/dev/null
}
pidfile() { echo "$CLUSTER_DIR/n$1.pid"; }
alive() { [[ -f $(pidfile "$1") ]] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }

up() {
  [[ -x $STRATA ]] || make build >/dev/null
  mkdir -p "$CLUSTER_DIR"
  local i
  for i in "${NODES[@]}"; do
    if alive "$i"; then echo "node $i already running (pid $(cat "$(pidfile "$i")"))"; continue; fi
    "$STRATA" server --node-id "$i" --roles controller,broker --data-dir "$CLUSTER_DIR/n$i" \
      --broker-addr "127.0.0.1:$(port "$i" 2)" --controller-addr "127.0.0.1:$(port "$i" 3)" \
      --metrics-addr "127.0.0.1:$(port "$i" 4)" --quorum "$(quorum)" --raft-timeouts tuned \
      >"$CLUSTER_DIR/n$i.log" 2>&1 &
    echo $! >"$(pidfile "$i")"
  done
  local deadline=$((SECONDS + 30))
  for i in "${NODES[@]}"; do
    until ready "$i"; do
      if ! alive "$i"; then echo "node $i exited; see $CLUSTER_DIR/n$i.log" >&2; tail -5 "$CLUSTER_DIR/n$i.log" >&2; exit 1; fi
      if ((SECONDS > deadline)); then echo "node $i not ready within 30 s; see $CLUSTER_DIR/n$i.log" >&2; exit 1; fi
      sleep 0.1
    done
  done
  echo "cluster up: STRATA_BOOTSTRAP=$(bootstrap)"
}

# down stops the nodes one at a time, so each broker's controlled shutdown
# still finds a controller quorum (the last one gives up after a few seconds).
down() {
  local i p deadline
  for i in 3 2 1; do
    alive "$i" || { rm -f "$(pidfile "$i")"; continue; }
    p=$(cat "$(pidfile "$i")")
    kill -TERM "$p"
    deadline=$((SECONDS + 40))
    while kill -0 "$p" 2>/dev/null; do
      if ((SECONDS > deadline)); then echo "node $i (pid $p) did not stop within 40 s; killing it" >&2; kill -KILL "$p"; break; fi
      sleep 0.1
    done
    rm -f "$(pidfile "$i")"
  done
  echo "cluster down"
}

status() {
  local i
  for i in "${NODES[@]}"; do
    if alive "$i" && ready "$i"; then echo "node $i: ready (pid $(cat "$(pidfile "$i")"))"
    elif alive "$i"; then echo "node $i: running, not ready"
    else echo "node $i: stopped"; fi
  done
  "$STRATA" cluster describe --bootstrap "$(bootstrap)" --timeout 5s || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
