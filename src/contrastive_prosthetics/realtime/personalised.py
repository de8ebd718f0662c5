"""A model.pt personalised to one user from their calibration recording (the ``calibrate`` command):

    contrastive-prosthetics calibrate --model model.pt --database db2 --recording S1_E1_A1.mat S1_E2_A1.mat \
        --repetitions 1 --method prototypes --out personal/model.pt

Labelled (``--method``): each recording's first ``repetitions`` of every gesture, each with the rest before it
(NinaPro's ``rerepetition`` numbers them), or its first ``seconds`` (NinaPro's exercises repeat each movement in
turn, so the first seconds hold only the first gestures), with the labels the file holds (``restimulus``, as
replay reads them), calibrate the model by :meth:`.controller.Controller.calibrate`: the same code the pipeline's
calibration curve measures (:mod:`..learning.personalise`). Each class's frames to fit on are reported; a class of
the model with none is refused, unless ``keep_trained_gestures`` keeps its trained class embedding, and nothing is
written.

Unlabelled (``--unlabelled``): the calibration-free start. Only the user's EMG is read (the file's labels, if any,
never are): the batch norms of an AdaBN model adapt to it (method adabn) and the rest bias stays the model's, set
in training on validation subjects adapted alike (:meth:`.controller.Controller.calibrate_unlabelled`).

Calibration-free (``--calibration-free``): nothing of the user is read. An AdaBN model trained on other people
starts with the batch-norm statistics pooled over its training subjects and the rest bias set on its validation
subjects under them (model.pt's ``calibration_free``, :func:`.controller.calibration_free_start`).

The written model.pt decides for that user alone: its batch-norm statistics are theirs (``adabn`` false, so it
needs no further adaptation), its class embeddings or head and its rest bias too, and ``personalisation`` says how
it was made. A model with a pose class encoder calibrated by prototypes or fine_tune keeps the trained encoder
(``pose_encoder``): gestures are described to the written file as to the controller that calibrated.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.errors import InputError
from ..data.matfile import load_emg, load_recording
from ..data.ninapro import DatabaseSpec, movement_names
from ..learning.calibration_free import calibration_free_start
from ..learning.model_file import load_model_file, rest_target_of, write_personalised_file
from ..learning.personalise import CalibrationSettings
from ..learning.rest_bias import RestCalibration
from .controller import Controller
from .replay import recording_exercise, vote_frames


class Calibrated(NamedTuple):
    """What calibrating a model.pt gave: the rest calibration (None: the bias kept) and each class's frames fitted
    on (empty for an unlabelled calibration, which fits none)."""

    rest: RestCalibration | None
    fit_frames: dict[str, int]


def first_samples(path: Path, length: int, seconds: float | None, rate_hz: float) -> int:
    """How many samples the first ``seconds`` of a recording of ``length`` samples are (None: all); an error naming
    the file if that is not a positive part of it."""
    samples = length if seconds is None else round(seconds * rate_hz)
    if seconds is not None and (seconds <= 0 or samples > length):
        raise InputError(
            f"{path}: --seconds {seconds:g} must be positive and at most the recording's {length / rate_hz:.1f} s"
        )
    return samples


def labelled_recording(path: Path, spec: DatabaseSpec, seconds: float | None, max_length_mismatch: int = 100):
    """(raw EMG [sample, channel], each sample's class name, each sample's repetition number (``rerepetition``)) of
    a NinaPro-format recording, its first ``seconds`` (None: all of it)."""
    recording = load_recording(path, spec.n_channels, max_length_mismatch=max_length_mismatch)
    exercise = recording_exercise(spec, path)
    names = np.array(["rest", *movement_names(exercise)])[spec.global_labels(exercise, recording.restimulus, path)]
    samples = first_samples(path, len(recording.emg), seconds, spec.sampling_rate_hz)
    return recording.emg[:samples], names[:samples], recording.rerepetition[:samples]


def unlabelled_recording(path: Path, spec: DatabaseSpec, seconds: float | None) -> np.ndarray:
    """The raw EMG [sample, channel] of a NinaPro-format recording, its first ``seconds`` (None: all of it); the
    file's labels are not read and need not be there."""
    emg = load_emg(path, spec.n_channels)
    return emg[: first_samples(path, len(emg), seconds, spec.sampling_rate_hz)]


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
    repetitions: int | None = None,
    keep_trained_gestures: bool = False,
) -> Calibrated:
    """Calibrate ``model_path`` to the user of ``recordings`` (their first ``repetitions`` of every gesture, or
    their first ``seconds``, or all) and write the personalised model.pt (see the module). The guard band and the
    rest target are the model's, unless ``overrides`` gives ``guard_ms`` or ``rest_target`` (None: keep the bias);
    the written model records the values used. A refused calibration writes nothing."""
    if seconds is not None and repetitions is not None:
        raise InputError("calibrate on the first --seconds or the first --repetitions of every gesture, not both")
    saved = load_model_file(model_path)
    controller = Controller.from_model_file(model_path, spec, [], vote_frames(vote_ms, saved["frame_rate_hz"]))
    for name, value in (overrides or {}).items():
        if name not in ("guard_ms", "rest_target"):
            raise ValueError(f"calibrate_model_file overrides guard_ms or rest_target, not {name}")
        setattr(controller, name, value)
    labelled = [labelled_recording(Path(path), spec, seconds) for path in recordings]
    recorded_in = ", ".join(str(path) for path in recordings)
    calibration = controller.calibrate(labelled, method, settings, repetitions, keep_trained_gestures, recorded_in)
    write_calibrated(
        out_path,
        saved,
        controller,
        rest_bias=saved["rest_bias"] if calibration is None else calibration.bias,
        calibration=saved.get("calibration") if calibration is None else calibration.as_dict(),
        rest_false_activation_target=rest_target_of(saved) if calibration is None else controller.rest_target,
        guard_ms=controller.guard_ms,
        personalisation={
            "method": method,
            "recordings": [Path(path).name for path in recordings],
            "seconds": seconds,
            "repetitions": repetitions,
            "frames": controller.calibration_frames,
            "fit_frames": controller.fit_frames,
            "kept_trained": [name for name, count in controller.fit_frames.items() if count == 0],
            "unlabelled": False,
            "guard_ms": controller.guard_ms,
            "from_model": str(model_path),
        },
    )
    return Calibrated(calibration, controller.fit_frames)


def calibrate_unlabelled_model_file(
    model_path: Path,
    recordings: list[Path],
    spec: DatabaseSpec,
    out_path: Path,
    seconds: float | None = None,
    settings: CalibrationSettings | None = None,
) -> Calibrated:
    """The calibration-free start (see the module): ``model_path``'s batch norms adapted to the user of
    ``recordings`` (their first ``seconds``, or all), their labels unread, the rest bias kept; writes the model.pt."""
    saved = load_model_file(model_path)
    controller = Controller.from_model_file(model_path, spec, [], vote_frames(0.0, saved["frame_rate_hz"]))
    controller.calibrate_unlabelled([unlabelled_recording(Path(path), spec, seconds) for path in recordings], settings)
    write_calibrated(
        out_path,
        saved,
        controller,
        rest_bias=saved["rest_bias"],
        calibration=saved.get("calibration"),
        rest_false_activation_target=rest_target_of(saved),
        guard_ms=saved.get("guard_ms"),
        personalisation={
            "method": "adabn",
            "recordings": [Path(path).name for path in recordings],
            "seconds": seconds,
            "repetitions": None,
            "frames": controller.calibration_frames,
            "fit_frames": {},
            "kept_trained": [],
            "unlabelled": True,
            "guard_ms": None,
            "from_model": str(model_path),
        },
    )
    return Calibrated(None, {})


def calibration_free_model_file(model_path: Path, out_path: Path) -> None:
    """Write ``model_path``'s calibration-free start (see the module) as a model.pt that needs no adaptation."""
    saved = calibration_free_start(load_model_file(model_path), str(model_path))  # adabn, rest bias: the start's
    write_personalised_file(
        out_path,
        saved,
        state_dict={key: value.cpu() for key, value in saved["network"].state_dict().items()},
        personalisation={
            "method": "none",
            "recordings": [],
            "seconds": None,
            "repetitions": None,
            "frames": 0,
            "fit_frames": {},
            "kept_trained": [],
            "unlabelled": False,
            "guard_ms": None,
            "from_model": str(model_path),
        },
    )


def write_calibrated(out_path: Path, saved: dict, controller: Controller, **changes) -> None:
    """The controller's calibrated network as a model.pt (its statistics its own: ``adabn`` false), with the rest of
    ``saved`` (the model.pt it was read from) and ``changes``. A pose model calibrated by prototypes or fine_tune
    keeps its trained pose class encoder (``pose_encoder``), so that gestures can still be described to the file;
    ``pose_spread`` and ``unseen``, the rest of what describing needs, are ``saved``'s."""
    model, encoder = controller.network.model, controller.network.pose_encoder
    write_personalised_file(
        out_path,
        saved,
        state_dict={key: value.cpu() for key, value in model.state_dict().items()},
        pose_encoder=None if encoder is None else {key: value.cpu() for key, value in encoder.state_dict().items()},
        model_config=model.config.as_dict(),
        adabn=False,
        adaptation="none",
        adaptation_protocol="none",
        **changes,
    )
