# ViT Facemap: `make paper` re-runs every notebook and builds the book; `make test` runs the tests.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= default
DEVICE ?= auto
SEED ?= 0
# Real data: VIT_FACEMAP_DATA, else ../shared/data when present; otherwise the notebooks
# fall back to generated frames and say so in the book.
DATA ?= $(or $(VIT_FACEMAP_DATA),$(wildcard ../shared/data))
export VIT_FACEMAP_DATA := $(DATA)
export PYTHONUNBUFFERED := 1
export MPLBACKEND := Agg

.PHONY: all install sysdeps test lint paper notebooks book clean

all: paper

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest -q tests
	VIT_FACEMAP_PROFILE=test $(BIN)/python -m pytest -q --nbval-lax -p no:cacheprovider notebooks

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf _build exports
