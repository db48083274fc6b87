# Two commands: `make run` (portal + worker + Sage sandbox with demo data) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
FLASK  := $(VENV)/bin/flask --app app

.PHONY: setup run test test-postgres bench bench-console bench-sync clean

setup: $(VENV)/.installed static/vendor/htmx.min.js

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

node_modules/htmx.org/dist/htmx.min.js: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

static/vendor/htmx.min.js: node_modules/htmx.org/dist/htmx.min.js
	mkdir -p static/vendor
	cp $< $@

run: setup
	$(PY) -m devtools.run

# The whole suite on SQLite and a private Redis; then the database tests on PostgreSQL when one
# answers (PORTAL_TEST_DATABASE_URL, else 127.0.0.1:5432).
test: setup
	$(PY) -m pytest
	$(MAKE) --no-print-directory test-postgres

test-postgres: setup
	@url="$$($(PY) -m devtools.postgres)"; \
	if [ -n "$$url" ]; then \
	  echo "PostgreSQL answers: running the database tests there"; \
	  PORTAL_TEST_DATABASE_URL="$$url" $(PY) -m pytest -m postgres -q; \
	else echo "No PostgreSQL answers: database tests ran on SQLite only"; fi

bench: bench-console bench-sync

bench-console: setup
	$(PY) -m devtools.bench_console

# Sage sync throughput, memory, pacing and mass re-sync cost; then Sage One AUS pacing (about 5 min).
bench-sync: setup
	$(PY) -m devtools.bench_sync
	$(PY) -m devtools.bench_sage_one_pacing

clean:
	rm -rf $(VENV) node_modules static/vendor instance .pytest_cache
