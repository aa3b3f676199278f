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
# Jupyter refuses to run as root unless told; containers and CI often are root.
export JUPYTER_ALLOW_ROOT := 1
BOOK := $(BIN)/python -m vit_facemap.book
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all install sysdeps test lint images paper notebooks book html tex pdf html-online clean

all: paper

$(VENV)/.installed: pyproject.toml requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the lock pins every dependency to the versions of the last measured runs (see its header)
	$(BIN)/python -m pip install --quiet -c requirements-lock.txt -e '.[dev]'
	# Facemap's FMnet is an optional peer in the tracker benchmark; its own pins clash with ours
	# and the network needs only torch, hence --no-deps (skipped with a note where pip cannot reach it)
	$(BIN)/python -m pip install --quiet --no-deps 'facemap==1.0.8' || echo "note: facemap not installed; the FMnet peer is skipped"
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest -q tests
	# the notebooks' own results folder: in the book's (_build/results) the test run replaced
	# the tracker table and runs that make paper reuses (55 min of training on 2 CPU cores)
	VIT_FACEMAP_PROFILE=test VIT_FACEMAP_OUT=$(CURDIR)/_build/test-results \
	  $(BIN)/python -m pytest -q --nbval-lax -p no:cacheprovider notebooks

lint: install
	$(BIN)/ruff check src tests benchmarks notebooks

# drawings of the manuscript that show no data (committed; a test checks they match the code)
images: install
	$(BIN)/python -m vit_facemap.diagrams images/overview.png

clean:
	rm -rf _build exports

# --- the paper ------------------------------------------------------------------------
# make paper [PROFILE=quick|default|full] [DEVICE=auto|cpu|cuda]: re-execute every notebook,
# then build _build/html/ (offline HTML book), exports/arxiv.zip and exports/paper.pdf.
# Each step fails loudly: a failing notebook, a MyST warning (unresolved reference or
# citation), a LaTeX error or a missing export stops the build with a non-zero status.
paper: install sysdeps
	$(MAKE) --no-print-directory notebooks
	$(MAKE) --no-print-directory book

# Debian TeX for the PDF; installed only when missing (apt-get as root, else with sudo).
# MyST runs on Node.js >= 20 (Debian 12's is 18): where no node is found, mystmd installs its
# own copy once (into the user's data folder); checked here, before the notebooks run.
sysdeps: install
	MYSTMD_ALLOW_NODEENV=1 MYST_NO_UPDATE_CHECK=1 $(BIN)/myst --version
	@if command -v pdflatex >/dev/null && command -v xelatex >/dev/null && command -v latexmk >/dev/null \
	  && kpsewhich authblk.sty newunicodechar.sty >/dev/null; then \
	  echo "sysdeps: TeX (pdflatex, xelatex, latexmk, latex-extra) found"; \
	else \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y \
	    texlive-xetex texlive-latex-extra latexmk; \
	fi

notebooks: install
	$(BOOK) execute --profile $(PROFILE) --device $(DEVICE) --seed $(SEED) --data-dir "$(DATA)"

book: html tex pdf
	$(BOOK) check

html: install
	$(BOOK) html

tex: install
	$(BOOK) tex

pdf: tex
	$(BOOK) pdf

# With internet access: the same book in MyST's own book theme (_build/online/_build/html).
html-online: install
	@test -f _build/executed/build_record.md || $(MAKE) --no-print-directory notebooks
	$(BOOK) html-online
