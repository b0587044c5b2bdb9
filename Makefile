# diffplatform: `make run` starts everything on this machine, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-dev run worker test lint format browser migrate demo loadtest bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip wheel

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

migrate: install
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py ensure_demo_user
	$(PY) manage.py setup_demo

## run: install, migrate, create the demo account, start Redis (embedded unless REDIS_URL), a Celery worker and daphne
run: demo
	HOST=$(HOST) PORT=$(PORT) bin/run-all

## worker: a Celery worker on every queue (gpu work runs on the CPU when there is no GPU; webhook deliveries)
worker: install
	$(PY) -m celery -A diffplatform worker -Q cpu,gpu,webhooks --concurrency 1 --loglevel INFO

## browser: Debian's Chromium and nginx for the browser and deployment tests (never a downloaded browser)
browser:
	@{ command -v chromium && { command -v nginx || test -x /usr/sbin/nginx; }; } >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium nginx; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium nginx; fi; }

test: install-dev browser
	$(PY) -m pytest

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install-dev
	$(PY) bench/inference.py
	$(PY) bench/engine.py

loadtest: install-dev
	$(PY) bench/loadtest.py

clean:
	rm -rf var staticfiles test-artifacts
