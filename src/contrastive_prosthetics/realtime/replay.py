"""Replay a recording through the controller: a decision timeline of true and decided gesture.

    contrastive-prosthetics replay --model model.pt --recording S1_E1_A1.mat --database db2 --gestures B1 B6 B13 \
        --vote-ms 100 --out timeline.tsv --adapt-on S1_E1_A1.mat   # an AdaBN model: its first 100 s adapt it

The recording's raw EMG is fed in 10 ms chunks, as a device would deliver it; each frame's decision is written
beside the relabelled movement at that frame (``restimulus`` at its last sample) and the time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import atomic_write_frame
from ..core.errors import InputError
from ..core.units import ms_to_frames
from ..data.matfile import load_recording
from ..data.ninapro import DatabaseSpec, exercise_from_file_name, movement_names
from ..evaluation.voting import window_frames_for
from ..learning.model_file import read_network_file
from .controller import Controller

CHUNK_MS = 10


def subject_number(path: Path) -> int:
    """The subject number a NinaPro file name starts with (``S3_...``)."""
    found = re.match(r"S(\d+)_", Path(path).name)
    if not found:
        raise InputError(f"{path}: not a NinaPro file name (S<subject>_...); rename it as NinaPro names it")
    return int(found.group(1))


def recording_exercise(spec: DatabaseSpec, path: Path) -> str:
    """The exercise a NinaPro file name holds (``S1_E2_A1.mat``: exercise C of DB2)."""
    return exercise_from_file_name(spec, subject_number(path), Path(path).name)


def recording_subject(spec: DatabaseSpec, path: Path) -> str:
    """The subject a NinaPro file name names, as the pipeline names subjects (``S3_A1_E1.mat`` of DB1: ``db1/s3``)."""
    return f"{spec.name}/s{subject_number(path)}"


def controller_for(
    model: Path,
    spec: DatabaseSpec,
    gestures: list[str],
    vote_ms: float,
    backend: str,
    adapt_on: np.ndarray | None = None,
    subject: str | None = None,
    descriptions: dict[str, np.ndarray] | None = None,
) -> Controller:
    """The controller of a network's ``model.pt``, or of an export folder run by ``backend``; the vote spans
    ``vote_ms`` at the model's frame rate (0: no vote). An AdaBN ``model.pt`` is adapted on ``adapt_on`` (the
    user's raw EMG, :func:`.adabn.recording_emg`), and refused now, before anything is replayed, without it. A
    ``model.pt`` decides ``subject``'s recording with their own rest bias where it has one, and the gestures of
    ``descriptions`` (name → pose, :meth:`.controller.Controller.describe`) among ``gestures`` if chosen there."""
    controller = described_controller(model, spec, gestures, vote_ms, backend, adapt_on, subject, descriptions or {})
    controller.choose(gestures)
    return controller


def described_controller(model, spec, gestures, vote_ms, backend, adapt_on, subject, descriptions) -> Controller:
    """:func:`controller_for`'s controller, choosing the ``gestures`` it has before ``descriptions`` are given."""
    gestures = [name for name in gestures if name not in descriptions]
    model = Path(model)
    if model.is_dir():
        from .export import DEPLOYMENT_NAME, exported_controller

        if adapt_on is not None:
            raise InputError(
                f"{model}: an export folder carries the batch-norm statistics it was exported with; adapt when "
                "exporting (export --adapt-on), or replay the model.pt with --adapt-on"
            )
        rate = json.loads((model / DEPLOYMENT_NAME).read_text())["frame_rate_hz"]
        controller = exported_controller(model, spec, gestures, vote_frames(vote_ms, rate), backend)
    else:
        rate = read_network_file(model)["frame_rate_hz"]
        options = {"adapt_on": adapt_on, "subject": subject}
        controller = Controller.from_model_file(model, spec, gestures, vote_frames(vote_ms, rate), **options)
    if controller.unadapted is not None:
        raise InputError(controller.unadapted)
    for name, pose in descriptions.items():
        controller.describe(name, pose)
    return controller


def vote_frames(vote_ms: float, frame_rate_hz: float) -> int:
    return 0 if vote_ms == 0 else window_frames_for(vote_ms, frame_rate_hz)


def replay(controller: Controller, recording_path: Path, spec: DatabaseSpec, max_length_mismatch: int) -> pd.DataFrame:
    """The controller's decision for every frame of a recording, beside the truth: frame, time_s, true, decided."""
    recording = load_recording(recording_path, spec.n_channels, max_length_mismatch=max_length_mismatch)
    exercise = recording_exercise(spec, recording_path)
    movements = spec.global_labels(exercise, recording.restimulus, recording.source)
    names = ["rest", *movement_names(exercise)]
    chunk = max(ms_to_frames(CHUNK_MS, spec.sampling_rate_hz), 1)
    decided = []
    for start in range(0, len(recording.emg), chunk):
        decided += controller.push(recording.emg[start : start + chunk])
    ends = (np.arange(len(decided)) + 1) * controller.maker.hop - 1
    return pd.DataFrame(
        {
            "frame": np.arange(len(decided)),
            "time_s": ends / spec.sampling_rate_hz,
            "true": [names[m] for m in movements[ends]],
            "decided": decided,
        }
    )


def replay_to_file(
    controller: Controller, recording_path: Path, spec: DatabaseSpec, out_tsv: Path, max_length_mismatch: int = 100
) -> pd.DataFrame:
    """:func:`replay`, written as a TSV timeline (its figure is the report's: :mod:`..report.replay_figure`)."""
    timeline = replay(controller, Path(recording_path), spec, max_length_mismatch)
    atomic_write_frame(timeline, Path(out_tsv))
    return timeline
