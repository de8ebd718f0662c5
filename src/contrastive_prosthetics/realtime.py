"""Real-time control: raw EMG in, one decision per frame out, as a prosthesis controller runs.

The pieces, each shared with the offline stream evaluation (:mod:`.stream`) so that offline numbers are the
device's numbers:

``FrameMaker``    raw EMG chunks of any length → the frames conversion stores in the stream, bit for bit: the same
                  causal band-pass, its state carried across chunks, and the moving RMS from the same running sum
                  of squares (DB1's envelopes are their own frames).
``FrameScorer``   frames (with the ``context`` - 1 frames before each) → logits over every class, one frame at a
                  time: the normalisation of training, then the network, in a fixed order, so that a frame's
                  scores do not depend on how many frames were scored with it.
``decide``        logits → each frame's decision among the chosen gestures + rest: the most similar class, then a
                  causal majority vote over the last ``vote_frames`` decisions (ties to the larger summed score,
                  then the lower class index).
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

from .dataset import Normalisation
from .errors import InputError
from .models import ModelConfig, batchnorm_layers, build_model
from .ninapro import REST, DatabaseSpec
from .preprocess import PreprocessParams, bandpass_sos, hop_samples


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


class InferenceNetwork:
    """A trained network for scoring one frame at a time, fast: every batch-norm layer (eval statistics) folded
    into the convolution or linear layer before it, the class embeddings and temperature computed once, so that a
    frame costs a dozen tensor operations. Its scores equal the model's to float rounding (1e-5); the controller
    and the stream evaluation both use it, so their decisions are the same."""

    def __init__(self, model: torch.nn.Module):
        encoder = model.emg_encoder
        convolutions = [m for m in encoder.convolutions if isinstance(m, torch.nn.Conv1d)]
        conv_norms = [m for m in encoder.convolutions if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        linears = [m for m in encoder.layers if isinstance(m, torch.nn.Linear)]
        norms = [m for m in encoder.layers if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        with torch.no_grad():
            self.convolutions = [
                _folded(c.weight, c.bias, n, conv=True) for c, n in zip(convolutions, conv_norms, strict=True)
            ]
            folded = [_folded(linear.weight, linear.bias, norm) for linear, norm in zip(linears, norms, strict=False)]
            self.hidden = folded  # linear + batch norm + ReLU each
            self.projection = (linears[-1].weight.detach().clone(), linears[-1].bias.detach().clone())
            if hasattr(model, "encode_classes"):
                self.classes = (model.scale() * model.encode_classes()).T.contiguous()
                self.head = None
            else:
                self.classes = None
                self.head = (model.head.weight.detach().clone(), model.head.bias.detach().clone())

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1) if x.dim() == 2 else x
        for weight, bias in self.convolutions:
            x = torch.relu(torch.nn.functional.conv1d(x, weight, bias, padding=1))
        x = x.flatten(1)
        for weight, bias in self.hidden:
            x = torch.relu(torch.nn.functional.linear(x, weight, bias))
        x = torch.nn.functional.linear(x, *self.projection)
        if self.head is not None:
            return torch.nn.functional.linear(x, *self.head)
        return torch.nn.functional.normalize(x, dim=-1) @ self.classes


def _folded(weight: torch.Tensor, bias: torch.Tensor, norm, conv: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a layer followed by batch norm in eval mode, as one layer."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shape = (-1, 1, 1) if conv else (-1, 1)
    return (weight * scale.view(shape)).detach().clone(), (
        (bias - norm.running_mean) * scale + norm.bias
    ).detach().clone()


class FrameScorer:
    """Raw frames with their context [n, context, channel] ([n, channel] for a context of 1) → logits over every
    class [n, class], frame by frame. ``network`` is a torch model (with ``normalisation`` applied first) or an
    exported network with the normalisation baked in (``normalisation`` None, see :mod:`.export`)."""

    def __init__(
        self,
        network,
        normalisation: Normalisation | None,
        live_channels: torch.Tensor,
        n_classes: int,
        fast: bool = True,
    ):
        if isinstance(network, torch.nn.Module):  # a package model folds; an exported one runs as it is
            fold = fast and hasattr(network, "emg_encoder")
            network = InferenceNetwork(network.eval()) if fold else network.eval()
        self.network = network
        self.normalisation = normalisation
        self.live = torch.as_tensor(live_channels, dtype=torch.bool)
        self.n_classes = n_classes

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, batch: int = 1) -> torch.Tensor:
        """Scores ``batch`` frames per network call: 1 as a controller does (each frame as it arrives); offline, a
        large batch is 30-100x faster. The arithmetic is the same, but a matrix product over many rows may round
        differently from one over a single row, so scores agree to float rounding (1e-6), not always bit for bit.
        """
        frames = torch.as_tensor(frames, dtype=torch.float32)
        out = []
        for start in range(0, len(frames), batch):
            x = frames[start : start + batch]
            x = x if self.normalisation is None else torch.where(self.live, self.normalisation.apply(x), 0.0)
            out.append(torch.as_tensor(self.network(x)).float())
        return torch.cat(out) if out else torch.zeros((0, self.n_classes))


def allowed_classes(classes: list[str], gestures: list[str]) -> torch.Tensor:
    """[class] mask of the chosen gestures, plus rest (a prosthesis must be able to do nothing)."""
    unknown = [g for g in gestures if g not in classes]
    if unknown:
        raise InputError(f"unknown gesture(s) {unknown}; the model knows {classes[1:]}")
    return torch.tensor([name == REST or name in gestures for name in classes])


def decide(logits: torch.Tensor, allowed: torch.Tensor, vote_frames: int) -> torch.Tensor:
    """Decisions of consecutive frames [frame, class] → [frame] class indices: each frame's most similar allowed
    class, then a causal majority vote over the last ``vote_frames`` of them (fewer at the start; 0 or 1: no
    vote). A tie in votes goes to the larger summed score over those frames, then to the lower class index.

    Score sums run oldest to newest in float64 from zero, so the decision of frame t is the same whether the frames
    before it are scored in one call (offline) or kept by a controller (the last ``vote_frames`` of them).
    """
    n = max(vote_frames, 1)
    n_frames, n_classes = logits.shape
    predictions = logits.masked_fill(~allowed, -torch.inf).argmax(1)
    cumulative = torch.nn.functional.one_hot(predictions, n_classes).cumsum(0)
    before = torch.cat((torch.zeros((n, n_classes), dtype=cumulative.dtype), cumulative))[:n_frames]
    counts = cumulative - before  # votes over the last n frames
    scores, sums = logits.double(), torch.zeros((n_frames, n_classes), dtype=torch.float64)
    for back in range(min(n, n_frames) - 1, -1, -1):
        sums[back:] += scores[: n_frames - back]
    tied = (counts == counts.amax(1, keepdim=True)) & allowed
    best = sums.masked_fill(~tied, -torch.inf)
    return (best == best.amax(1, keepdim=True)).to(torch.uint8).argmax(1)


def decide_latest(latest: np.ndarray, allowed: np.ndarray, vote_frames: int) -> int:
    """:func:`decide`'s decision for the last of the frames ``latest`` [frame, class] (float32 logits, at least
    the last ``vote_frames``), in numpy: the same arithmetic, in the same order, at a fraction of the cost."""
    window = latest[-max(vote_frames, 1) :]
    predictions = np.where(allowed, window, -np.inf).argmax(1)
    counts = np.bincount(predictions, minlength=window.shape[1])
    sums = np.zeros(window.shape[1])
    for row in window:  # oldest first, from zero, in float64: as decide does
        sums += row.astype(np.float64)
    best = np.where((counts == counts.max()) & allowed, sums, -np.inf)
    return int(np.argmax(best == best.max()))


class Controller:
    """A trained network as a prosthesis controller: raw EMG chunks in, decisions (class names) out.

    Build it from a torch model (:meth:`from_model`, :meth:`from_model_file`) or from an exported one
    (:meth:`.export.exported_controller`); ``spec`` says what the recording is (its rate, whether it arrives
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
    ) -> Controller:
        """A controller of a torch model, with given batch-norm statistics or running ones (see the module)."""
        model = copy.deepcopy(model).eval()  # the caller's model is left as it was
        if batchnorm_state is not None:
            model.load_state_dict(batchnorm_state, strict=False)
        if online_adaptation is not None:
            track_statistics(model, online_adaptation)
        live = torch.ones(spec.n_channels, dtype=torch.bool) if live_channels is None else live_channels
        # Running statistics change the batch norms as frames arrive: then the network cannot be folded.
        scorer = FrameScorer(model, normalisation, live, len(classes), fast=online_adaptation is None)
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
            **options,
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


def load_model_file(path: Path) -> dict:
    """A network's ``model.pt`` with its ``network`` (eval mode) and ``normalisation_`` built."""
    saved = torch.load(Path(path), map_location="cpu", weights_only=False)
    if "state_dict" not in saved:
        raise InputError(f"{path}: not a network's model.pt (an LDA model cannot run in the controller)")
    model = build_model(ModelConfig(**saved["model_config"]))
    model.load_state_dict(saved["state_dict"])
    return saved | {"network": model.eval(), "normalisation_": Normalisation.from_state_dict(saved["normalisation"])}
