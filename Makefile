# auditstream — the two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# rustup's cargo, for the native fast path (setup.py: optional, skipped without a toolchain).
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: setup run test lint fmt bench broker-start broker-stop clean dist

$(STAMP): pyproject.toml setup.py native/fastpath/Cargo.toml $(wildcard native/fastpath/src/*.rs)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

.cache/kafka/libs/.complete: deploy/kafka/pom.xml
	deploy/kafka/broker.sh fetch

## setup: virtualenv with the package and its dependencies, and the Kafka broker jars
setup: $(STAMP) .cache/kafka/libs/.complete

## run: the whole pipeline on the embedded default (local broker + chDB) with a demo load
run: setup
	deploy/run-local.sh

## test: lint, then the whole suite against a real broker and ClickHouse engine
test: setup lint
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests

fmt: $(STAMP)
	$(BIN)/ruff format services tests
	$(BIN)/ruff check --fix services tests

## bench: every benchmark at full size on a local broker (started here on a free port unless
## AUDITSTREAM_BENCH_KAFKA_BOOTSTRAP is set) and chDB; BENCH_ARGS e.g. "--rows 1000000"
bench: setup
	$(BIN)/pip install -q -e '.[dev,bench]'
	@set -euo pipefail; \
	if [ -n "$${AUDITSTREAM_BENCH_KAFKA_BOOTSTRAP:-}" ]; then \
	  exec $(BIN)/auditstream bench all $(BENCH_ARGS); \
	fi; \
	free_port() { $(BIN)/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }; \
	export KAFKA_PORT="$${BENCH_KAFKA_PORT:-$$(free_port)}" KAFKA_CONTROLLER_PORT="$$(free_port)"; \
	export KAFKA_DATA_DIR="$$(mktemp -d -t auditstream-bench-kafka-XXXXXX)"; \
	trap 'deploy/kafka/broker.sh stop; rm -rf "$$KAFKA_DATA_DIR"' EXIT; \
	deploy/kafka/broker.sh start; \
	AUDITSTREAM_BENCH_KAFKA_BOOTSTRAP="127.0.0.1:$$KAFKA_PORT" $(BIN)/auditstream bench all $(BENCH_ARGS)

## dist: the sdist and the wheel in dist/ (what `pip install` and the Docker image use)
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	@ls -l dist

broker-start: setup
	deploy/kafka/broker.sh start

broker-stop:
	deploy/kafka/broker.sh stop

clean:
	-deploy/kafka/broker.sh stop
	rm -rf $(VENV) .cache .data .pytest_cache .ruff_cache dist build
