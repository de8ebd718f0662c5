"""Shared test fixtures: small hand-made NinaPro-format recordings whose every sample the test controls, and the
one tiny pipeline run that the read-only workflow tests share."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
import scipy.io
from snakemake_runs import snakemake, write_config
from tiny_config import tiny

from contrastive_prosthetics.config import default_config
from contrastive_prosthetics.data.preprocess import PreprocessParams

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = default_config()
# The default run's preprocessing (config.yaml is the one home of its values), with its first window only, which
# the hand-made recordings here are long enough for; dataclasses.replace varies it.
FIRST_WINDOW = next(iter(DEFAULT_CONFIG["preprocess"]["windows"]))
PREPROCESS = PreprocessParams(
    **{
        **DEFAULT_CONFIG["preprocess"],
        "windows": {FIRST_WINDOW: DEFAULT_CONFIG["preprocess"]["windows"][FIRST_WINDOW]},
    }
)
DB1_DIR = Path(os.environ.get("NINAPRO_DB1_DIR", REPO.parent / "shared" / "ninapro" / "db1"))


@dataclass
class Protocol:
    """Label vectors of a NinaPro-like session: rest, then each movement's repetitions, rest in between."""

    stimulus: np.ndarray
    restimulus: np.ndarray
    repetition: np.ndarray
    rerepetition: np.ndarray


def make_protocol(
    labels: list[int],
    repetitions: int,
    movement_samples: int,
    rest_samples: int,
    rerepetition_in_rest: str = "zero",
    relabel_trim: int = 0,
) -> Protocol:
    """Cued movements of ``movement_samples``; the relabelled movement is trimmed by ``relabel_trim`` at each end."""
    stimulus, restimulus, repetition, rerepetition = [], [], [], []
    for label in labels:
        for rep in range(1, repetitions + 1):
            rest_rep = rep if rerepetition_in_rest == "repetition" else 0
            stimulus += [0] * rest_samples
            restimulus += [0] * rest_samples
            repetition += [0] * rest_samples
            rerepetition += [rest_rep] * rest_samples
            stimulus += [label] * movement_samples
            repetition += [rep] * movement_samples
            moving = movement_samples - 2 * relabel_trim
            restimulus += [0] * relabel_trim + [label] * moving + [0] * relabel_trim
            rerepetition += [rest_rep] * relabel_trim + [rep] * moving + [rest_rep] * relabel_trim
    for values in (stimulus, restimulus, repetition, rerepetition):
        values += [0] * rest_samples
    as_column = [np.array(v, dtype=np.uint8)[:, None] for v in (stimulus, restimulus, repetition, rerepetition)]
    return Protocol(*as_column)


def emg_for(protocol: Protocol, n_channels: int, seed: int = 0, rectified: bool = False) -> np.ndarray:
    """Noise whose per-channel amplitude depends on the movement, so every class looks different."""
    rng = np.random.default_rng(seed)
    labels = protocol.restimulus[:, 0].astype(int)
    gains = 1.0 + rng.random((labels.max() + 1, n_channels)) * 4
    gains[0] = 0.3
    noise = rng.standard_normal((len(labels), n_channels))
    emg = noise * gains[labels]
    return np.abs(emg) if rectified else emg


def write_mat(path: Path, protocol: Protocol, signals: np.ndarray, **overrides) -> Path:
    """Write a NinaPro-format file; ``overrides`` replace fields (None drops one)."""
    fields = {
        "emg": signals,
        "glove": np.zeros((len(signals), 22)),
        "stimulus": protocol.stimulus,
        "restimulus": protocol.restimulus,
        "repetition": protocol.repetition,
        "rerepetition": protocol.rerepetition,
        "subject": np.array([[1.0]]),
        "exercise": np.array([[1.0]]),
    }
    for name, value in overrides.items():
        if value is None:
            del fields[name]
        else:
            fields[name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, fields, do_compression=True)
    return path


# Under pytest-xdist (`make test` runs two workers), the test files that share an expensive fixture go to one worker
# as one unit, so that the fixture is made once; every other test is scheduled on its own. (xdist's own
# `--dist loadgroup` marks do not reach its scheduler under pytest 9, whose node ids are no longer strings.)
SHARED_FIXTURE_GROUPS = {
    "test_cluster.py": "tiny_run",
    "test_workflow.py": "tiny_run",
    "test_odd_configs.py": "raw",
    "test_personalise.py": "two_runs",  # two models trained and calibrated
    "test_stream_zero_shot.py": "zero_shot_model",  # a pose model trained
    "test_figures.py": "figures",  # every figure drawn
}


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return SHARED_FIXTURE_GROUPS.get(Path(nodeid.split("::")[0]).name, nodeid)

    return SharedFixtureScheduling(config, log)


# Markers whose tests are slow by nature (snakemake runs, the real recordings, SLURM): `-m "not slow"` leaves them out.
SLOW_MARKERS = ("workflow", "realdata", "cluster")


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(name) for name in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The workflow's default target run once on the tiny configuration (tests/tiny_config.py), for every test
    that only reads its outputs (tests/test_workflow.py, the SLURM test's local side). Tests must not change it.
    Under pytest-xdist their files run on one worker (:data:`SHARED_FIXTURE_GROUPS`), so that it is made once."""
    workdir = write_config(tmp_path_factory.mktemp("tiny-run"), tiny)
    result = snakemake(workdir)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (workdir / "first-run.log").write_text(result.stdout + result.stderr)
    return workdir


@pytest.fixture
def db1_dir() -> Path:
    if not DB1_DIR.is_dir():
        pytest.skip(f"real NinaPro DB1 files not found in {DB1_DIR} (set NINAPRO_DB1_DIR)")
    return DB1_DIR


def first_window(tensors: dict) -> dict:
    """A converted subject with its first window's segments (emg, features, glove, segment_start) at the top."""
    from contrastive_prosthetics.data import tensor_file

    return tensor_file.window_of(tensors, tensor_file.first_window(tensors))


SVG = "{http://www.w3.org/2000/svg}"


def check_figure(stem: Path, panels: int, texts: Iterable[str] = ()) -> str:
    """The figure ``stem``.png and ``stem``.svg as the report shows them: a PNG with something drawn in it, an SVG
    with ``panels`` axes (matplotlib's ``axes_N`` groups; a colour bar is one too) holding each of ``texts``
    (the report style writes text as text). Returns the SVG."""
    from matplotlib.image import imread

    image = imread(stem.with_name(f"{stem.name}.png"))
    assert image.ndim == 3 and min(image.shape[:2]) >= 200, (stem, image.shape)
    assert image[..., :3].std() > 0.01, f"{stem}.png is blank"
    svg = stem.with_name(f"{stem.name}.svg").read_text()
    groups = ElementTree.fromstring(svg).iter(f"{SVG}g")
    drawn = sum(bool(re.fullmatch(r"axes_\d+", group.get("id", ""))) for group in groups)
    assert drawn == panels, f"{stem}.svg has {drawn} axes, not {panels}"
    missing = [text for text in texts if text not in svg]
    assert not missing, f"{missing} missing from {stem}.svg"
    return svg
