"""Running the workflow from the tests: snakemake in a subprocess, configurations written from config.yaml, the
dry run's job counts, and what a finished run's evaluation must hold. The one tiny pipeline run that every read-only
workflow test shares is the ``tiny_run`` session fixture in conftest.py."""

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


def evaluated_runs(workdir: Path) -> dict[tuple[str, str, str], Path]:
    """(model, fold, window) → its folder, for every trained model the evaluation scores: each with test logits but
    those of calibration folds (a new user's: scored by their calibration curve), as its model.pt says."""
    from contrastive_prosthetics.learning.model_file import read_model_file

    folders = sorted(path.parent for path in (workdir / "results/models").glob("*/*/*/logits.pt"))
    return {
        tuple(folder.parts[-3:]): folder
        for folder in folders
        if "calibration" not in read_model_file(folder / "model.pt")["fold_spec"]
    }


def check_metrics_recompute_the_logits(workdir: Path) -> dict[tuple[str, str, str], Path]:
    """Each evaluated run's model.pt and logits.pt read through their readers, and metrics.tsv's frame accuracy
    (group all) and confusion.tsv's frame counts recomputed from the logits; the runs checked."""
    import pandas as pd

    from contrastive_prosthetics.learning.logits import read_logits
    from contrastive_prosthetics.learning.model_file import read_model_file

    metrics = pd.read_csv(workdir / "results/eval/metrics.tsv", sep="\t")
    confusion = pd.read_csv(workdir / "results/eval/confusion.tsv", sep="\t")
    runs = evaluated_runs(workdir)
    for (model, fold, window), folder in runs.items():
        saved, logits = read_model_file(folder / "model.pt"), read_logits(folder / "logits.pt")
        assert (saved["model"], saved["fold"], saved["window"]) == (model, fold, window)
        described = (logits["model"], logits["fold"], logits["window"], logits["classes"])
        assert described == (model, fold, window, saved["classes"])
        run = f"model == '{model}' and fold == '{fold}' and window == '{window}' and group == 'all'"
        frame = metrics.query(f"{run} and level == 'frame'").set_index("metric")["value"]
        right = (logits["logits"].argmax(1) == logits["label"]).double()
        assert abs(frame["accuracy"] - right.mean().item()) < 1e-12, (model, fold, window)
        counts = confusion.query(f"{run} and level == 'frame'")
        assert counts["count"].sum() == len(right) and counts.query("true == predicted")["count"].sum() == right.sum()
    return runs
