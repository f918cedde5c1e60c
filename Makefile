# mslib-book: `make book` builds the book, `make test` runs every check CI runs. Both do all set-up.
# Override the interpreter with `make PYTHON=python3.11 ...`, the environment folder with `make VENV=...`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
JB := $(VENV)/bin/jupyter-book
STAMP := $(VENV)/.mslib-installed
PROFILE ?= default
NOTEBOOKS ?=
JB_FLAGS := -W -n --keep-going

.PHONY: help install notebooks book book-only test lint pytest browser-test smoke bench gpu-check clean

help:
	@echo "make book    set up .venv, run every notebook (default profile), build _build/html"
	@echo "             (runs a committed record set holds are loaded; MSLIB_RECORD_SETS=none make book: from scratch)"
	@echo "make test    set up .venv, ruff, pytest, every notebook (smoke profile), strict book build, browser test"
	@echo "make notebooks PROFILE=smoke|default|paper NOTEBOOKS='00_setup ...'"
	@echo "make bench   run the benchmarks in benchmarks/ (quick sizes; BENCH_FLAGS= for full sizes)"
	@echo "make gpu-check  every GPU check in one call (benchmarks/gpu_check.py; toy sizes on a CPU)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "mslib-book needs Python >= 3.11, got " + sys.version'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mslib)"
	@$(JB) --version | head -n 1
	@touch $(STAMP)

install: $(STAMP)

notebooks: $(STAMP)
	$(PY) -m mslib.notebooks run --profile $(PROFILE) $(NOTEBOOKS)

book-only: $(STAMP)
	# from scratch: a page whose source was moved or deleted must not linger in the built book
	rm -rf _build/html _build/.doctrees
	$(JB) build . $(JB_FLAGS)

book: $(STAMP)
	$(MAKE) notebooks PROFILE=default
	$(MAKE) book-only
	@echo "The book is built: open $(CURDIR)/_build/html/index.html"

lint: $(STAMP)
	$(VENV)/bin/ruff check --output-format concise .

# the browser test is deselected here (pyproject.toml: -m 'not browser'): it needs the built book
pytest: $(STAMP)
	$(PY) -m pytest -q

# the built book in headless Chromium at 1280/800 px; skips without Chromium unless MSLIB_REQUIRE_BROWSER=1 (CI)
browser-test: $(STAMP)
	$(PY) -m pytest -q -m browser tests/test_browser.py

smoke: $(STAMP)
	$(PY) -m mslib.notebooks run --profile smoke --no-progress

test: lint pytest smoke gpu-check
	$(MAKE) book-only
	$(MAKE) browser-test

# BENCH_FLAGS='' runs the full sizes (tens of minutes on a 2-core CPU); results go to benchmarks/results/*.json
BENCH_FLAGS ?= --quick
bench: $(STAMP)
	@if ls benchmarks/bench_*.py >/dev/null 2>&1; then for b in benchmarks/bench_*.py; do \
	PYTHONPATH=$(CURDIR) $(PY) $$b $(BENCH_FLAGS); done; else echo "no benchmarks yet"; fi

# one call, every GPU check (< 8 min on one H100/H200); without CUDA a toy version (seconds) that proves the script
gpu-check: $(STAMP)
	PYTHONPATH=$(CURDIR) $(PY) benchmarks/gpu_check.py $(GPU_CHECK_FLAGS)

clean:
	rm -rf _build executed figures
