"""Real-time control: raw EMG in, one decision per frame out, as a prosthesis controller runs.

The pieces, each shared with the offline stream evaluation (:mod:`..evaluation.stream`) so that offline numbers are
the device's numbers:

``FrameMaker``    raw EMG chunks of any length → the frames conversion stores in the stream, bit for bit: the same
                  causal band-pass, its state carried across chunks, and the moving RMS from the same running sum
                  of squares (DB1's envelopes are their own frames).
``FrameScorer``   frames (with the ``context`` - 1 frames before each) → logits over every class, one frame at a
                  time (:mod:`..learning.inference`).
``decide``        logits → each frame's decision among the chosen gestures + rest: the most similar class, then a
                  causal majority vote over the last ``vote_frames`` decisions (ties to the larger summed score,
                  then the lower class index) (:mod:`..learning.decisions`).
``Controller``    all three, fed chunks: ``push(chunk)`` returns the decisions of the frames the chunk completed;
                  ``choose(gestures)`` changes the chosen gestures with no retraining. Decisions are identical
                  whether a recording is fed sample by sample, in 10 ms chunks or whole (a test proves it).

Adaptation: a model trained with AdaBN is given the batch-norm statistics to use (``batchnorm_state``, e.g. those
the offline evaluation estimated on the user's other recordings), or, with ``online_adaptation`` (a momentum),
keeps updating running estimates of every batch-norm layer's input mean and variance from the stream as it runs
(each frame moves them by that fraction): personalisation that needs no labels and no backpropagation.
"""

from __future__ import annotations

import copy
from collections import deque
from pathlib import Path

import numpy as np
import scipy.signal
import torch

from ..core.errors import InputError
from ..data.ninapro import DatabaseSpec
from ..data.preprocess import PreprocessParams, bandpass_sos, hop_samples
from ..learning.dataset import Normalisation
from ..learning.decisions import allowed_classes, decide_latest
from ..learning.inference import FrameScorer
from ..learning.model_file import load_model_file
from ..learning.models import batchnorm_layers
from ..learning.stream_scoring import class_bias


class FrameMaker:
    """Raw EMG [sample, channel] chunks → completed frames [frame, channel] float32, as conversion makes them."""

    def __init__(self, sampling_rate_hz: float, params: PreprocessParams, already_rectified: bool, n_channels: int):
        if params.rms_alignment != "causal":
            raise InputError("a controller needs preprocess.rms_alignment: causal (a centred RMS reads the future)")
        self.hop = hop_samples(sampling_rate_hz, params)
        self.rectified = already_rectified
        self.n_channels = n_channels
        self.samples = 0
        if not already_rectified:
            self.sos = bandpass_sos(sampling_rate_hz, params)
            self.state = np.zeros((self.sos.shape[0], 2, n_channels))
            self.window = round(params.rms_window_ms * sampling_rate_hz / 1000)
            # Running sums of squares R[i] = sum of the first i squared samples, for i from `base` to `samples`.
            self.running = np.zeros((1, n_channels))
            self.base = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float64).reshape(-1, self.n_channels)
        start = self.samples
        self.samples += len(chunk)
        ends = np.arange(start, self.samples)
        ends = ends[(ends + 1) % self.hop == 0]  # the last sample of each frame the chunk completes
        if self.rectified:
            return chunk[ends - start].astype(np.float32)
        filtered, self.state = scipy.signal.sosfilt(self.sos, chunk, axis=0, zi=self.state)
        # Continue the running sum exactly as conversion's one cumulative sum over the whole recording does.
        new = np.cumsum(np.concatenate((self.running[-1:], filtered * filtered)), axis=0)[1:]
        running = np.concatenate((self.running, new))
        upper = ends + 1 - self.base
        lower = np.maximum(ends + 1 - self.window, 0) - self.base
        total = running[upper] - running[lower]
        keep = max(self.samples - self.window, 0)
        self.running, self.base = running[keep - self.base :], keep
        return np.sqrt(np.maximum(total, 0.0) / self.window).astype(np.float32)


class Controller:
    """A trained network as a prosthesis controller: raw EMG chunks in, decisions (class names) out.

    Build it from a torch model (:meth:`from_model`, :meth:`from_model_file`) or from an exported one
    (:func:`.export.exported_controller`); ``spec`` says what the recording is (its rate, whether it arrives
    rectified), ``gestures`` which gestures the user wants now, ``vote_frames`` how many decisions the vote spans.
    """

    def __init__(
        self,
        scorer: FrameScorer,
        classes: list[str],
        params: PreprocessParams,
        spec: DatabaseSpec,
        gestures: list[str],
        vote_frames: int,
        context: int,
    ):
        self.scorer = scorer
        self.classes = list(classes)
        self.context = context
        self.vote_frames = vote_frames
        self.maker = FrameMaker(spec.sampling_rate_hz, params, spec.already_rectified, spec.n_channels)
        self.live = scorer.live
        self.frames: deque = deque(maxlen=context)  # the latest raw frames, for the encoder's context
        self.scores: deque = deque(maxlen=max(vote_frames, 1))  # the latest frames' logits, for the vote
        self.choose(gestures)

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        normalisation: Normalisation,
        classes: list[str],
        params: PreprocessParams,
        spec: DatabaseSpec,
        gestures: list[str],
        vote_frames: int,
        live_channels: torch.Tensor | None = None,
        batchnorm_state: dict | None = None,
        online_adaptation: float | None = None,
        rest_bias: float = 0.0,
    ) -> Controller:
        """A controller of a torch model, with given batch-norm statistics or running ones (see the module)."""
        model = copy.deepcopy(model).eval()  # the caller's model is left as it was
        if batchnorm_state is not None:
            model.load_state_dict(batchnorm_state, strict=False)
        if online_adaptation is not None:
            track_statistics(model, online_adaptation)
        live = torch.ones(spec.n_channels, dtype=torch.bool) if live_channels is None else live_channels
        # Running statistics change the batch norms as frames arrive: then the network cannot be folded.
        bias = class_bias(classes, rest_bias)  # the calibrated rest bias of model.pt (0: none)
        scorer = FrameScorer(model, normalisation, live, len(classes), fast=online_adaptation is None, bias=bias)
        return cls(scorer, classes, params, spec, gestures, vote_frames, model.config.context)

    @classmethod
    def from_model_file(cls, path: Path, spec: DatabaseSpec, gestures: list[str], vote_frames: int, **options):
        """A controller of a ``model.pt`` written by training (networks only)."""
        saved = load_model_file(path)
        return cls.from_model(
            saved["network"],
            saved["normalisation_"],
            saved["classes"],
            PreprocessParams(**saved["preprocess"]),
            spec,
            gestures,
            vote_frames,
            **{"rest_bias": saved.get("rest_bias", 0.0), **options},
        )

    def choose(self, gestures: list[str]) -> None:
        """The gestures the user wants now (rest is always added); no retraining, the vote starts afresh."""
        self.allowed = allowed_classes(self.classes, gestures)
        self.allowed_mask = self.allowed.numpy()
        self.scores.clear()

    def push(self, chunk: np.ndarray) -> list[str]:
        """Feed raw EMG [sample, channel] (any number of samples); returns the decisions of completed frames."""
        frames = self.maker.push(chunk)
        frames[:, ~self.live.numpy()] = 0.0
        decisions = []
        for frame in torch.from_numpy(frames):
            if not self.frames:  # before the recording's first frame the context repeats it, as offline
                self.frames.extend([frame] * self.context)
            self.frames.append(frame)
            window = torch.stack(list(self.frames))[None]  # [1, context, channel]
            self.scores.append(self.scorer(window if self.context > 1 else window[:, 0])[0].numpy())
            latest = decide_latest(np.stack(self.scores), self.allowed_mask, self.vote_frames)
            decisions.append(self.classes[latest])
        return decisions


def track_statistics(model: torch.nn.Module, momentum: float) -> None:
    """Running estimates of every batch-norm layer's input statistics, each frame moving them by ``momentum``."""

    def update(layer, inputs):
        x = inputs[0].detach()
        dims = (0, 2) if x.dim() == 3 else (0,)
        shape = (1, -1, 1) if x.dim() == 3 else (1, -1)
        layer.running_mean.lerp_(x.mean(dims), momentum)
        layer.running_var.lerp_(((x - layer.running_mean.view(shape)) ** 2).mean(dims), momentum)

    for layer in batchnorm_layers(model):
        layer.register_forward_pre_hook(update)
