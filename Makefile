# The README's front door: `make run` and `make test`. Everything else is a helper of those.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install deps test-deps run up down test test-fast lint typecheck check services-test clean bench soak scale-test

help:
	@echo "make run    - install what is missing, start everything in the foreground (Ctrl-C stops)"
	@echo "make up     - the same, detached; returns when every component answers"
	@echo "make down   - stop everything started by make up"
	@echo "make test   - install what is missing, start the test services, run the tests"
	@echo "make test-fast - the unit and in-process API tests alone: no services, under a minute"
	@echo "make lint   - ruff, lint-imports (the layers), mypy; make typecheck - mypy alone"
	@echo "make bench  - benchmarks beside their floor (own services); writes docs/BENCHMARKS.md,"
	@echo "              then the soak (make soak); writes its section of docs/RELIABILITY.md"
	@echo "make scale-test - the production topology from real hosts through their faults (root)"

# Debian packages (redis, clamav, postgresql, libmagic) and the MinIO server build.
deps:
	@deploy/scripts/ensure-deps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: deps $(STAMP)

run: install
	deploy/scripts/stack.sh run

up: install
	deploy/scripts/stack.sh up

down:
	deploy/scripts/stack.sh down

# What only the tests need (headless Chromium for the dashboard test).
test-deps:
	@ATTACHD_TEST_DEPS=1 deploy/scripts/ensure-deps.sh

# Tests use their own ports and var/test (deploy/env/test.env), so they can run beside `make up`.
# The services this run starts stop when it ends, pass or fail (ones already running are left
# alone); KEEP_SERVICES=1 keeps them running for quicker reruns.
KEEP_SERVICES ?=
test: install test-deps
	set -a && source deploy/env/test.env && set +a && \
	  started=$$(for s in redis minio clamd postgres; do \
	    deploy/scripts/services.sh status $$s >/dev/null 2>&1 || echo $$s; done) && \
	  if [[ -z "$(KEEP_SERVICES)" && -n $$started ]]; then \
	    trap 'deploy/scripts/services.sh stop $$started' EXIT; trap 'exit 130' INT TERM; fi && \
	  deploy/scripts/services.sh start && \
	  $(VENV)/bin/pytest $(PYTEST_ARGS)

# The contributors' loop: unit and in-process API tests (fakes of the ports), no services started
# or needed. The `integration` marker (tests/conftest.py's collection hook) keeps out anything
# that would need them. PYTEST_ARGS="-k upload -x" narrows it as for `make test`.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not integration" tests/unit tests/api $(PYTEST_ARGS)

# Benchmarks with their own services and ports (deploy/env/bench.env); not part of `make test`,
# which runs only their smoke version. BENCH_ARGS="--cases B1,B4" or "--smoke" narrows a run.
# Then the soak (deploy/env/soak.env): SOAK_ARGS="--uploads 1000" shortens it.
SOAK_ARGS ?= --uploads 10000
bench: install
	$(PY) -m bench $(BENCH_ARGS)
	$(PY) -m bench.soak $(SOAK_ARGS)

soak: install
	$(PY) -m bench.soak $(SOAK_ARGS)

# The production topology (deploy/scale/topology.toml) from real hosts, network namespaces on
# this machine (needs root), through their faults; docs/RELIABILITY.md, "Across machines".
# Its short run is part of `make test`. SCALE_ARGS="--uploads 300" shortens it.
SCALE_ARGS ?=
scale-test: install
	@ATTACHD_SCALE_DEPS=1 deploy/scripts/ensure-deps.sh
	deploy/scale/run.sh $(SCALE_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

stop-test-services:
	set -a && source deploy/env/test.env && set +a && deploy/scripts/services.sh stop

clean: down
	rm -rf var
