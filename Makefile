# AstrID's two set-up commands (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EXTRAS ?= dev
NPM ?= npm
WEB_BUILD := cd web && NEXT_TELEMETRY_DISABLED=1

.PHONY: demo test lint audit coverage-report install install-dev services clean web web-test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel "setuptools>=69"

install: $(PY)
	$(PIP) install --quiet -e .

install-dev: $(PY)
	bash scripts/install-system-packages.sh
	$(PIP) install --quiet -e ".[$(EXTRAS)]"

## Install AstrID and run the main job on the embedded defaults (SQLite, local files);
## the web dashboard is built too when Node.js is installed (`astrid serve` then shows it),
## and the sky map's offline HiPS from the demo's reference images.
demo: install
	@if command -v node >/dev/null 2>&1 && command -v $(NPM) >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory web || echo "dashboard build failed: the pipeline demo runs anyway"; \
	else \
	  echo "Node.js is not installed: the web dashboard is not built (the API and this demo still run)."; \
	  echo "Install Node.js 20 (or run scripts/install-system-packages.sh), then: make web"; \
	fi
	$(VENV)/bin/astrid demo
	$(VENV)/bin/astrid sky build-hips || echo "sky HiPS not built: the sky map has no offline survey"

## Build the web dashboard into web/out (npm ci from the committed lock file).
web:
	$(WEB_BUILD) $(NPM) ci --no-audit --no-fund
	$(WEB_BUILD) $(NPM) run build

## The dashboard's build and its component tests (vitest).
web-test: web
	$(WEB_BUILD) $(NPM) test

services:
	bash scripts/ensure-services.sh

## Install everything the tests need and run the whole suite (line and branch coverage
## measured; the report names the least-covered modules).
test: install-dev services web-test
	$(PY) -m pytest -n 2 --dist loadgroup --cov --cov-report=
	@$(MAKE) --no-print-directory coverage-report

## `--append`: pytest-cov has already combined the data into .coverage; a process a test
## started that saved after that (it outlived its test) leaves a .coverage.* file, which a
## plain `combine` would put in place of .coverage instead of adding to it.
coverage-report:
	@$(VENV)/bin/coverage combine --append --quiet >/dev/null 2>&1 || true
	@$(VENV)/bin/coverage report --format=total | xargs -I{} echo "coverage (lines + branches): {}%  (target > 90%)"
	@echo "least-covered modules:" && $(VENV)/bin/coverage report --sort=cover | sed -n '3,22p'

## Static security checks and dependency audits (bandit, pip-audit, npm audit).
audit: install-dev
	VENV=$(VENV) bash scripts/security-audit.sh

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy src
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) astrid-data .pytest_cache .mypy_cache .ruff_cache web/out web/.next web/node_modules
