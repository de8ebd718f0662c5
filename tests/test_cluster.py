"""The workflow on a real SLURM cluster: tests/cluster/run_slurm_test.sh installs SLURM, starts a single-node
cluster, and runs the tiny pipeline with `--profile profiles/slurm` and locally, then compares the two.

It needs root and Debian's packages, and takes a few minutes, so it runs only with CONTRASTIVE_CLUSTER_TEST=1
(`make test-cluster`; `make test` sets it too). Where SLURM cannot be installed, the script prints
"SKIPPED: <reason>" and so does this test; the quick tests at the end prove each of those skips.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "cluster" / "run_slurm_test.sh"
TIMEOUT_S = 20 * 60

pytestmark = pytest.mark.cluster  # the full run is gated below; the skip checks are quick


SLURM_TARGETS = [f"results/models/{model}/reps-2-5/onset/model.pt" for model in ("contrastive_adabn", "lda")]


def run_script(local_dir: Path | None = None) -> tuple[int, str]:
    """Run the script in its own process group. On timeout, TERM lets its trap cancel jobs and stop the daemons.
    ``local_dir``: the suite's local tiny run, which the SLURM run is compared with (else the script runs one)."""
    env = dict(os.environ)
    if local_dir is not None:
        env["CLUSTER_TEST_LOCAL_DIR"] = str(local_dir)
        # Through SLURM, one network (a GPU job, cross-fitted AdaBN) and one LDA model (a CPU job) with the
        # conversions they need: each kind of resource request once. The profile's resources for every other rule
        # are checked without SLURM (test_the_slurm_profile_sets_resources_...), and the local run made the rest.
        env.setdefault("CLUSTER_TEST_TARGETS", " ".join(SLURM_TARGETS))
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
def test_pipeline_on_slurm_matches_local_run_and_only_networks_hold_a_gpu(capsys, tiny_run):
    returncode, output = run_script(tiny_run)
    with capsys.disabled():  # into the terminal (and CI's log) even when it passes: the sbatch calls are the proof
        print(f"\n----- {SCRIPT.name}\n{output}")
    skipped = [line for line in output.splitlines() if line.startswith("SKIPPED:")]
    if skipped:
        pytest.skip(skipped[-1].removeprefix("SKIPPED:").strip())
    assert returncode == 0, f"{SCRIPT.name} exited {returncode}:\n{failure_summary(output)}"
    assert "PASSED:" in output
    assert "OK: SLURM and local runs made byte-identical outputs" in output
    # The planned jobs (the script's dry run of tests/tiny_config.py): one train job per network model, fold and
    # window, one train_lda job per LDA fold and window.
    planned = re.search(r"^EXPECTED-JOBS: train=(\d+) train_lda=(\d+)$", output, re.MULTILINE)
    assert planned, output[-6000:]
    n_train, n_lda = map(int, planned.groups())
    assert n_train >= 1 and n_lda >= 1, planned.group(0)  # a network and LDA among the targets
    gpu_submissions = [line for line in output.splitlines() if line.startswith("SBATCH-GPU: sbatch call: sbatch ")]
    assert len(gpu_submissions) == n_train, output[-6000:]
    assert all("--gpus=1" in line and "rule_train_wildcards" in line for line in gpu_submissions), gpu_submissions
    cpu_submissions = [line for line in output.splitlines() if line.startswith("SBATCH-CPU: sbatch call: sbatch ")]
    assert len(cpu_submissions) == n_lda and not any("--gpus" in line for line in cpu_submissions), cpu_submissions
    # SLURM's own record (scontrol), not only what was asked for
    assert "OK: SLURM recorded a one-GPU request for each train job, and for no other job" in output


def failure_summary(output: str) -> str:
    """The daemon logs' last lines, then what the script said before them (the reason it failed), last: CI keeps
    only the end of an assertion message, and the daemon logs alone do not say what went wrong."""
    reason, marker, logs = output.partition("\nFAILED (exit")
    if not marker:
        return output[-6000:]
    return f"----- daemon logs, last lines\n{logs[-1500:]}\n----- the script's own output\n{reason[-6000:]}"


def run_quick(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_script_skips_with_its_reason_without_root():
    command = ["bash", str(SCRIPT)]
    if os.geteuid() == 0:  # drop to nobody, as a user without root would run it
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = run_quick(command, dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SKIPPED: needs root"), result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the apt-get check comes after the root check")
def test_script_skips_with_its_reason_without_apt_get(tmp_path):
    # A PATH with only the commands the script runs before looking for apt-get.
    for tool in ("id", "dirname", "date"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    result = run_quick(["/bin/bash", str(SCRIPT)], {**os.environ, "PATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SKIPPED: apt-get not found"), result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the install comes after the root check")
def test_script_skips_with_apt_gets_message_when_the_install_fails(tmp_path):
    # SLURM's commands are not on this PATH, so the script tries to install them; this apt-get always fails.
    for tool in ("id", "dirname", "date", "mktemp", "tail", "tr", "rm"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    apt_get = tmp_path / "apt-get"
    apt_get.write_text("#!/bin/sh\necho 'E: Unable to locate package slurm-wlm' >&2\nexit 100\n")
    apt_get.chmod(0o755)
    env = {**os.environ, "PATH": str(tmp_path), "VENV": str(Path(sys.prefix))}
    result = run_quick(["/bin/bash", str(SCRIPT)], env)
    assert result.returncode == 0, result.stderr
    assert "SKIPPED: could not install slurm-wlm and munge with apt-get" in result.stdout, result.stdout
    assert "Unable to locate package slurm-wlm" in result.stdout  # apt-get's own words, so the reason is clear


def test_the_slurm_profile_sets_resources_for_every_submitted_rule_and_no_other():
    """Each rule that runs as a SLURM job has its runtime and memory in profiles/slurm; a rule added without them
    would be submitted with the defaults (and the cluster test's set-resources check would fail late)."""
    import yaml

    sources = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    text = "\n".join(path.read_text() for path in sources)
    rules = set(re.findall(r"^(?:rule (\w+):|use rule \w+ as (\w+) with:)", text, re.MULTILINE))
    rules = {name for pair in rules for name in pair if name}
    block = re.search(r"^localrules:\n((?:    \w+,?\n)+)", text, re.MULTILINE)
    assert block, "the Snakefile's localrules block was not found"
    local = set(re.findall(r"\w+", block.group(1)))
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())["set-resources"]
    assert local <= rules, local - rules
    assert set(profile) == rules - local
    assert all({"runtime", "mem_mb"} <= set(values) for values in profile.values()), profile
