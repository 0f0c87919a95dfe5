# The README's two commands: `make run` and `make test` (plus `make test-real`, `make bench`).
# Each installs what is missing first: a virtual environment in .venv with the project.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8000
# The real-model tier's folder of HBP optimisation folders (relative to the project root).
MODELS ?= ../shared/reference/models

.PHONY: run test test-real lint bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# Development defaults for the command line (`manage.py ...` from a plain shell). Made only
# when missing: an existing .env is the user's and is never overwritten. Production runs
# without one, so a misconfigured deployment still refuses to start.
.env:
	@printf '%s\n' \
		'# Written by `make install` for development, only because there was no .env.' \
		'# Yours to edit; never overwritten. The environment wins over this file.' \
		'# Every setting is described in .env.example.' \
		'DEBUG=1' > $@
	@echo "Wrote .env with the development defaults (DEBUG=1)."

install: $(STAMP) .env

run: $(STAMP) .env
	$(PY) -m rebuild_site.launcher --port $(PORT) $(if $(CLUSTER),--cluster $(CLUSTER))

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The whole suite on SQLite; then, when TEST_POSTGRES_URL names a PostgreSQL server
# (.ci/run starts one), the database-facing tests again on PostgreSQL.
test: $(STAMP) lint
	$(PY) -m pytest
	@if [ -n "$$TEST_POSTGRES_URL" ]; then \
		echo "Database-facing tests on PostgreSQL"; \
		DATABASE_URL="$$TEST_POSTGRES_URL" $(PY) -m pytest -m postgres; \
	else \
		echo "TEST_POSTGRES_URL is not set: the PostgreSQL pass is left to .ci/run."; \
	fi

# The real-model tier: every test in tests/real/, once per model folder in MODELS. It fails
# (never skips) when MODELS is missing or empty.
test-real: $(STAMP)
	REAL_MODELS="$(MODELS)" $(PY) -m pytest tests/real

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf var/test-* .pytest_cache
