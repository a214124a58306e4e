# The one task runner: the README and CI call these targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 5000
# Parallel test workers (pytest-xdist): more than the 2 cores, because tests wait on fsync,
# PostgreSQL and the server processes they start.
WORKERS ?= 3

.PHONY: install run test lint typecheck screenshots bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed (found %s)" % sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m flask --app wsgi db-upgrade
	PUBLIC_BASE_URL=http://$(HOST):$(PORT) $(PY) -m flask --app wsgi seed-demo
	@# The scheduler runs beside the development server (mail goes to instance/outbox/*.eml) and
	@# stops with it; in production it is a process of its own (docs/scheduler-and-mail.md).
	PUBLIC_BASE_URL=http://$(HOST):$(PORT) SCHEDULER_SWEEP_HOURS=0-23 $(PY) -m flask --app wsgi scheduler & \
	SCHEDULER=$$!; trap 'kill $$SCHEDULER 2>/dev/null' EXIT INT TERM; \
	$(PY) -m flask --app wsgi run --host $(HOST) --port $(PORT)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

# The whole suite, every database test once on SQLite and once on PostgreSQL, in one session.
# REQUIRE_POSTGRES=1 (set by .ci/run) turns a missing PostgreSQL into a failure instead of a skip.
TEST_DB ?= sqlite,postgresql
test: install lint typecheck
	TEST_DB=$(TEST_DB) $(PY) -m pytest -n $(WORKERS) --maxschedchunk 1

# Screenshots of the main pages for the README (headless Chromium).
screenshots: install
	SCREENSHOT_DIR=docs/screenshots $(PY) -m pytest -q tests/test_browser.py

bench: install
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
