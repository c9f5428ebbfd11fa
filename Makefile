# The README's two commands: `make run` (install what training and serving need, train into the
# embedded store if it is empty, serve on http://127.0.0.1:8080) and `make test` (install everything,
# run the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pip's own progress (one line per package, a bar where there is a terminal): silence (`--quiet`)
# over a long install looked like a hang (issue 22). The installs below go through uv, which shows
# its own; pip is installed beside the project (scripts/install.sh).
PIP := $(BIN)/python -m pip install --disable-pip-version-check
# uv first, pip as the fallback; a virtualenv without pip's ~20 s of bundled-pip set-up (the script says why).
INSTALL := PYTHON=$(PYTHON) bash scripts/install.sh $(VENV)

.PHONY: install install-run run test test-fast lint system-deps docs

$(BIN)/python:
	$(PYTHON) -m venv --without-pip $(VENV)

# `make run`: the `run` extra only (service, gRPC schema writer, trainer over mlflow-skinny): no load
# tests, dev, docs, Azure or browser tooling, no MLflow server or UI.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	@echo "make run: installing what training and serving need into $(VENV) (the first time takes about a minute)"
	$(INSTALL) run
	touch $@

# `make install` / `make test`: everything (the whole of MLflow included), compiled at install as
# pip did: the suite starts hundreds of processes, and where PYTHONDONTWRITEBYTECODE is set
# (containers, CI) an uncompiled environment would compile every module again in each of them.
$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	@echo "make install: installing everything (service, trainer, load tests, dev tools) into $(VENV)"
	UV_COMPILE_BYTECODE=1 $(INSTALL) all,dev
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

# The documentation site (mkdocs.yml, docs/) on http://127.0.0.1:8000, rebuilt as pages change;
# tests/docs/test_site.py builds it with --strict.
docs: install
	$(BIN)/mkdocs serve

# Debian packages the tests drive for real: headless Chromium, wrk, the Docker engine.
system-deps:
	bash scripts/install-system-deps.sh

# ruff, then the dependency rules: import-linter's contracts in pyproject.toml (docs/architecture.md).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --cache-dir .cache/import-linter

# The whole suite, the process tests on TEST_WORKERS pytest-xdist workers; `--dist loadgroup` keeps each
# xdist_group (set by rule in tests/support/tiers.py: Docker, the default ports, a module's server) on
# one worker (docs/testing.md).
TEST_WORKERS ?= 3
# The `timing` tests (benchmarks, load tests, the fault suite: marked by the same rule) then run alone,
# in a second phase: their latency targets cannot hold beside two other workers' load.
test: install system-deps lint
	bash scripts/docker-session.sh bash scripts/test-phases.sh $(BIN)/python $(TEST_WORKERS)

# The fast tier: every test the rule did not mark `process`, in this one process (no system deps,
# no Docker, no server started).
test-fast: install
	$(BIN)/python -m pytest -m "not process" -p no:xdist
