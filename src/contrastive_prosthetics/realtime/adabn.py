"""A deployed AdaBN model's batch-norm statistics: re-estimated on its user's unlabelled recording exactly as the
pipeline's AdaBN does, or given; never the ones training left behind.

Training an AdaBN model normalises each batch with one subject's own statistics, so the running statistics left in
``model.pt`` are a blend of the last training batches' subjects: no one's, and no evaluated number was scored with
them. The stream evaluation adapts each test subject on that subject's recording
(:func:`..learning.stream_scoring.adapted_network`); a deployed model adapts on its user's in the same way:

1. the frames the controller makes of the user's raw EMG (:class:`.frames.FrameMaker`, bit-identical to the stored
   stream), each with the ``context`` - 1 frames before it (the first frame repeated before the recording starts,
   as the controller and the stored stream do);
2. normalised as the scorer normalises them (:func:`..learning.inference.normalised_frames`);
3. every batch-norm layer re-estimated by :func:`..learning.models.adapt_batchnorm`, the pipeline's AdaBN.

Labels are never used: any stretch of the user's recording will do, best one in which they rest and make the
gestures they will use (the pipeline adapts on whole repetitions of every gesture).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import InputError
from ..data.matfile import load_recording
from ..data.ninapro import DatabaseSpec
from ..data.preprocess import PreprocessParams
from ..learning.dataset import Normalisation
from ..learning.inference import normalised_frames
from ..learning.models import adapt_batchnorm
from .frames import FrameMaker

# 1 s of 10 ms frames: fewer give statistics that move with every frame added (and the least the pipeline's
# training.adaptation_frames may be, by its schema).
MIN_ADAPTATION_FRAMES = 100
STATISTICS = ("running_mean", "running_var", "num_batches_tracked")  # a batch-norm layer's buffers


def unadapted_message(source: str) -> str:
    """Why an AdaBN model without adaptation refuses to decide, and what to pass."""
    return (
        f"{source}: an AdaBN model (adabn: true) has no batch-norm statistics of its own (those training left are a "
        "blend of the last training batches' subjects): adapt it to its user first. Pass adapt_on=<the user's "
        "unlabelled raw EMG [sample, channel], e.g. the first 100 s of a calibration recording> (or call "
        "controller.adapt(emg)), or batchnorm_state=<statistics estimated for this user>; on the command line, "
        "--adapt-on RECORDING.mat"
    )


def not_adabn_message(source: str) -> str:
    return (
        f"{source}: a model trained without AdaBN (adabn: false) decides with its training statistics, as it was "
        "evaluated; adapting them makes a model no evaluation scored: leave out adapt_on (--adapt-on)"
    )


def checked_emg(emg: np.ndarray, spec: DatabaseSpec, source: str) -> np.ndarray:
    """The EMG to adapt on as float64 [sample, channel]; an error naming ``source`` if it is not that, or not finite."""
    emg = np.asarray(emg, dtype=np.float64)
    if emg.ndim != 2 or emg.shape[1] != spec.n_channels:
        raise InputError(
            f"{source}: the EMG to adapt on has shape {emg.shape}; give raw EMG [sample, {spec.n_channels} channels] "
            f"of {spec.name} at {spec.sampling_rate_hz:g} Hz"
        )
    if not np.isfinite(emg).all():
        raise InputError(f"{source}: the EMG to adapt on holds NaN or infinite samples; cut them out first")
    return emg


def user_frames(emg: np.ndarray, spec: DatabaseSpec, params: PreprocessParams, context: int) -> torch.Tensor:
    """Raw EMG [sample, channel] → its frames [frame, channel] (context 1) or [frame, context, channel], oldest
    first, the first frame repeated before the recording starts."""
    maker = FrameMaker(spec.sampling_rate_hz, params, spec.already_rectified, spec.n_channels)
    frames = torch.from_numpy(maker.push(emg))
    if context == 1:
        return frames
    return frames[(torch.arange(len(frames))[:, None] + torch.arange(1 - context, 1)).clamp(min=0)]


def adapt_to_user(
    model: torch.nn.Module,
    normalisation: Normalisation,
    live: torch.Tensor,
    params: PreprocessParams,
    spec: DatabaseSpec,
    emg: np.ndarray,
    source: str,
) -> int:
    """Re-estimate ``model``'s batch-norm statistics, in place, on its user's unlabelled raw EMG (see the module);
    returns the number of frames adapted on. Errors name ``source`` (the model)."""
    frames = user_frames(checked_emg(emg, spec, source), spec, params, model.config.context)
    if len(frames) < MIN_ADAPTATION_FRAMES:
        raise InputError(
            f"{source}: {len(frames)} frames of EMG to adapt on; AdaBN needs at least {MIN_ADAPTATION_FRAMES} "
            "(1 s): give more of the user's recording (--adapt-seconds)"
        )
    adapt_batchnorm(model, normalised_frames(frames, normalisation, live))
    return len(frames)


def recording_emg(path: Path, spec: DatabaseSpec, seconds: float, max_length_mismatch: int = 100) -> np.ndarray:
    """The first ``seconds`` of a NinaPro-format recording's raw EMG (read and checked as replay reads its recording;
    the labels are never used); an error naming the file if it is shorter."""
    if not seconds > 0:
        raise InputError(f"--adapt-seconds {seconds:g}: adapt on a positive number of seconds (default 100)")
    emg = load_recording(path, spec.n_channels, max_length_mismatch=max_length_mismatch).emg
    samples = round(seconds * spec.sampling_rate_hz)
    if len(emg) < samples:
        raise InputError(
            f"{path}: {len(emg) / spec.sampling_rate_hz:.1f} s of EMG, shorter than the {seconds:g} s to adapt on; "
            "pass a smaller --adapt-seconds or a longer recording"
        )
    return emg[:samples]


def batchnorm_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s batch-norm statistics, as ``batchnorm_state`` takes them: save them after adapting, to deploy the
    same statistics again without the recording."""
    names = {
        f"{name}.{buffer}"
        for name, layer in model.named_modules()
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm)
        for buffer in STATISTICS
    }
    return {key: value.detach().clone() for key, value in model.state_dict().items() if key in names}


def load_batchnorm_state(model: torch.nn.Module, state: dict, source: str) -> None:
    """``state`` (every batch-norm layer's ``running_mean`` and ``running_var``; ``num_batches_tracked`` optional)
    into ``model``; a key that is no batch-norm statistic, a missing one or a wrong shape is an error naming
    ``source``, never silently ignored."""
    expected = batchnorm_state(model)
    unexpected = [key for key in state if key not in expected]
    missing = [key for key in expected if key not in state and not key.endswith("num_batches_tracked")]
    misshapen = [key for key in state if key in expected and torch.as_tensor(state[key]).shape != expected[key].shape]
    if unexpected or missing or misshapen:
        raise InputError(
            f"{source}: batchnorm_state does not fit the model: unexpected key(s) {unexpected}, missing {missing}, "
            f"wrong shape {misshapen}; give this model's batch-norm statistics (realtime.adabn.batchnorm_state of an "
            "adapted copy)"
        )
    # Every key checked above; loading the whole state back in keeps the load strict.
    model.load_state_dict(model.state_dict() | {key: torch.as_tensor(value) for key, value in state.items()})
