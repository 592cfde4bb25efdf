# AstrID's two set-up commands (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EXTRAS ?= dev

.PHONY: demo test lint install install-dev services clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel "setuptools>=69"

install: $(PY)
	$(PIP) install --quiet -e .

install-dev: $(PY)
	bash scripts/install-system-packages.sh
	$(PIP) install --quiet -e ".[$(EXTRAS)]"

## Install AstrID and run the main job on the embedded defaults (SQLite, local files).
demo: install
	$(VENV)/bin/astrid demo

services:
	bash scripts/ensure-services.sh

## Install everything the tests need and run the whole suite.
test: install-dev services
	$(PY) -m pytest -n 2 --dist loadgroup

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy src
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) astrid-data .pytest_cache .mypy_cache .ruff_cache
