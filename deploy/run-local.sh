#!/usr/bin/env bash
# `make run`: the local broker, then processor + API (embedded chDB) with a demo load.
# Ctrl-C stops the pipeline, then the broker if this script started it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

started_broker=0
if ! deploy/kafka/broker.sh status; then
  deploy/kafka/broker.sh start
  started_broker=1
fi
cleanup() {
  if [ "$started_broker" = 1 ]; then deploy/kafka/broker.sh stop || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export AUDITSTREAM_LOG_FORMAT="${AUDITSTREAM_LOG_FORMAT:-console}"
# Not exec: the trap must run after the pipeline has stopped.
.venv/bin/auditstream run --demo "${DEMO_EVENTS:-3000}" "$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null; wait "$pid"; exit 130' INT TERM
wait "$pid"
