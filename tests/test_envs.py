"""Conda environments for `snakemake --sdm conda` stay pinned to the lock file's versions."""

import re

import yaml
from conftest import REPO

# conda-forge names that differ from the PyPI names in requirements.lock
CONDA_TO_PYPI = {"pytorch": "torch"}


def locked_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_every_env_file_parses_and_matches_the_lock_file():
    locked = locked_versions()
    env_files = sorted((REPO / "envs").glob("*.yaml"))
    assert env_files
    for path in env_files:
        env = yaml.safe_load(path.read_text())
        assert "conda-forge" in env["channels"], path
        pinned = [d for d in env["dependencies"] if isinstance(d, str) and "=" in d and not d.startswith("python=")]
        assert pinned, path
        for dependency in pinned:
            name, version = dependency.split("=")[:2]
            pypi = CONDA_TO_PYPI.get(name, name).lower()
            assert pypi in locked, f"{path.name}: {name} is not in requirements.lock"
            assert locked[pypi] == version, f"{path.name}: {name}={version}, requirements.lock has {locked[pypi]}"


def test_every_rule_names_a_conda_environment_that_exists():
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    n_rules = len(re.findall(r"^rule \w+:", rules, flags=re.MULTILINE))
    envs = re.findall(r'conda:\s*\n\s*"([^"]+)"', rules)
    assert len(envs) == n_rules
    for env in envs:
        assert (REPO / "workflow" / "rules" / env).resolve().is_file(), env
