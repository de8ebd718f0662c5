"""Running the workflow from the tests: snakemake in a subprocess, configurations written from config.yaml, and
the dry run's job counts. The one tiny pipeline run that every read-only workflow test shares is the
``tiny_run`` session fixture in conftest.py."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def snakemake(workdir: Path, *args: str, job_bin_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Run the workflow in workdir. The jobs' `python` is this test's, or the one in job_bin_dir."""
    bin_dir = str(Path(sys.executable).parent)  # snakemake and the package's environment
    path = [str(job_bin_dir)] if job_bin_dir else []
    env = {**os.environ, "PATH": os.pathsep.join([*path, bin_dir, os.environ.get("PATH", "")])}
    command = [
        str(Path(bin_dir) / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


def job_counts(result: subprocess.CompletedProcess) -> dict[str, str]:
    """Jobs per rule, from the "Job stats" table of a dry run."""
    output = (result.stdout + result.stderr).splitlines()
    table = output[output.index("Job stats:") + 3 :]
    return dict(line.split() for line in table[: next(i for i, line in enumerate(table) if line.startswith("total"))])


def write_config(workdir: Path, change) -> Path:
    """workdir/config.yaml: config.yaml as in the repository, changed in place by ``change``."""
    config = copy.deepcopy(DEFAULT)
    change(config)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))  # key order as a user wrote it
    return workdir
