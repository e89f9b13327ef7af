#!/usr/bin/env bash
# A Kafka cluster of KAFKA_NODES (3) KRaft nodes on loopback, from the same jars as broker.sh.
#
#   cluster.sh start          format (once) and start every node, wait until all serve
#   cluster.sh stop           stop every node
#   cluster.sh kill N         SIGKILL node N (1-based): the crash a replica must survive
#   cluster.sh start-node N   start node N again (after kill) and wait until it serves
#   cluster.sh bootstrap      print the bootstrap list (host:port,...)
#
# Environment: KAFKA_CLUSTER_DIR (.data/kafka-cluster), KAFKA_NODES (3),
# KAFKA_BASE_PORT (19092: node N listens on base+2(N-1), its controller on the port after).
# Every node is broker and controller, so losing one keeps the controller quorum (2 of 3).
# The offsets and transaction topics get replication 3 and min ISR 2, like the pipeline's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cluster_dir="${KAFKA_CLUSTER_DIR:-$root/.data/kafka-cluster}"
nodes="${KAFKA_NODES:-3}"
base="${KAFKA_BASE_PORT:-19092}"

port_of() { echo $((base + 2 * ($1 - 1))); }
voters() {
  local out="" n
  for n in $(seq 1 "$nodes"); do out="$out${out:+,}$n@127.0.0.1:$(($(port_of "$n") + 1))"; done
  echo "$out"
}
cluster_id() {
  mkdir -p "$cluster_dir"
  [ -f "$cluster_dir/cluster.id" ] || "$here/broker.sh" cluster-id > "$cluster_dir/cluster.id"
  cat "$cluster_dir/cluster.id"
}
node() {  # node N COMMAND: broker.sh for one node
  local n="$1" p; shift; p="$(port_of "$n")"
  KAFKA_PORT="$p" KAFKA_CONTROLLER_PORT="$((p + 1))" KAFKA_DATA_DIR="$cluster_dir/node$n" \
  KAFKA_NODE_ID="$n" KAFKA_QUORUM_VOTERS="$(voters)" KAFKA_CLUSTER_ID="$(cluster_id)" \
  KAFKA_INTERNAL_RF="$((nodes < 3 ? nodes : 3))" KAFKA_INTERNAL_MIN_ISR="$((nodes < 2 ? 1 : 2))" \
  KAFKA_HEAP="${KAFKA_HEAP:-384m}" "$here/broker.sh" "$@"
}

case "${1:-}" in
  start)
    "$here/broker.sh" fetch
    cluster_id >/dev/null
    # All at once: a node's controller needs the others for a quorum.
    pids=()
    for n in $(seq 1 "$nodes"); do node "$n" start & pids+=($!); done
    status=0
    for pid in "${pids[@]}"; do wait "$pid" || status=1; done
    exit "$status" ;;
  stop)
    # All at once too: the last node alone cannot shut down cleanly without a quorum.
    for n in $(seq 1 "$nodes"); do node "$n" stop & done
    wait ;;
  kill)
    pid_file="$cluster_dir/node${2:?node number}/broker.pid"
    kill -KILL "$(cat "$pid_file")"
    while kill -0 "$(cat "$pid_file")" 2>/dev/null; do sleep 0.1; done
    rm -f "$pid_file" ;;
  start-node)
    node "${2:?node number}" start ;;
  bootstrap)
    out=""; for n in $(seq 1 "$nodes"); do out="$out${out:+,}127.0.0.1:$(port_of "$n")"; done; echo "$out" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
