# The README's two commands: `make run` (install what training and serving need, train into the
# embedded store if it is empty, serve on http://127.0.0.1:8080) and `make test` (install everything,
# run the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pip's own progress (one line per package, a bar where there is a terminal): the first install takes
# minutes, and silence (`--quiet`) over it looked like a hang (issue 22).
PIP := $(BIN)/python -m pip install --disable-pip-version-check

.PHONY: install install-run run test lint system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip

# `make run`: the `run` extra only (service, gRPC schema writer, trainer): no load tests, dev, docs,
# Azure or browser tooling.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	@echo "make run: installing what training and serving need into $(VENV) (the first time takes a few minutes)"
	$(PIP) -e ".[run]"
	touch $@

# `make install` / `make test`: everything.
$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	@echo "make install: installing everything (service, trainer, load tests, dev tools) into $(VENV)"
	$(PIP) -e ".[all,dev]"
	touch $@ $(VENV)/.installed-run

# The Open Inference Protocol's gRPC schema, written once from tritonclient (the `grpc` extra) so
# that the workers build their messages without importing it (protocols/v2/grpc_schema.py).
SCHEMA := service/diabetes_service/protocols/v2/grpc_schema.binpb
$(SCHEMA): | $(VENV)/.installed-run
	$(BIN)/python -m diabetes_service.protocols.v2.grpc_schema $@

# Our sources' byte-code, as a wheel install leaves it: an editable install compiles none, and with
# PYTHONDONTWRITEBYTECODE=1 (set on these machines) every `diabetes serve` compiled ~80 modules
# again (~0.15 s idle, ~1 s on the loaded 2-core machine; issue 26). A stale .pyc is never used:
# Python checks each one against its source's modification time.
COMPILE := $(BIN)/python -m compileall -q service cli client trainer

install-run: $(VENV)/.installed-run $(SCHEMA)
	$(COMPILE)

install: $(VENV)/.installed-all $(SCHEMA)
	$(COMPILE)

run: install-run
	$(BIN)/diabetes train --if-empty
	@echo "make run: starting the service in the foreground (HTTP 8080, gRPC 8081, metrics 8082); Ctrl+C stops it"
	$(BIN)/diabetes serve

# Debian packages the tests drive for real: headless Chromium, wrk, the Docker engine.
system-deps:
	bash scripts/install-system-deps.sh

# ruff, then the dependency rules: import-linter's contracts in pyproject.toml (docs/architecture.md).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --cache-dir .cache/import-linter

test: install system-deps lint
	bash scripts/docker-session.sh $(BIN)/python -m pytest
