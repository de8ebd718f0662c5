"""Pose prototypes: each class described by the hand's pose, so that a class encoder can place gestures it never
saw in training from their description alone.

The rule: a cell's pose is the mean glove over its segment minus the mean over the rest before its movement
(conversion computes it, ``pose`` per window). A class's prototype is the mean pose over the valid cells of the
training subjects and training repetitions only (every class, those whose EMG is held out included: their
description comes from other people's gloves, never from a test repetition), then every sensor is divided by its
standard deviation over the classes' prototypes. A glove sensor a subject's file lacks (NaN, masked at conversion)
takes no part in that subject's means; a sensor no training subject has is zero in every prototype.
"""

from __future__ import annotations

import torch

from .dataset import DB23, Selection


def pose_prototypes(data: DB23, selection: Selection) -> torch.Tensor:
    """[class, 22] standardised prototypes over the cells of ``selection`` (all of its classes)."""
    subjects, classes, repetitions = selection.subjects, torch.arange(len(data.classes)), selection.repetitions
    cells = torch.zeros_like(data.valid, dtype=torch.bool, device="cpu")
    cells[subjects[:, None], :, repetitions[None, :]] = True
    cells &= data.valid.cpu()
    weight = (cells[..., None] & data.pose_mask[:, None, None, :]).to(torch.float64)  # [subject, class, rep, 22]
    total = (data.poses.double() * weight).sum((0, 2))  # [class, 22]
    count = weight.sum((0, 2))
    prototypes = torch.where(count > 0, total / count.clamp(min=1), 0.0)[classes]
    spread = prototypes.std(0)
    return torch.where(spread > 1e-9, prototypes / spread.clamp(min=1e-9), 0.0).float()
