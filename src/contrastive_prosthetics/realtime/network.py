"""A controller's own torch network (:class:`TorchNetwork`): the model, what scoring it needs, its online tracking of
batch-norm statistics, and the gestures described to it by their pose alone (:func:`described`).

Describing a gesture: a model whose class encoder reads hand poses (``class_encoder: pose``) scores any class from
its code, the class's mean pose standardised as training standardised every prototype (:mod:`..learning.poses`). A
description is such a pose, 22 raw glove values (the mean glove over the movement less the mean over the rest
before it, e.g. averaged over other people's recordings), divided by the spread model.pt carries (``pose_spread``).
It adds a class under a new name, or replaces the code of a gesture the model was not trained on (model.pt's
``unseen``: a zero-shot fold's, coded with the new user's prototypes). A trained class keeps its code: its name is
refused, as is a pose of the wrong length or with NaN, and a model without a pose class encoder. A model calibrated
to its user (prototypes, fine_tune: a one-hot class encoder whose weights are the user's class embeddings) keeps the
pose class encoder it was trained with beside it (``pose_encoder``), which codes a gesture described afterwards: in
the controller that calibrated, and in the model.pt the calibrate command writes (its ``pose_encoder``), so that a
controller, export or replay of that file describes alike. A calibrated model.pt written before it kept the encoder
is refused with what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import InputError
from ..data.ninapro import DatabaseSpec
from ..data.preprocess import PreprocessParams
from ..learning.dataset import Normalisation
from ..learning.inference import FrameScorer
from ..learning.models import batchnorm_layers
from ..learning.poses import described_code
from .adabn import adapt_to_user


@dataclass(frozen=True)
class PoseCoding:
    """What describing a gesture by its pose needs of a model.pt: how its prototypes were standardised and which of
    its classes it was not trained on (and, to refuse aptly, whether an older calibration lost its pose encoder)."""

    spread: torch.Tensor | None = None  # [22] model.pt's pose_spread (None: not a pose model, or an older file)
    unseen: tuple[str, ...] = ()  # model.pt's unseen: gestures held out of training, whose codes a description replaces
    # A model.pt calibrated from a pose model (prototypes, fine_tune) by a version that did not keep its pose class
    # encoder (no pose_encoder): the model.pt it was calibrated from, for the refusal to name; None otherwise.
    calibrated_from: str | None = None

    @classmethod
    def of(cls, saved: dict) -> PoseCoding:
        """The coding of a model.pt as read."""
        trained_with_poses = saved.get("pose_prototypes") is not None or saved.get("pose_spread") is not None
        encoder = saved.get("model_config", {}).get("class_encoder")
        lost = encoder != "pose" and trained_with_poses and saved.get("pose_encoder") is None
        calibrated_from = (saved.get("personalisation") or {}).get("from_model") or "the trained model.pt"
        return cls(saved.get("pose_spread"), tuple(saved.get("unseen") or ()), calibrated_from if lost else None)


@dataclass
class TorchNetwork:
    """A controller's own torch model and what scoring it needs: adapting re-estimates the model's batch norms,
    then the scorer is built again (the fast scorer folds the statistics into the layers)."""

    model: torch.nn.Module
    normalisation: Normalisation
    live: torch.Tensor
    bias: torch.Tensor  # the calibrated rest bias of model.pt on rest's logit (0: none)
    online_adaptation: float | None
    adabn: bool
    source: str  # the model, as errors name it
    hooks: list = field(default_factory=list)  # those of online tracking
    coding: PoseCoding = field(default_factory=PoseCoding)  # what describing a gesture by its pose needs
    # The trained pose class encoder, kept once calibration (prototypes, fine_tune) made the model's class encoder
    # one-hot: a gesture described afterwards is coded by it (:func:`described`).
    pose_encoder: torch.nn.Module | None = None

    def scorer(self, n_classes: int) -> FrameScorer:
        # Running statistics change the batch norms as frames arrive: then the network cannot be folded.
        fast = self.online_adaptation is None
        return FrameScorer(self.model, self.normalisation, self.live, n_classes, fast=fast, bias=self.bias)

    def track(self) -> None:
        if self.online_adaptation is not None:
            self.hooks = track_statistics(self.model, self.online_adaptation)

    def adapt(self, params: PreprocessParams, spec: DatabaseSpec, emg: np.ndarray) -> int:
        for hook in self.hooks:  # tracking would move the statistics AdaBN estimates, as activations pass through
            hook.remove()
        n_frames = adapt_to_user(self.model, self.normalisation, self.live, params, spec, emg, self.source)
        self.track()
        return n_frames


def track_statistics(model: torch.nn.Module, momentum: float) -> list:
    """Running estimates of every batch-norm layer's input statistics, each frame moving them by ``momentum``; the
    hooks' handles (``remove()`` stops tracking)."""

    def update(layer, inputs):
        x = inputs[0].detach()
        dims = (0, 2) if x.dim() == 3 else (0,)
        shape = (1, -1, 1) if x.dim() == 3 else (1, -1)
        layer.running_mean.lerp_(x.mean(dims), momentum)
        layer.running_var.lerp_(((x - layer.running_mean.view(shape)) ** 2).mean(dims), momentum)

    return [layer.register_forward_pre_hook(update) for layer in batchnorm_layers(model)]


def described(
    model: torch.nn.Module,
    classes: list[str],
    name: str,
    pose,
    coding: PoseCoding,
    source: str,
    pose_encoder: torch.nn.Module | None = None,
) -> list[str]:
    """Give ``model`` (changed in place) the class ``name`` described by ``pose`` (see the module): a new last class,
    or the new code of an unseen one. Returns the classes it then decides among; refuses (naming ``source``) what
    cannot be described. A model calibrated to its user (a one-hot class encoder whose weights are the class
    embeddings) takes one given ``pose_encoder``, the pose class encoder it was trained with (the calibrating
    controller's, or the one its model.pt keeps): the described class's embedding is that encoder's of the code, the
    other classes' (the user's prototypes) stay. Without one, :func:`no_pose_encoder` says why it is refused."""
    encoder = getattr(getattr(model, "config", None), "class_encoder", None)
    if encoder != "pose" and pose_encoder is None:
        raise InputError(no_pose_encoder(source, encoder, coding))
    if coding.spread is None:
        raise InputError(
            f"{source}: no pose_spread, how its pose prototypes were standardised: a model.pt written before it was "
            "recorded (train it again to describe gestures to it), or a torch model given without pose_coding="
        )
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"a described gesture needs a name, not {name!r}")
    if name in classes and name not in coding.unseen:
        raise InputError(
            f"{name!r} is a class {source} was trained on: a description adds a gesture under a new name, or "
            f"describes one it was not trained on ({', '.join(coding.unseen) or 'none'}); name it otherwise"
        )
    pose = np.asarray(pose, dtype=np.float64)
    sensors = len(coding.spread)
    if pose.shape != (sensors,):
        raise InputError(
            f"the pose of {name!r} has shape {pose.shape}: give the {sensors} glove values of its mean pose (the mean "
            "glove over the movement less the mean over the rest before it)"
        )
    missing = np.flatnonzero(~np.isfinite(pose))
    if len(missing):
        raise InputError(
            f"the pose of {name!r} is NaN or infinite at sensors {missing.tolist()}: a description needs every glove "
            "value (average over recordings that have the sensor)"
        )
    if encoder != "pose":
        return described_embedding(model, classes, name, pose, coding, pose_encoder)
    code = described_code(pose, coding.spread).to(model.class_codes)
    codes = model.class_codes.clone()
    if name in classes:
        codes[classes.index(name)] = code
        model.class_codes = codes
        return list(classes)
    model.class_codes = torch.cat([codes, code[None]])
    # The config counts the classes the model scores: calibration rebuilds the class encoder with config.n_classes
    # rows (personalise.with_class_embeddings), which without this lacked the described class's (a shape mismatch).
    model.config = replace(model.config, n_classes=len(model.class_codes))
    return [*classes, name]


def no_pose_encoder(source: str, encoder: str | None, coding: PoseCoding) -> str:
    """Why a model without a pose class encoder (``encoder``, its class encoder) cannot be described a gesture: one
    trained without, or a model.pt calibrated before model.pt kept the trained pose class encoder."""
    if coding.calibrated_from is not None:
        return (
            f"{source}: calibrated to its user from a model with a pose class encoder by an older version, which did "
            "not keep that encoder in model.pt (no pose_encoder), so a gesture cannot be coded from its pose; "
            "describe it before calibrating (Controller.describe, then calibrate with keep_trained_gestures), or "
            f"calibrate {coding.calibrated_from} again with this version, which keeps it"
        )
    return (
        f"{source}: its classes are not described by hand poses (class encoder {encoder or 'none'}), so a gesture "
        "cannot be added from its pose; train a model with class_encoder: pose (config.yaml's contrastive_pose)"
    )


def described_embedding(
    model: torch.nn.Module, classes: list[str], name: str, pose, coding: PoseCoding, pose_encoder: torch.nn.Module
) -> list[str]:
    """:func:`described` for a calibrated model (one-hot class encoder, its weights the class embeddings), in place:
    the pose class encoder's embedding of the description's code becomes class ``name``'s (a new last class, or an
    unseen one's); every other class keeps its embedding. Returns the classes."""
    with torch.no_grad():
        embeddings = model.encode_classes()
        parameter = next(pose_encoder.parameters())
        code = described_code(pose, coding.spread).to(parameter)
        embedding = F.normalize(pose_encoder(code[None]), dim=-1).to(embeddings)
        if name in classes:
            embeddings[classes.index(name)] = embedding[0]
        else:
            embeddings, classes = torch.cat([embeddings, embedding]), [*classes, name]
        # Calibration left no pose class encoder in the model to code the class with (prototypes and fine_tune make
        # it one-hot, personalise.with_class_embeddings), so describing refused it; the one-hot encoder is rebuilt
        # with one more row, in place, as the controller's scorer and online tracking hold this model.
        linear = torch.nn.Linear(len(embeddings), embeddings.shape[1]).to(embeddings)
        linear.weight.copy_(embeddings.T)
        linear.bias.zero_()
    model.class_encoder = linear
    model.class_codes = torch.eye(len(embeddings)).to(embeddings)
    model.config = replace(model.config, n_classes=len(embeddings))
    return list(classes)


def pose_file(path: Path) -> np.ndarray:
    """The pose a text file describes: its numbers (separated by spaces, commas or new lines), in glove order."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise InputError(f"{path}: cannot read the pose description ({error.strerror})") from None
    words = [word for word in re.split(r"[\s,;]+", text.strip()) if word]
    try:
        return np.array([float(word) for word in words])
    except ValueError:
        raise InputError(
            f"{path}: not a pose description: give its 22 glove values as numbers, separated by spaces or commas"
        ) from None


def read_descriptions(pairs: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """--describe's NAME=FILE pairs as {name: pose}; a name given twice is refused."""
    names = [name for name, _ in pairs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError(f"--describe gives {twice} more than once: describe each gesture once")
    return {name: pose_file(Path(path)) for name, path in pairs}
