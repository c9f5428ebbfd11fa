# The README's two commands: `make run` (install, train into the embedded store if it is empty,
# serve on http://127.0.0.1:8080) and `make test` (install everything, run the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint system-deps

$(BIN)/diabetes: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	touch $@

# The Open Inference Protocol's gRPC schema, written once from tritonclient (the `grpc` extra) so
# that the workers build their messages without importing it (protocols/v2/grpc_schema.py).
SCHEMA := service/diabetes_service/protocols/v2/grpc_schema.binpb
$(SCHEMA): $(BIN)/diabetes
	$(BIN)/python -m diabetes_service.protocols.v2.grpc_schema $@

install: $(BIN)/diabetes $(SCHEMA)

run: install
	$(BIN)/diabetes train --if-empty
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
