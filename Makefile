# msgkpi: the two commands are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
KAFKA := deploy/kafka/kafka.sh
PYTEST_ARGS ?=

export MSGKPI_KAFKA_BOOTSTRAP ?= 127.0.0.1:9092

.PHONY: help venv run test up down bench bench-gateway bench-scale bench-latency lint unit integration tools kafka-start kafka-stop

help:
	@echo "make run    start Kafka, gateway, worker and the simulator (Ctrl-C stops all)"
	@echo "make test   the whole suite on a real broker (installs what it needs)"
	@echo "make up     broker, gateway and worker in the background; make down stops them"
	@echo "make bench  worker throughput beside its peers, then the ceiling of its own code"
	@echo "           without Kafka (results in bench/RESULTS.md)"
	@echo "make bench-gateway / bench-scale / bench-latency  gateway requests/s; worker memory"
	@echo "           and restart time; webhook-to-metric latency at 500 and 2,000 events/s"
	@echo "make lint   ruff and mypy"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

tools:
	@bash deploy/install-tools.sh

kafka-start:
	@bash $(KAFKA) start

kafka-stop:
	@bash $(KAFKA) stop

run: venv
	@bash deploy/run.sh

test: venv tools kafka-start
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

unit: venv
	$(BIN)/python -m pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

up: venv
	@bash deploy/up.sh up

down:
	@bash deploy/up.sh down

bench: venv kafka-start
	$(BIN)/python -m bench.worker_throughput
	$(BIN)/python -m bench.worker_pure

bench-gateway: venv kafka-start
	$(BIN)/python -m bench.gateway_throughput

bench-scale: venv kafka-start
	$(BIN)/python -m bench.worker_scale

bench-latency: venv kafka-start
	$(BIN)/python -m bench.webhook_latency

lint: venv
	$(BIN)/ruff check processor tests bench
	$(BIN)/mypy
