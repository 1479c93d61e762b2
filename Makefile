# The README's two commands: `make demo` runs the embedded default study, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STUDY ?= shapes
export PATH := $(abspath $(BIN)):$(PATH)
# Every job is a fresh Python process: without cached bytecode each one recompiles torch's modules
# (8 s of a 13 s mapping fit), so let Python write the bytecode it compiles.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo pictures test lint venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# --no-compile: byte-compiling every installed module took half the install; Python compiles
	# and caches what it imports on first use (see PYTHONDONTWRITEBYTECODE above).
	$(BIN)/pip install --quiet --no-compile -c constraints.txt -r requirements.txt -e .
	# `import timm` then works in any process of the environment, not only after featlab's own
	# imports (featlab._startup: an import hook that runs featlab._compat before torchvision).
	$(BIN)/python -m featlab._startup
	touch $@

demo: venv
	$(BIN)/snakemake --cores all
	$(BIN)/snakemake --cores 1 --report results/$(STUDY)/report.html
	@echo "Done. Open the report in a browser: results/$(STUDY)/report.html"

# The README's pictures, small copies of three of the default study's figures (run demo first).
pictures: venv
	$(BIN)/python -m featlab.pictures --config config.yaml --out docs/pictures

test: venv
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/snakefmt --check . && $(BIN)/snakemake --lint
