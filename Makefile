# The commands of the README: `make demo`, `make up`/`make down` and `make test`. Both create .venv from the pinned
# requirements on first use, so a fresh machine needs nothing but Python 3.11.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: demo up down test bench lint venv

venv: $(STAMP)

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV) || { echo "python venv module missing: apt-get install python3-venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

demo: venv
	$(PY) -m devtools.demo

up: venv
	$(PY) -m devtools.up up

down:
	@if [ -x $(PY) ]; then $(PY) -m devtools.up down; else echo "nothing to stop: no $(VENV)"; fi

test: venv
	$(PY) -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo 'no tests collected' >&2; exit 1; fi; exit $$status

bench: venv
	$(PY) -m devtools.bench

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
