"""A model.pt personalised to one user from their labelled calibration recording (the ``calibrate`` command):

    contrastive-prosthetics calibrate --model model.pt --database db2 --recording S1_E1_A1.mat S1_E2_A1.mat \
        --seconds 60 --method prototypes --out personal/model.pt

Each recording's first ``seconds`` (the first repetitions of every gesture: NinaPro's exercises repeat each
movement in turn) with the labels the file holds (``restimulus``, as replay reads them) calibrate the model by
:meth:`.controller.Controller.calibrate`: the same code the pipeline's calibration curve measures
(:mod:`..learning.personalise`). The written model.pt decides for that user alone: its batch-norm statistics are
theirs (``adabn`` false, so it needs no further adaptation), its class embeddings or head and its rest bias too,
and ``personalisation`` says how it was made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..data.matfile import load_recording
from ..data.ninapro import DatabaseSpec, movement_names
from ..learning.model_file import load_model_file, rest_target_of, write_personalised_file
from ..learning.personalise import CalibrationSettings
from ..learning.rest_bias import RestCalibration
from .controller import Controller
from .replay import recording_exercise, vote_frames


def labelled_recording(path: Path, spec: DatabaseSpec, seconds: float | None, max_length_mismatch: int = 100):
    """(raw EMG [sample, channel], each sample's class name) of a NinaPro-format recording, its first ``seconds``
    (None: all of it)."""
    recording = load_recording(path, spec.n_channels, max_length_mismatch=max_length_mismatch)
    exercise = recording_exercise(spec, path)
    names = np.array(["rest", *movement_names(exercise)])[spec.global_labels(exercise, recording.restimulus, path)]
    samples = len(recording.emg) if seconds is None else round(seconds * spec.sampling_rate_hz)
    if seconds is not None and (seconds <= 0 or samples > len(recording.emg)):
        raise InputError(
            f"{path}: --seconds {seconds:g} must be positive and at most the recording's "
            f"{len(recording.emg) / spec.sampling_rate_hz:.1f} s"
        )
    return recording.emg[:samples], names[:samples]


def calibrate_model_file(
    model_path: Path,
    recordings: list[Path],
    spec: DatabaseSpec,
    out_path: Path,
    method: str = "prototypes",
    seconds: float | None = None,
    vote_ms: float = 250.0,
    overrides: dict | None = None,
    settings: CalibrationSettings | None = None,
) -> RestCalibration | None:
    """Calibrate ``model_path`` to the user of ``recordings`` and write the personalised model.pt (see the module);
    returns the rest calibration. The guard band and the rest target are the model's, unless ``overrides`` gives
    ``guard_ms`` or ``rest_target`` (None: keep the bias); the written model records the values used."""
    saved = load_model_file(model_path)
    controller = Controller.from_model_file(model_path, spec, [], vote_frames(vote_ms, saved["frame_rate_hz"]))
    for name, value in (overrides or {}).items():
        if name not in ("guard_ms", "rest_target"):
            raise ValueError(f"calibrate_model_file overrides guard_ms or rest_target, not {name}")
        setattr(controller, name, value)
    labelled = [labelled_recording(Path(path), spec, seconds) for path in recordings]
    calibration = controller.calibrate(labelled, method, settings)
    model = controller.network.model
    frames = sum(len(emg) for emg, _ in labelled) // controller.maker.hop
    write_personalised_file(
        out_path,
        saved,
        state_dict={key: value.cpu() for key, value in model.state_dict().items()},
        model_config=model.config.as_dict(),
        adabn=False,
        adaptation="none",
        rest_bias=saved["rest_bias"] if calibration is None else calibration.bias,
        calibration=saved.get("calibration") if calibration is None else calibration.as_dict(),
        rest_false_activation_target=rest_target_of(saved) if calibration is None else controller.rest_target,
        guard_ms=controller.guard_ms,
        personalisation={
            "method": method,
            "recordings": [Path(path).name for path in recordings],
            "seconds": seconds,
            "frames": frames,
            "guard_ms": controller.guard_ms,
            "from_model": str(model_path),
        },
    )
    return calibration
