# make setup: .venv with the locked dependencies, the project, and the pose model (idempotent).
# make dev:   setup, then the Dagster UI (http://127.0.0.1:3000) and daemon on the local instance, and the
#             Prometheus exporter (http://127.0.0.1:9464/metrics) beside them; Ctrl-C stops all three.
# make test:  setup, then lint (ruff, and the import contracts of pyproject.toml) and the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DAGSTER_PORT ?= 3000
MONITOR_PORT ?= 9464

export BODYSCRIPT_HOME ?= $(CURDIR)/.bodyscript
export DAGSTER_HOME ?= $(BODYSCRIPT_HOME)/dagster

.PHONY: setup model instance dev test lint lock clean

setup: $(STAMP) model instance

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

model: $(STAMP)
	@$(BIN)/bodyscript model >/dev/null && echo "pose model ready in $(BODYSCRIPT_HOME)/models"

# The local Dagster instance: DAGSTER_HOME with this repo's dagster.yaml (kept if already there).
instance:
	@mkdir -p "$(DAGSTER_HOME)"
	@test -f "$(DAGSTER_HOME)/dagster.yaml" || cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"

# The exporter runs in the background (where Ctrl-C does not reach it): the trap stops it when dagster dev ends.
# dagster dev starts once the exporter serves (or has failed): two processes creating a new instance's storage at
# the same moment can collide.
dev: setup
	@trap 'kill $$monitor 2>/dev/null; wait $$monitor 2>/dev/null' EXIT; \
	$(BIN)/bodyscript monitor --port $(MONITOR_PORT) & monitor=$$!; \
	for _ in $$(seq 120); do kill -0 $$monitor 2>/dev/null || break; \
	  (exec 3<>/dev/tcp/127.0.0.1/$(MONITOR_PORT)) 2>/dev/null && break; sleep 0.5; done; \
	$(BIN)/dagster dev -w workspace.yaml -p $(DAGSTER_PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

test: setup lint
	$(BIN)/pytest

# Re-resolve the dependency set from pyproject.toml into requirements.lock (the project and its tests: make setup),
# then requirements-runtime.lock (the image's: runtime dependencies and the build backend only, at the same pins,
# with the SHA-256 of every file, for pip install --require-hashes --no-deps in deploy/Dockerfile).
UV_VERSION ?= 0.13.9
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	(echo "# The whole resolved dependency set of the project and its tests (pip freeze on Python 3.11, linux x86_64)."; \
	 echo "# Regenerate with: make lock"; \
	 .lock-venv/bin/pip freeze --exclude-editable | grep -vi '^bodyscript') > requirements.lock
	.lock-venv/bin/pip install --quiet 'uv==$(UV_VERSION)'
	set -o pipefail; \
	(echo "# The user-code image's dependencies (deploy/Dockerfile): pyproject.toml's runtime dependencies and build"; \
	 echo "# backend at the versions requirements.lock pins, no test or dev tool, every file's SHA-256 (--require-hashes)."; \
	 .lock-venv/bin/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	 | .lock-venv/bin/uv pip compile pyproject.toml - --constraint requirements.lock --generate-hashes \
	     --python-version 3.11 --python-platform x86_64-manylinux_2_28 --annotation-style line \
	     --custom-compile-command 'make lock' --quiet) > requirements-runtime.lock.tmp
	mv requirements-runtime.lock.tmp requirements-runtime.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
