#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) without Docker.
#
#   broker.sh fetch          resolve the broker jars from Maven Central (once)
#   broker.sh start          format storage if new, start in the background, wait until it serves
#   broker.sh stop           stop the broker started from the same data folder
#   broker.sh status         exit 0 when the broker answers on its port
#   broker.sh run            run in the foreground (Ctrl-C stops it)
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (port+1),
# KAFKA_DATA_DIR (.data/kafka), KAFKA_LIBS (.cache/kafka/libs), KAFKA_HEAP (512m).
# One node of a cluster (deploy/kafka/cluster.sh sets these): KAFKA_NODE_ID (1),
# KAFKA_QUORUM_VOTERS (1@127.0.0.1:<controller port>), KAFKA_CLUSTER_ID (random, for the
# first format), KAFKA_INTERNAL_RF (1: replication of the offsets and transaction topics),
# KAFKA_INTERNAL_MIN_ISR (1).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
data_dir="${KAFKA_DATA_DIR:-$root/.data/kafka}"
libs="${KAFKA_LIBS:-$root/.cache/kafka/libs}"
heap="${KAFKA_HEAP:-512m}"
node_id="${KAFKA_NODE_ID:-1}"
voters="${KAFKA_QUORUM_VOTERS:-$node_id@127.0.0.1:$controller_port}"
internal_rf="${KAFKA_INTERNAL_RF:-1}"
internal_min_isr="${KAFKA_INTERNAL_MIN_ISR:-1}"
pid_file="$data_dir/broker.pid"
config="$data_dir/server.properties"

log() { printf 'broker: %s\n' "$*" >&2; }

fetch() {
  # The marker holds the pom's hash: a pom that gained a jar (kafka-tools for the benchmark)
  # refetches instead of trusting an older, complete-looking folder.
  local stamp; stamp="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"
  if [ -f "$libs/.complete" ] && [ "$(cat "$libs/.complete")" = "$stamp" ]; then return 0; fi
  command -v mvn >/dev/null || { log "Maven (mvn) is required to fetch the Kafka jars"; exit 2; }
  command -v java >/dev/null || { log "Java 17+ is required to run the broker"; exit 2; }
  log "resolving Apache Kafka jars from Maven Central into $libs"
  rm -rf "$libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$libs" -DincludeScope=runtime
  echo "$stamp" > "$libs/.complete"
}

answers() {
  # A TCP connect is enough to know the listener is up; the readiness that
  # matters (metadata) is checked by the clients themselves.
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

running_pid() {
  [ -f "$pid_file" ] || return 1
  local pid; pid="$(cat "$pid_file")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

prepare() {
  fetch
  mkdir -p "$data_dir/logs"
  sed -e "s#@PORT@#$port#g" -e "s#@CONTROLLER_PORT@#$controller_port#g" \
      -e "s#@LOG_DIR@#$data_dir/logs#g" -e "s#@NODE_ID@#$node_id#g" -e "s#@VOTERS@#$voters#g" \
      -e "s#@INTERNAL_RF@#$internal_rf#g" -e "s#@INTERNAL_MIN_ISR@#$internal_min_isr#g" \
      "$here/server.properties" > "$config"
  if [ ! -f "$data_dir/logs/meta.properties" ]; then
    log "formatting KRaft storage in $data_dir/logs"
    java -cp "$libs/*" -Dlog4j2.configurationFile="$here/log4j2.yaml" \
      -Dkafka.logs.dir="$data_dir" kafka.tools.StorageTool format \
      --config "$config" --cluster-id "${KAFKA_CLUSTER_ID:-$(java_cluster_id)}" >/dev/null
  fi
}

java_cluster_id() {
  # A Kafka cluster id is 16 random bytes, base64url without padding. One that starts
  # with "-" would be read as an option by the storage tool, so draw again.
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    case "$id" in -*) ;; *) echo "$id"; return ;; esac
  done
}

java_cmd=(java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$here/log4j2.yaml" -Dkafka.logs.dir="$data_dir"
  -cp "$libs/*" kafka.Kafka "$config")

start() {
  if pid="$(running_pid)"; then log "already running (pid $pid) on 127.0.0.1:$port"; return 0; fi
  if answers; then log "port $port is taken by another process"; exit 1; fi
  prepare
  # setsid: the broker must outlive the shell that started it (make, CI) and
  # not receive its Ctrl-C; stop() ends it by pid.
  setsid "${java_cmd[@]}" >"$data_dir/stdout.log" 2>&1 < /dev/null &
  echo $! > "$pid_file"
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  until answers; do
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      log "broker exited during start-up; last lines of $data_dir/stdout.log:"
      tail -n 20 "$data_dir/stdout.log" >&2; exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then log "broker did not answer within the timeout"; stop; exit 1; fi
    sleep 0.5
  done
  log "started (pid $(cat "$pid_file")) on 127.0.0.1:$port, data in $data_dir"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then rm -f "$pid_file"; log "not running"; return 0; fi
  kill -TERM "$pid"
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then log "broker did not stop in 30 s; killing"; kill -KILL "$pid"; fi
    sleep 0.2
  done
  rm -f "$pid_file"
  log "stopped"
}

case "${1:-}" in
  cluster-id) java_cluster_id ;;
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) answers ;;
  run) prepare; exec "${java_cmd[@]}" ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
