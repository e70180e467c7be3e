# The commands of the README: `make demo`, `make up`/`make down` and `make test`. They create .venv from
# the pinned requirements on first use (requirements/runtime.lock, what production runs, plus
# requirements/dev.txt, the test and lint tools), so a fresh machine needs nothing but Python 3.11.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
REQUIREMENTS := requirements/runtime.lock requirements/dev.txt

.PHONY: demo up down test test-fast bench lint venv plugins-zip browser

venv: $(STAMP)

$(STAMP): $(REQUIREMENTS)
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV) || { echo "python venv module missing: apt-get install python3-venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(addprefix -r ,$(REQUIREMENTS))
	touch $(STAMP)

demo: venv
	$(PY) -m devtools.demo

up: venv
	$(PY) -m devtools.up up

down:
	@if [ -x $(PY) ]; then $(PY) -m devtools.up down; else echo "nothing to stop: no $(VENV)"; fi

test: venv browser
	$(PY) -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo 'no tests collected' >&2; exit 1; fi; exit $$status

# Pure unit tests only (no Postgres, moto, SMTP, Notify simulator or Airflow run): seconds, for the
# edit-test loop. `make test` runs everything and is what CI runs.
test-fast: venv
	$(PY) -m pytest -q -m "not services"; status=$$?; \
	if [ $$status -eq 5 ]; then echo 'no tests collected' >&2; exit 1; fi; exit $$status

bench: venv
	$(PY) -m devtools.bench

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Headless Chromium (Debian's) for tests/test_ui_browser.py: installed here, outside any test, when it
# is missing and this machine allows it (root and apt-get); otherwise that test is skipped, saying why.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; }; } || \
	echo "no headless Chromium (needs root and apt-get): tests/test_ui_browser.py will be skipped"

# dist/plugins.zip for an Airflow that takes its plugins as one archive (MWAA): plugins/ with sql/ and
# templates/ at the zip's root. Standard library only, so no venv needed.
plugins-zip:
	$(PYTHON) -m devtools.plugins_zip dist/plugins.zip
