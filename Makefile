# Two commands for a fresh machine: `make run` (set up and run the default pipeline) and `make test`.
# Every target creates .venv from requirements.lock when it is missing or older than the lock file.

PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
CORES ?= all
# The pipeline's rules call the `contrastive-prosthetics` command, installed in the virtual environment.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: run test lint bench report clean

$(INSTALLED): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

run: $(INSTALLED)
	snakemake --cores $(CORES)

test: $(INSTALLED) lint
	pytest

lint: $(INSTALLED)
	ruff check .
	ruff format --check .
	snakefmt --check Snakefile workflow
	snakemake --lint

bench: $(INSTALLED)
	$(VENV)/bin/python -m bench

report: $(INSTALLED)
	snakemake --cores $(CORES) --report results/report.html

clean:
	rm -rf results/tensors results/models results/eval results/figures logs benchmarks .snakemake
