"""The workflow on a real SLURM cluster: tests/cluster/run_slurm_test.sh installs SLURM, starts a single-node
cluster, and runs the tiny pipeline with `--profile profiles/slurm` and locally, then compares the two.

It needs root and Debian's packages, and takes a few minutes, so it runs only with CONTRASTIVE_CLUSTER_TEST=1
(`make test-cluster`). Where SLURM cannot be installed, the script prints "SKIPPED: <reason>" and so does this test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "cluster" / "run_slurm_test.sh"
TIMEOUT_S = 20 * 60

pytestmark = pytest.mark.cluster


def run_script() -> tuple[int, str]:
    """Run the script in its own process group. On timeout, TERM lets its trap cancel jobs and stop the daemons."""
    env = dict(os.environ)
    if (Path(sys.prefix) / "bin" / "snakemake").exists():
        env.setdefault("VENV", sys.prefix)  # the environment running this test has snakemake and the plugin
    process = subprocess.Popen(
        ["bash", str(SCRIPT)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        pytest.fail(f"{SCRIPT.name} ran past {TIMEOUT_S} s; its output ended with:\n{output[-6000:]}")
    return process.returncode, output


@pytest.mark.skipif(
    os.environ.get("CONTRASTIVE_CLUSTER_TEST") != "1",
    reason="installs and starts SLURM as root and takes minutes: set CONTRASTIVE_CLUSTER_TEST=1 (make test-cluster)",
)
def test_pipeline_on_slurm_matches_local_run_and_only_networks_hold_a_gpu(capsys):
    returncode, output = run_script()
    with capsys.disabled():  # into the terminal (and CI's log) even when it passes: the sbatch calls are the proof
        print(f"\n----- {SCRIPT.name}\n{output}")
    skipped = [line for line in output.splitlines() if line.startswith("SKIPPED:")]
    if skipped:
        pytest.skip(skipped[-1].removeprefix("SKIPPED:").strip())
    assert returncode == 0, f"{SCRIPT.name} exited {returncode}:\n{output[-6000:]}"
    assert "PASSED:" in output
    assert "OK: SLURM and local runs made byte-identical outputs" in output
    gpu_submissions = [line for line in output.splitlines() if line.startswith("SBATCH-GPU: sbatch call: sbatch ")]
    assert len(gpu_submissions) == 2, output[-6000:]  # the two network models of tests/tiny_config.py
    assert all("--gpus=1" in line and "rule_train_wildcards" in line for line in gpu_submissions), gpu_submissions
    cpu_submissions = [line for line in output.splitlines() if line.startswith("SBATCH-CPU: sbatch call: sbatch ")]
    assert len(cpu_submissions) == 1 and "--gpus" not in cpu_submissions[0], cpu_submissions  # LDA holds no GPU
    # SLURM's own record (scontrol), not only what was asked for
    assert "OK: SLURM recorded a one-GPU request for each train job, and for no other job" in output
