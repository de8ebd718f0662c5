"""Pose decoding's head and loss: a model option (``pose_decoder``) whose EMG encoder also decodes the hand's pose,
the subject's standardised glove (:mod:`.glove`), at every frame it encodes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def pose_head(config) -> nn.Module | None:
    """The head that decodes the hand's pose (the standardised glove, :mod:`.glove`) from a frame's embedding, or
    None (``pose_weight`` 0). It reads the embedding before L2 normalisation, so that its length can carry how far
    the hand is from its rest, which a direction alone cannot; built after the model's other layers, so that a model
    without it draws the same initial weights as before it existed."""
    if not config.pose_weight:
        return None
    hidden = 4 * config.embedding_dim
    return nn.Sequential(nn.Linear(config.embedding_dim, hidden), nn.ReLU(), nn.Linear(hidden, config.code_dim))


def pose_loss(poses: torch.Tensor, glove: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the decoded ``poses`` [group, class, sensor] against the standardised ``glove`` over the
    present frames' sensors that have a target (NaN: none); 0 when none has."""
    target = present[..., None] & torch.isfinite(glove)
    error = torch.where(target, poses - torch.nan_to_num(glove), 0.0)
    return (error**2).sum() / target.sum().clamp(min=1)


def batch_loss(model: nn.Module, batch, loss_of: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """(group logits, loss) of a training batch: ``loss_of`` (:func:`model_losses`), plus ``pose_weight`` times
    :func:`pose_loss` against the batch's glove for a model with a pose head."""
    arguments = (batch.x, batch.classes, batch.present, batch.reference)
    if getattr(model, "pose_head", None) is None:
        logits = model.group_logits(*arguments).float()
        return logits, loss_of(logits, batch)
    logits, poses = model.group_logits(*arguments, with_poses=True)
    logits = logits.float()
    decoding = pose_loss(poses.float(), batch.glove, batch.present)
    return logits, loss_of(logits, batch) + model.config.pose_weight * decoding
