# auditstream — the two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint fmt bench broker-start broker-stop clean

$(STAMP): pyproject.toml
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

broker-start: setup
	deploy/kafka/broker.sh start

broker-stop:
	deploy/kafka/broker.sh stop

clean:
	-deploy/kafka/broker.sh stop
	rm -rf $(VENV) .cache .data .pytest_cache .ruff_cache
