"""Pose prototypes: each class described by the hand's pose, so that a class encoder can place gestures it never
saw in training from their description alone.

The rule: a cell's pose is the mean glove over its segment minus the mean over the rest before its movement
(conversion computes it, ``pose`` per window). A class's prototype is the mean pose over the valid cells of the
training subjects and training repetitions only, never a test repetition. A gesture held out of training (zero-shot,
``unseen``) is described to each person by other people's gloves only: the prototype a subject is scored with is
the mean over the training subjects other than that subject (a new user's: every training subject's), so that in a
fold whose test subjects also train, no one's own glove describes their unseen gesture. Every sensor is then
divided by its standard deviation over the trained classes' prototypes, which no unseen gesture's pose touches, so
that the trained classes' codes are one table for every subject. A glove sensor a subject's file lacks (NaN,
masked at conversion) takes no part in that subject's means; a sensor none of the subjects averaged has is zero.

A gesture described after training (:meth:`..realtime.controller.Controller.describe`) is a pose in the same units
(the mean glove over the movement less the mean over the rest before it, 22 raw values, e.g. averaged over other
people's recordings: :func:`pose_description`), divided by the same spread, which model.pt carries (``pose_spread``)
beside the new user's prototypes (:func:`described_code`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from .dataset import DB23, Selection

SPREAD_FLOOR = 1e-9  # a sensor whose prototypes spread less than this (a missing one: all zero) codes as zero


def subject_prototypes(data: DB23, selection: Selection, unseen: Sequence[int] = ()) -> torch.Tensor:
    """[subject, class, 22] standardised prototypes over the training cells of ``selection`` (its subjects and
    repetitions, every class): row s is what subject s (an index into ``data``'s subjects) is scored with. The
    trained classes' rows are the same for every subject; an ``unseen`` class's (class indices) leave s out of the
    mean. Without ``unseen`` every row is :func:`pose_prototypes`."""
    everyone, others = _mean_poses(data, selection)
    held_out = _held_out(data, unseen)
    prototypes = torch.where(held_out[None, :, None], others, everyone)
    return _standardised(prototypes, pose_spread(everyone, held_out))


def pose_prototypes(data: DB23, selection: Selection, unseen: Sequence[int] = ()) -> torch.Tensor:
    """[class, 22] a new user's prototypes (none of the training subjects: the mean over every one of them),
    standardised as :func:`subject_prototypes` does: what a saved model carries."""
    everyone, _ = _mean_poses(data, selection)
    return _standardised(everyone, pose_spread(everyone, _held_out(data, unseen)))


class FoldCodes(NamedTuple):
    """A pose class encoder's codes in one fold (:func:`fold_codes`)."""

    new_user: torch.Tensor  # [class, 22] what model.pt carries (pose_prototypes)
    subjects: torch.Tensor | None  # [subject, class, 22] with unseen gestures; None without
    spread: torch.Tensor  # [22] float64, the divisor of every code: model.pt's pose_spread


def fold_codes(data: DB23, train: Selection, unseen: Sequence[int]) -> FoldCodes:
    """A pose class encoder's codes in one fold, from the training subjects' training repetitions of every class:
    a new user's (:func:`pose_prototypes`, what model.pt carries), with ``unseen`` gestures each subject's
    (:func:`subject_prototypes`), and the spread they were divided by. Training and the stream evaluation both take
    them from here."""
    cells = Selection(train.subjects, torch.arange(len(data.classes)), train.repetitions)
    everyone, _ = _mean_poses(data, cells)
    spread = pose_spread(everyone, _held_out(data, unseen))
    subjects = subject_prototypes(data, cells, unseen) if unseen else None
    return FoldCodes(pose_prototypes(data, cells, unseen), subjects, spread)


def pose_fields(codes: FoldCodes | None) -> dict:
    """model.pt's pose_prototypes (a new user's codes) and pose_spread (their divisor), of a fold's ``codes`` (None:
    no pose class encoder, neither)."""
    if codes is None:
        return {"pose_prototypes": None, "pose_spread": None}
    return {"pose_prototypes": codes.new_user.cpu(), "pose_spread": codes.spread.cpu()}


def pose_description(data: DB23, selection: Selection, gesture: str) -> np.ndarray:
    """[22] a gesture's pose as a description (raw glove units, not standardised): its mean pose over the cells of
    ``selection`` (subjects and repetitions; e.g. other people's), as a prototype's mean is taken."""
    cells = Selection(selection.subjects, torch.arange(len(data.classes)), selection.repetitions)
    everyone, _ = _mean_poses(data, cells)
    return everyone[data.classes.index(gesture)].numpy()


def described_code(pose: np.ndarray, spread: torch.Tensor) -> torch.Tensor:
    """[22] the class code of a pose description (:func:`pose_description`'s units), divided by ``spread`` (model.pt's
    ``pose_spread``) as training divided every prototype: a described gesture is coded as a trained one."""
    pose = torch.as_tensor(np.asarray(pose, dtype=np.float64))
    return _standardised(pose, spread.double())


def _mean_poses(data: DB23, selection: Selection) -> tuple[torch.Tensor, torch.Tensor]:
    """Every class's mean pose over the training cells ([class, 22], float64) and, per subject, over the training
    cells of everyone else ([subject, class, 22]: a subject outside the selection subtracts nothing)."""
    subjects, repetitions = selection.subjects, selection.repetitions
    cells = torch.zeros_like(data.valid, dtype=torch.bool, device="cpu")
    cells[subjects[:, None], :, repetitions[None, :]] = True
    cells &= data.valid.cpu()
    weight = (cells[..., None] & data.pose_mask[:, None, None, :]).to(torch.float64)  # [subject, class, rep, 22]
    own_total, own_count = (data.poses.double() * weight).sum(2), weight.sum(2)  # [subject, class, 22]
    total, count = own_total.sum(0), own_count.sum(0)
    everyone = torch.where(count > 0, total / count.clamp(min=1), 0.0)
    others_count = count - own_count
    others = torch.where(others_count > 0, (total - own_total) / others_count.clamp(min=1), 0.0)
    return everyone, others


def _held_out(data: DB23, unseen: Sequence[int]) -> torch.Tensor:
    held_out = torch.zeros(len(data.classes), dtype=torch.bool)
    held_out[list(unseen)] = True
    return held_out


def pose_spread(everyone: torch.Tensor, held_out: torch.Tensor) -> torch.Tensor:
    """[22] every sensor's standard deviation over the trained classes' mean poses (``everyone``, float64): no unseen
    gesture's pose touches it."""
    return everyone[~held_out].std(0)


def _standardised(prototypes: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """Every sensor divided by its spread (:func:`pose_spread`; 0 where it has none)."""
    return torch.where(spread > SPREAD_FLOOR, prototypes / spread.clamp(min=SPREAD_FLOOR), 0.0).float()


def with_subject_codes(model: torch.nn.Module, codes: torch.Tensor | None, subject: int) -> torch.nn.Module:
    """``model`` scoring with subject ``subject``'s row of ``codes`` ([subject, class, code]): a copy; the model
    itself when ``codes`` is None."""
    if codes is None:
        return model
    coded = copy.deepcopy(model)
    coded.class_codes.copy_(codes[subject].to(coded.class_codes.device))
    return coded
