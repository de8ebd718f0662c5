"""Few-shot calibration: a network trained on other people, fitted to one new user from a short labelled recording
(each gesture performed once or a few times), with no retraining of the encoder.

Methods (each a named option of ``calibration.methods``; each builds on the one before it):

``adabn``       every batch-norm layer's statistics re-estimated on the user's calibration recording, labels unread
                (:func:`.models.adapt_batchnorm`): what a controller can do with no labels at all.
``prototypes``  AdaBN, then each class's embedding replaced by (``prototype_weight`` 1) or blended with the mean
                embedding of the user's calibration frames of that class: the contrastive model's class space is
                made for it (a classifier's softmax head has no class embeddings to replace, so it has no
                prototypes).
``fine_tune``   AdaBN and prototypes, then the class embeddings (contrastive, starting from the prototypes) or the
                softmax head (classifier, from the trained one) trained for ``fine_tune_steps`` full-batch Adam
                steps on the calibration frames, the encoder frozen: its embeddings of the calibration frames are
                computed once, so a step costs microseconds.

A class with no calibration frame keeps its trained embedding (prototypes) or its trained embedding or head row
(fine_tune: it would otherwise move, as every other class's negative): the controller refuses such a recording
unless told to keep them (:meth:`..realtime.controller.Controller.calibrate`, ``keep_trained_gestures``).

``fine_tune_network`` AdaBN and prototypes, then every weight trained on the calibration repetitions' stream for
                ``scratch_epochs`` epochs of the run's training budget, as the network trained from scratch is
                (:func:`.calibration_baselines.network_on_user`): the same budget from the weights learnt on other
                people instead of random ones. It needs the training settings, so the calibration curve runs it;
                :func:`personalise` (the controller's) the three above.

``transfer``    AdaBN and prototypes, then the network fine-tuned by a recipe of its own (:mod:`.transfer`), chosen
                among ``calibration.transfer``'s on the fold's validation subjects as new users. The curve runs it too.

A personalised contrastive model keeps its class embeddings as a one-hot class encoder whose weights are the
embeddings (exact: the class encoder's output is normalised), whatever encoder it was trained with.

Frames and labels: every frame of the calibration repetitions' continuous recording adapts the batch norms (in
time, as a controller would record them); the labelled ones outside ``guard_ms`` of every change of label (the
guard band of stream training, :func:`.stream_sampling.guard_mask`) set the prototypes and the fine-tuned head.
The rest bias is set again on the calibration recording (:func:`user_rest_bias`): the user's own stream is
what a clinic would calibrate the rest decision on.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import InputError
from ..data.segments import run_repetitions
from .dataset import Normalisation, evenly_spaced
from .inference import FrameScorer, normalised_frames
from .models import ContrastiveModel, adapt_batchnorm, build_model
from .rest_bias import RestCalibration, calibrate_rest_bias
from .stream_sampling import guard_mask
from .transfer import TransferRecipe, transfer_recipes

METHODS = ("adabn", "prototypes", "fine_tune", "fine_tune_network", "transfer")
TRAINED = ("fine_tune_network", "transfer")  # methods that train the network: the calibration curve's
BASELINES = ("scratch", "lda")  # trained on the user's calibration repetitions alone (evaluation.calibration_curve)


@dataclass(frozen=True)
class CalibrationSettings:
    """The ``calibration`` section of the configuration (docs/configuration.md)."""

    methods: tuple[str, ...] = METHODS
    baselines: tuple[str, ...] = BASELINES
    prototype_weight: float = 1.0  # 1: the user's prototypes replace the trained embeddings; 0: kept
    fine_tune_steps: int = 100
    fine_tune_learning_rate: float = 0.01
    scratch_epochs: int = 3  # epochs of the network trained from scratch on the calibration repetitions
    adaptation_frames: int = 10000  # at most this many calibration frames adapt the batch norms, evenly spaced
    transfer: tuple[TransferRecipe, ...] = (TransferRecipe(0.1, "all", 100),)  # chosen among on validation users

    @classmethod
    def from_config(cls, section: dict, adaptation_frames: int = 10000) -> CalibrationSettings:
        unknown = [m for m in section.get("methods", []) if m not in METHODS]
        if unknown:
            raise InputError(f"calibration.methods: {unknown} are not methods; choose from {list(METHODS)}")
        return cls(
            methods=tuple(section.get("methods", METHODS)),
            baselines=tuple(section.get("baselines", BASELINES)),
            prototype_weight=float(section.get("prototype_weight", 1.0)),
            fine_tune_steps=int(section.get("fine_tune", {}).get("steps", 100)),
            fine_tune_learning_rate=float(section.get("fine_tune", {}).get("learning_rate", 0.01)),
            scratch_epochs=int(section.get("scratch_epochs", 3)),
            adaptation_frames=adaptation_frames,
            transfer=transfer_recipes(section.get("transfer", {})),
        )


@dataclass(frozen=True)
class CalibrationRecording:
    """A user's calibration recording as the controller's frames: raw frames (with their context) in stretches of
    consecutive frames, each frame's label, and which frames are labelled clearly enough to fit on (outside the
    guard band)."""

    stretches: list[tuple[torch.Tensor, np.ndarray]]  # (raw frames [n, (context,) channel], labels [n])
    fit: list[np.ndarray]  # per stretch, [n] True for frames prototypes and fine-tuning read
    live: torch.Tensor  # [channel] electrodes with signal

    @classmethod
    def of(cls, stretches: list[tuple[torch.Tensor, np.ndarray]], guard_frames: int, live: torch.Tensor):
        """The recording of ``stretches`` (raw frames, labels), fitting on the frames more than ``guard_frames``
        from every change of label within their stretch (stream training's guard band)."""
        fit = [
            (~guard_mask(torch.from_numpy(labels), torch.zeros(len(labels)), guard_frames)).numpy()
            for _, labels in stretches
        ]
        return cls(stretches, fit, live)

    @classmethod
    def unlabelled(cls, stretches: list[torch.Tensor], live: torch.Tensor) -> CalibrationRecording:
        """A recording of raw frames whose labels are unknown: it adapts the batch norms (method adabn), and fits
        nothing (every label -1, no frame to fit on)."""
        labels = [np.full(len(frames), -1) for frames in stretches]
        return cls(list(zip(stretches, labels, strict=True)), [np.zeros(len(x), bool) for x in labels], live)

    def fit_frames(self, classes: list[str]) -> dict[str, int]:
        """Each class's frames to fit on (outside the guard band), every class of ``classes`` named (0: none)."""
        fitted = [labels[keep] for (_, labels), keep in zip(self.stretches, self.fit, strict=True)]
        counts = np.bincount(np.concatenate([np.zeros(0, np.int64), *fitted]).astype(np.int64), minlength=len(classes))
        return dict(zip(classes, counts.tolist(), strict=True))

    @property
    def frames(self) -> torch.Tensor:
        return torch.cat([frames for frames, _ in self.stretches])

    def labelled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw frames, labels) of the frames to fit on."""
        frames = torch.cat(
            [frames[torch.from_numpy(keep)] for (frames, _), keep in zip(self.stretches, self.fit, strict=True)]
        )
        labels = np.concatenate([labels[keep] for (_, labels), keep in zip(self.stretches, self.fit, strict=True)])
        return frames, torch.from_numpy(labels).long()


def frames_table(fit_frames: dict[str, int]) -> str:
    """Each class's calibration frames to fit on as a small text table, one class a line (a class without any:
    ``0  (none)``)."""
    width = max(len("class"), *(len(name) for name in fit_frames))
    rows = [f"{name:<{width}}  {count:>6}{'  (none)' if count == 0 else ''}" for name, count in fit_frames.items()]
    return "\n".join([f"{'class':<{width}}  frames", *rows])


def first_repetitions(names: np.ndarray, rest: str, repetition: np.ndarray, count: int) -> np.ndarray:
    """[sample] True for the samples of the first ``count`` repetitions of every gesture of a recording (each
    sample's class name, ``rest`` the rest class's; ``repetition`` its repetition number, NinaPro's
    ``rerepetition``), with the rest before each: a rest run belongs to the repetition of the movement after it, as
    the pipeline's streams assign it (:func:`..data.segments.run_repetitions`; the trailing rest to the last)."""
    if count < 1:
        raise InputError(f"calibrate on at least one repetition of every gesture, not {count}")
    codes = np.unique(np.asarray(names), return_inverse=True)[1].reshape(-1)
    movements = np.where(np.asarray(names) == rest, 0, codes + 1)
    starts, stops, _, run_repetition = run_repetitions(movements, np.asarray(repetition), count)
    return np.repeat(run_repetition > 0, stops - starts)


def embeddings(model: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """The encoder's embeddings of normalised frames (eval mode, no gradient): unit vectors for a contrastive model,
    the head's input for a classifier."""
    model.eval()
    with torch.no_grad():
        if isinstance(model, ContrastiveModel):
            return model.encode_emg(frames)
        return model.emg_encoder(frames)


def class_means(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([class, dim] mean feature of each class, [class] whether it has frames)."""
    sums = torch.zeros(n_classes, features.shape[1]).index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=n_classes)
    return sums / counts.clamp(min=1)[:, None], counts > 0


def with_class_embeddings(model: ContrastiveModel, class_embeddings: torch.Tensor) -> ContrastiveModel:
    """A copy of ``model`` whose class encoder is one-hot with ``class_embeddings`` [class, dim] as its weights: the
    same EMG encoder, batch-norm statistics and temperature."""
    personal = build_model(replace(model.config, class_encoder="onehot"))
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith("class_encoder") and k != "class_codes"}
    missing, unexpected = personal.load_state_dict(kept, strict=False)
    if set(missing) != {"class_encoder.weight", "class_encoder.bias"} or unexpected:
        raise ValueError(f"unexpected keys when replacing the class encoder: {missing}, {unexpected}")
    with torch.no_grad():
        personal.class_encoder.weight.copy_(class_embeddings.T)
        personal.class_encoder.bias.zero_()
    return personal.eval()


def prototype_model(model: ContrastiveModel, features: torch.Tensor, labels: torch.Tensor, weight: float):
    """Each class with calibration frames gets ``weight`` × the mean of their (unit) embeddings + (1 - ``weight``) ×
    its trained embedding, normalised; the others keep theirs."""
    if not isinstance(model, ContrastiveModel):
        raise InputError(
            "calibration method prototypes needs a contrastive model: a classifier has no class embeddings"
        )
    with torch.no_grad():
        trained = model.encode_classes()
    means, present = class_means(features, labels, len(trained))
    blended = F.normalize(weight * F.normalize(means, dim=-1) + (1 - weight) * trained, dim=-1)
    return with_class_embeddings(model, torch.where(present[:, None], blended, trained))


def balanced_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Cross-entropy with each class weighted by the inverse of its frame count: rest's long runs count as one class,
    as in the training groups."""
    counts = torch.bincount(labels, minlength=n_classes).float()
    weights = torch.where(counts > 0, 1.0 / counts.clamp(min=1), 0.0)
    return F.cross_entropy(logits, labels, weight=weights * (counts > 0).sum() / weights.sum().clamp(min=1e-12))


def fine_tuned_model(model: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor, settings, seed: int):
    """The class embeddings (contrastive; the temperature kept) or the head (classifier) trained on the frozen
    encoder's ``features`` of the calibration frames, full batch, starting from the trained ones; a class without
    calibration frames keeps its start (its row would otherwise move, as every other class's negative)."""
    torch.manual_seed(seed)
    contrastive = isinstance(model, ContrastiveModel)
    with torch.no_grad():
        start = model.encode_classes() if contrastive else model.head.weight
        scale = model.scale() if contrastive else None
    weight = torch.nn.Parameter(start.detach().clone())
    bias = None if contrastive else torch.nn.Parameter(model.head.bias.detach().clone())
    parameters = [weight] if contrastive else [weight, bias]
    optimiser = torch.optim.Adam(parameters, lr=settings.fine_tune_learning_rate)
    n_classes = len(start)
    for _ in range(settings.fine_tune_steps):
        logits = scale * features @ F.normalize(weight, dim=-1).T if contrastive else F.linear(features, weight, bias)
        loss = balanced_cross_entropy(logits, labels, n_classes)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    present = (torch.bincount(labels, minlength=n_classes) > 0)[:, None]
    weight = torch.where(present, weight.detach(), start.detach())
    if contrastive:
        return with_class_embeddings(model, F.normalize(weight, dim=-1))
    personal = copy.deepcopy(model)
    with torch.no_grad():
        personal.head.weight.copy_(weight)
        personal.head.bias.copy_(torch.where(present[:, 0], bias, model.head.bias))
    return personal.eval()


def personalise(
    model: torch.nn.Module,
    normalisation: Normalisation,
    recording: CalibrationRecording | None,
    method: str,
    settings: CalibrationSettings,
    seed: int = 0,
) -> torch.nn.Module:
    """A copy of ``model`` calibrated to the user by ``method`` (see the module) on their ``recording``; with none
    (no calibration repetition), the model as trained."""
    if method not in METHODS or method in TRAINED:
        cheap = [m for m in METHODS if m not in TRAINED]
        raise InputError(f"calibration method {method!r} is not one of {cheap} (fine_tune_network: the pipeline's)")
    personal = copy.deepcopy(model).eval()
    if recording is None:
        return personal
    live = recording.live
    adapt_batchnorm(
        personal, normalised_frames(evenly_spaced(recording.frames, settings.adaptation_frames), normalisation, live)
    )
    if method == "adabn":
        return personal
    frames, labels = recording.labelled()
    if not len(labels):
        raise InputError("the calibration recording has no labelled frame outside the guard band: record longer")
    features = embeddings(personal, normalised_frames(frames, normalisation, live))
    if method == "prototypes" or isinstance(personal, ContrastiveModel):  # fine-tuning starts from them
        personal = prototype_model(personal, features, labels, settings.prototype_weight)
    if method == "prototypes":
        return personal
    return fine_tuned_model(personal, features, labels, settings, seed)


def user_rest_bias(
    model: torch.nn.Module,
    normalisation: Normalisation,
    recording: CalibrationRecording,
    rest: int,
    vote_frames: int,
    target: float,
) -> RestCalibration:
    """The rest bias meeting ``target`` on the calibration recording's stretches, scored by the controller's scorer
    (:func:`.rest_bias.calibrate_rest_bias`)."""
    scorer = FrameScorer(model, normalisation, recording.live, model.config.n_classes)
    stretches = [(scorer(frames, batch=4096), labels) for frames, labels in recording.stretches]
    return calibrate_rest_bias(stretches, rest, vote_frames, target)
