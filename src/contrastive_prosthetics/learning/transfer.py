"""Transfer to a new user: the network trained on other people fine-tuned on the user's calibration repetitions with
settings of its own (a recipe), instead of a second training from scratch.

``fine_tune_network`` (:mod:`.calibration_baselines`) trains every weight with the pooled training's learning rate,
cosine schedule and weight decay (toward zero, not toward what was learnt), batch norm on plain batch statistics,
for the scratch network's budget: on one repetition it ends where scratch ends. A recipe keeps what was learnt on
other people and moves it a little:

- batch-norm statistics fixed at the user's own (AdaBN on their calibration recording, labels unread), the layers
  in eval mode while the weights move, so a step does not see a batch's statistics;
- a learning rate that is a fraction (``learning_rate_scale``) of the one the search chose for pooled training,
  constant, with no weight decay but an optional penalty toward the pretrained weights (``anchor``: L2-SP, the mean
  squared change of the moving weights);
- ``layers``: ``all`` moves every weight; ``top`` only the embedding's projection and the class embeddings (or the
  classifier's head), the encoder below frozen;
- ``steps`` full steps of the stream sampler's groups over the calibration repetitions (outside the guard band).

There is nothing of the user held out to choose a recipe on: the calibration curve chooses among
``calibration.transfer``'s recipes on the fold's validation subjects calibrated as new users
(:mod:`..evaluation.calibration_curve`), never on the scored subject.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import torch

from ..core.errors import InputError
from .dataset import DB23, Normalisation
from .models import batchnorm_layers, model_losses
from .stream_sampling import StreamSampler

LAYERS = ("all", "top")


@dataclass(frozen=True)
class TransferRecipe:
    learning_rate_scale: float  # × the learning rate the search chose for the model trained on other people
    layers: str  # all | top (see the module)
    steps: int
    anchor: float = 0.0  # weight of the mean squared change of the moving weights (0: none)

    @property
    def name(self) -> str:
        anchor = f" anchor {self.anchor:g}" if self.anchor else ""
        return f"lr x{self.learning_rate_scale:g} {self.layers} {self.steps} steps{anchor}"


def transfer_recipes(section: dict) -> tuple[TransferRecipe, ...]:
    """The recipes of ``calibration.transfer``: every combination of its ``learning_rate_scale`` and ``layers``
    lists, each with its ``steps`` and ``anchor``."""
    unknown = set(section) - {"learning_rate_scale", "layers", "steps", "anchor"}
    if unknown:
        raise InputError(f"calibration.transfer: unknown key(s) {sorted(unknown)}; see docs/configuration.md")
    scales, layers = list(section.get("learning_rate_scale", [0.1])), list(section.get("layers", ["all"]))
    wrong = [layer for layer in layers if layer not in LAYERS]
    if wrong or not scales or any(scale <= 0 for scale in scales):
        raise InputError(
            f"calibration.transfer: layers {layers} (each one of {list(LAYERS)}) and learning_rate_scale {scales} "
            "(each above 0, at least one) describe no recipe: fix them in the configuration"
        )
    steps, anchor = int(section.get("steps", 100)), float(section.get("anchor", 0.0))
    return tuple(TransferRecipe(float(s), layer, steps, anchor) for s, layer in itertools.product(scales, layers))


def moving_parameters(model: torch.nn.Module, layers: str) -> list[torch.nn.Parameter]:
    """The weights a recipe trains: every one, or (``top``) the projection and the class side."""
    if layers == "all":
        return list(model.parameters())
    top = list(model.emg_encoder.layers[-1].parameters())  # the projection into the embedding
    side = model.head if hasattr(model, "head") else model.class_encoder
    scale = [model.logit_scale] if isinstance(getattr(model, "logit_scale", None), torch.nn.Parameter) else []
    return top + list(side.parameters()) + scale


def transfer_network(
    start: torch.nn.Module,
    raw: DB23,
    normalisation: Normalisation,
    subject: int,
    repetitions: list[int],
    recipe: TransferRecipe,
    learning_rate: float,
    groups: int,
    guard_frames: int,
    seed: int,
) -> torch.nn.Module:
    """A copy of ``start`` (the pretrained network adapted to the user: AdaBN, prototypes) fine-tuned by ``recipe``
    on ``repetitions`` of ``subject`` in ``raw`` (normalised by ``normalisation``, the pretrained model's)."""
    torch.manual_seed(seed)
    model = copy.deepcopy(start)
    data = raw.normalised(normalisation)
    selection = raw.select(subjects=[raw.subject_names[subject]], repetitions=repetitions)
    sampler = StreamSampler(data, selection, groups, seed=seed, per_subject=True, guard_frames=guard_frames)
    moving = moving_parameters(model, recipe.layers)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in moving:
        parameter.requires_grad_(True)
    anchors = [parameter.detach().clone() for parameter in moving]
    optimiser = torch.optim.Adam(moving, lr=learning_rate * recipe.learning_rate_scale)
    loss_of = model_losses(model)
    model.train()
    for layer in batchnorm_layers(model):
        layer.eval()  # the user's statistics (AdaBN) stay as they are
    for _ in range(recipe.steps):
        batch = sampler.draw()
        logits = model.group_logits(batch.x, batch.classes, batch.present).float()
        loss = loss_of(logits, batch)
        if recipe.anchor:
            change = sum(((p - a) ** 2).sum() for p, a in zip(moving, anchors, strict=True))
            loss = loss + recipe.anchor * change / sum(a.numel() for a in anchors)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model.eval()
