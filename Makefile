# Alliance Watch. `make demo` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
# Python 3.11 (the supported version): python3.11 when present, else python3.
PY ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
UV_VERSION := 0.13.8
PYTEST_ARGS ?=

.PHONY: help demo test test-all test-fast test-slow lint format typecheck bench up down clean venv venv-all system-deps services

help:
	@echo "make demo   - generate 3 sample clinics and run ingest -> detect -> digest through Airflow"
	@echo "make test   - lint, type-check and the test suite without the slow end-to-end tests"
	@echo "make test-slow - the slow end-to-end tests (real Airflow, Celery/Postgres, kill -9)"
	@echo "make test-all  - both (what CI runs)"
	@echo "make lint   - ruff lint and format check;  make format - apply ruff format"
	@echo "make bench  - the benchmarks in benchmarks/ (figures to benchmarks/results/)"
	@echo "make up / make down - Airflow standalone on 127.0.0.1 with these DAGs"

$(UV):
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (set PY=/path/to/python3.11)")'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q "uv==$(UV_VERSION)"

# Installed packages are compiled to bytecode once, here: where PYTHONDONTWRITEBYTECODE is set
# (as on our CI machines) Python would otherwise compile every module it imports from source
# in every process (each Airflow component, each test's subprocess): importing Great
# Expectations and Airflow's SDK took 7.8 s of CPU instead of 3.9 s (benchmarks/README.md).
# Embedded default: no DuckDB extension, no production extras.
$(VENV)/.synced-default: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --quiet --compile-bytecode
	@rm -f $(VENV)/.synced-*; touch $@

# Tests also cover the production profile (Celery, Postgres, DuckLake extensions).
$(VENV)/.synced-all: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --quiet --all-extras --compile-bytecode
	@rm -f $(VENV)/.synced-*; touch $@

venv: $(VENV)/.synced-default
venv-all: $(VENV)/.synced-all

# Headless Chromium for the tests that look at what a person sees (digest, report).
system-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (Debian package) for browser tests ..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "WARNING: could not install chromium; browser tests will be skipped"; \
	  fi; \
	fi

# PostgreSQL and Redis on loopback for the production-profile tests (started if not running).
services:
	@bash .ci/services.sh

demo: venv
	$(BIN)/python dags/tools/run_demo.py

lint: venv-all
	$(BIN)/ruff check pipelines dags tests benchmarks
	$(BIN)/ruff format --check pipelines dags tests benchmarks

format: venv-all
	$(BIN)/ruff format pipelines dags tests benchmarks
	$(BIN)/ruff check --fix pipelines dags tests benchmarks

typecheck: venv-all
	$(BIN)/mypy pipelines

test-fast: venv-all system-deps
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-slow: venv-all system-deps services
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

# The suite a developer runs (under 15 minutes on 2 cores); the slow end-to-end tests
# (real Airflow services, Celery/Postgres, kill -9, the demo) run with `make test-slow`/`test-all`.
test: lint typecheck venv-all system-deps services
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-all: test test-slow

bench: venv-all
	$(BIN)/python -m benchmarks.run_all

up: venv
	bash dags/tools/standalone.sh up

down:
	bash dags/tools/standalone.sh down

clean:
	rm -rf demo .pytest_cache .mypy_cache .ruff_cache artifacts
