# make setup: .venv with the locked dependencies, the project, and the pose model (idempotent).
# make dev:   setup, then the Dagster UI (http://127.0.0.1:3000) and daemon on the local instance.
# make test:  setup, then lint and the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DAGSTER_PORT ?= 3000

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

dev: setup
	$(BIN)/dagster dev -w workspace.yaml -p $(DAGSTER_PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	$(BIN)/pytest

# Re-resolve the dependency set from pyproject.toml into requirements.lock.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	(echo "# The whole resolved dependency set of the project and its tests (pip freeze on Python 3.11, linux x86_64)."; \
	 echo "# Regenerate with: make lock"; \
	 .lock-venv/bin/pip freeze --exclude-editable | grep -vi '^bodyscript') > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
