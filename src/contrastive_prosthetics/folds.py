"""Folds: which subjects and repetitions train, validate and test a model.

``repetitions`` (the NinaPro standard, within-subject): every selected subject, training on some
repetitions, validating on others, testing on the rest. ``subjects`` (leave-one-subject-out,
calibration-free): train on the other subjects of a group, validate on held-out repetitions of those training
subjects, test on every repetition of the new subject, whose only adaptation is AdaBN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the workflow imports this module while it is parsed: no torch there
    from .dataset import DB23, Selection
from .errors import InputError


@dataclass(frozen=True)
class FoldSelections:
    train: Selection
    validation: Selection
    test: Selection


def fold_subjects(fold: dict, all_subjects: list[str]) -> list[str]:
    """Subject names (``db2/s1``) whose tensors a fold needs."""
    return list(fold["subjects"]) if fold["scheme"] == "subjects" else list(all_subjects)


def fold_selections(data: DB23, fold: dict) -> FoldSelections:
    if fold["scheme"] == "repetitions":
        return FoldSelections(
            train=data.select(repetitions=fold["train"]),
            validation=data.select(repetitions=fold["validation"]),
            test=data.select(repetitions=fold["test"]),
        )
    if fold["scheme"] == "subjects":
        if fold["test_subject"] not in fold["subjects"]:
            raise InputError(f"fold test subject {fold['test_subject']} is not among its subjects {fold['subjects']}")
        others = [s for s in fold["subjects"] if s != fold["test_subject"]]
        return FoldSelections(
            train=data.select(subjects=others, repetitions=fold["train"]),
            validation=data.select(subjects=others, repetitions=fold["validation"]),
            test=data.select(subjects=[fold["test_subject"]]),
        )
    raise InputError(f"unknown fold scheme {fold['scheme']!r}; use 'repetitions' or 'subjects'")
