# Two commands matter: `make demo` (the main job) and `make test` (every check).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test lint typecheck pytest bench notebooks clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	touch $(STAMP)

# Chromium and Redis from Debian's packages, for the tests that drive them for real.
system-deps:
	scripts/system-deps.sh

demo: install
	$(BIN)/mailpulse demo

test: lint typecheck pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

pytest: install system-deps
	$(BIN)/pytest

bench: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/receive.py
	$(BIN)/python bench/receive_batches.py
	$(BIN)/python bench/shared_spool.py
	$(BIN)/python bench/flush.py
	$(BIN)/python bench/flush_providers.py
	$(BIN)/python bench/actions.py
	$(BIN)/python bench/report.py
	$(BIN)/python bench/lake_storage.py

notebooks: install
	$(BIN)/python -m pip install --quiet -e '.[dev,notebooks]'
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .hypothesis
