# Two commands: `make run` (portal + worker + Sage sandbox with demo data) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
FLASK  := $(VENV)/bin/flask --app app

.PHONY: setup system-packages run test test-sqlite test-postgres lint bench bench-console bench-sync bench-load clean

setup: $(VENV)/.installed static/vendor/htmx.min.js static/vendor/axe.min.js

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

# axe-core: the accessibility checker the browser tests inject into every page (tests/browser/).
node_modules/axe-core/axe.min.js: node_modules/htmx.org/dist/htmx.min.js
	test -f $@ || npm ci --no-audit --no-fund --loglevel=error
	touch $@

static/vendor/axe.min.js: node_modules/axe-core/axe.min.js
	mkdir -p static/vendor
	cp $< $@

# Migrate, load the demo data, then Procfile.dev's processes under honcho until Ctrl-C (devtools/run.py;
# README: Running). PORT, SANDBOX_PORT and WORKERS change it.
run: setup
	$(PY) -m devtools.run

# The Debian packages the tests need and the machine lacks: installed as root with apt-get, else
# named, and make stops (devtools/system_packages.sh).
system-packages:
	@PYTHON=$(PYTHON) bash devtools/system_packages.sh

# The whole suite on SQLite and the whole suite again on PostgreSQL (PORTAL_TEST_DATABASE_URL, else
# 127.0.0.1:5432 when it answers, else a private cluster started for the run), the two at once: each
# has its own database, private Redis, sandbox and ports, and a run waits on processes and sockets
# about a third of its time, which the other uses (CI: 19 minutes with setup and lint, where one after
# the other took 20). Each half's output is printed whole when it ends. On PostgreSQL the tests that never
# open the portal's database (the sandbox's own, config parsing, `make run`) are left out: they ran
# on SQLite and could not behave otherwise. Browser tests fail rather than skip when Chromium is
# missing.
test: system-packages
	$(MAKE) --no-print-directory setup
	$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgres

test-sqlite test-postgres: export PORTAL_TEST_REQUIRE_BROWSER = 1

test-sqlite: setup
	env -u PORTAL_TEST_DATABASE_URL $(PY) -m pytest

test-postgres: setup
	PORTAL_TEST_DATABASE_TESTS_ONLY=1 $(PY) -m devtools.postgres run -- $(PY) -m pytest -q

# ruff (pyproject.toml) and vulture (dead code; whitelist in devtools/vulture_whitelist.py).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/vulture

bench: bench-console bench-sync

bench-console: setup
	$(PY) -m devtools.bench_console

# Sage sync throughput, memory, pacing and mass re-sync cost; then Sage One AUS pacing (about 5 min).
bench-sync: setup
	$(PY) -m devtools.bench_sync
	$(PY) -m devtools.bench_sage_one_pacing

# 50 Locust users for 60 s on SQLite, then on PostgreSQL (about 6 min; devtools/bench_load.py).
bench-load: setup
	$(PY) -m devtools.bench_load

clean:
	rm -rf $(VENV) node_modules static/vendor instance .pytest_cache
