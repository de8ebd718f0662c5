# Two commands for a fresh machine: `make run` (set up and run the default pipeline) and `make test`.
# Every target creates .venv from requirements.lock when it is missing or older than the lock file.

PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
# The export extra (ONNX) of requirements.lock: the lines after its marker; the pipeline itself needs none of them.
EXTRA_MARKER := ^\# --- extra: export
EXPORT_INSTALLED := $(VENV)/.installed-export
CORES ?= all
# `make test` also runs the SLURM test (tests/cluster/run_slurm_test.sh): it installs and starts a private
# single-node SLURM where it can (root and apt-get, as in CI) and skips with the reason elsewhere. 0 leaves it out.
CLUSTER_TEST ?= 1
# The pipeline's rules run `python -m contrastive_prosthetics` (the package, installed in the virtual environment).
export PATH := $(abspath $(VENV))/bin:$(PATH)
# The lock file pins every package, dependencies included: pip checks nothing more (--no-deps). pip compiles the
# installed files one at a time; COMPILE does it on every core after the install (a file that is not Python 3.11,
# torch ships one, is skipped as pip skips it), which takes a fifth off the install.
PIP_INSTALL := $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-compile
COMPILE := $(VENV)/bin/python -c "import compileall, sysconfig; compileall.compile_dir(sysconfig.get_path('purelib'), quiet=2, workers=0)"

.PHONY: run test test-quick test-cluster lint bench report clean

$(INSTALLED): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	sed '/$(EXTRA_MARKER)/,$$d' requirements.lock > $(VENV)/requirements-run.txt
	$(PIP_INSTALL) -r $(VENV)/requirements-run.txt
	$(PIP_INSTALL) --no-build-isolation -e .
	$(COMPILE)
	touch $@

$(EXPORT_INSTALLED): $(INSTALLED)
	sed -n '/$(EXTRA_MARKER)/,$$p' requirements.lock > $(VENV)/requirements-export.txt
	$(PIP_INSTALL) -r $(VENV)/requirements-export.txt
	$(COMPILE)
	touch $@

run: $(INSTALLED)
	snakemake --cores $(CORES)

# pytest-xdist workers: the workflow tests mostly wait on snakemake subprocesses, so two share even two cores well.
# Test files sharing a fixture run on one worker (tests/conftest.py). TEST_WORKERS=0 runs all in this process.
TEST_WORKERS ?= 2

# --durations: the slowest tests named at the end of every run, where the suite's minutes go.
test: $(INSTALLED) $(EXPORT_INSTALLED) lint
	CONTRASTIVE_CLUSTER_TEST=$(CLUSTER_TEST) pytest -n $(TEST_WORKERS) --durations=25

# The edit-test loop: the unit tests, in one process: every test but the slow ones (marker slow: a network trained
# beyond a few optimiser steps, a snakemake run, the real recordings, SLURM), at most 90 s on two cores.
test-quick: $(INSTALLED) $(EXPORT_INSTALLED)
	pytest -q -m "not slow"

test-cluster: $(INSTALLED)
	CONTRASTIVE_CLUSTER_TEST=1 pytest -s tests/test_cluster.py

lint: $(INSTALLED)
	ruff check .
	ruff format --check .
	snakefmt --check Snakefile workflow
	snakemake --lint

bench: $(INSTALLED) $(EXPORT_INSTALLED)
	$(VENV)/bin/python -m bench

report: $(INSTALLED)
	snakemake --cores $(CORES) --report results/report.html

clean:
	rm -rf results/tensors results/models results/eval results/figures logs benchmarks .snakemake
