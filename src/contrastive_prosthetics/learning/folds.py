"""Folds: which subjects and repetitions train, validate and test a model, and which unlabelled stretches of a
scored subject's recording may adapt it.

``repetitions`` (the NinaPro standard, within-subject): every selected subject, training on some repetitions,
validating on others, testing on the rest. ``subjects`` (leave-one-subject-out, calibration-free): train on the
other subjects of a group and test on every repetition of the new subject, whose only adaptation is AdaBN. Model
selection targets a new user: ``validation_subjects: N`` holds N of the other subjects out of training (the N after
the test subject in the group's order, wrapping around) and validates on all their repetitions; the older
``validation: [reps]`` validates on held-out repetitions of the training subjects instead.

Adaptation pools: for each scored subject, the repetitions whose continuous recording may adapt it (the scored
repetition itself is always left out, see :mod:`.adaptation`): the test repetitions for a test subject; for a
validation subject its validation repetitions plus, if it also trains, its training repetitions.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import InputError

if TYPE_CHECKING:  # the workflow imports this module while it is parsed: no torch there
    from .dataset import DB23, Selection


@dataclass(frozen=True)
class FoldSelections:
    train: Selection
    validation: Selection
    test: Selection
    validation_pool: dict[int, list[int]]  # subject index → repetitions that may adapt it (1-based)
    test_pool: dict[int, list[int]]


def validation_subjects(fold: dict) -> list[str]:
    """The training-group subjects held out for validation in a ``subjects`` fold ([] when validating on
    repetitions)."""
    if fold["scheme"] != "subjects" or "validation_subjects" not in fold:
        return []
    group = list(fold["subjects"])
    start = group.index(fold["test_subject"])
    return [group[(start + k) % len(group)] for k in range(1, fold["validation_subjects"] + 1)]


def fold_subjects(fold: dict, all_subjects: list[str]) -> list[str]:
    """Subject names (``db2/s1``) whose tensors a fold needs."""
    return list(fold["subjects"]) if fold["scheme"] == "subjects" else list(all_subjects)


def check_fold(name: str, fold: dict) -> None:
    """A fold that could leak: overlapping train/validation/test repetitions, a test subject outside its group,
    more validation subjects than the group can spare. The message names the fold."""
    parts = {part: set(fold.get(part, [])) for part in ("train", "validation", "test")}
    if fold["scheme"] == "subjects":
        if fold["test_subject"] not in fold["subjects"]:
            raise InputError(
                f"folds.{name}.test_subject: {fold['test_subject']} is not in folds.{name}.subjects: add it there"
            )
        spare = len(fold["subjects"]) - 2
        if fold.get("validation_subjects", 0) > spare:
            raise InputError(
                f"folds.{name}.validation_subjects: {fold['validation_subjects']} leaves no training subject "
                f"(the group has {len(fold['subjects'])}); use at most {spare}"
            )
        if "validation_subjects" in fold and "validation" in fold:
            raise InputError(f"folds.{name}: give validation_subjects or validation repetitions, not both")
    for first, second in (("train", "validation"), ("train", "test"), ("validation", "test")):
        shared = sorted(parts[first] & parts[second])
        if shared:
            raise InputError(
                f"folds.{name}: repetitions {shared} are in both {first} and {second}; a repetition can only be in one"
            )


def expand_folds(folds: dict, all_subjects: list[str], gestures: list[str] | None = None, seed: int = 0) -> dict:
    """Folds with every shorthand expanded: ``leave_one_subject_out`` into one ``subjects`` fold per subject of its
    group, named ``{name}-{db}-s{n}`` (``subjects: all`` is every subject of the run); ``zero_shot`` into ``sets``
    copies of its ``base`` fold, each holding out ``size`` gestures drawn (seeded) from ``gestures`` (``all``: the
    run's), named ``{name}-{g1}-{g2}-...``, whose oracle is the base fold."""
    expanded = {}
    for name, fold in folds.items():
        if fold["scheme"] == "zero_shot":
            expanded |= zero_shot_folds(name, fold, folds, gestures or [], seed)
            continue
        if fold["scheme"] != "leave_one_subject_out":
            expanded[name] = fold
            continue
        group = list(all_subjects) if fold["subjects"] == "all" else list(fold["subjects"])
        rest = {key: value for key, value in fold.items() if key not in ("scheme", "subjects")}
        for subject in group:
            fold_name = f"{name}-{subject.replace('/', '-')}"
            if fold_name in folds:
                raise InputError(f"folds.{name}: expands to {fold_name}, which the configuration already names")
            expanded[fold_name] = {
                "scheme": "subjects",
                "subjects": group,
                "test_subject": subject,
                **rest,
                "family": name,
            }
    return expanded


def zero_shot_folds(name: str, fold: dict, folds: dict, gestures: list[str], seed: int) -> dict:
    """The folds of one ``zero_shot`` shorthand (see :func:`expand_folds`)."""
    base = folds.get(fold["base"])
    if base is None or base["scheme"] not in ("repetitions", "subjects"):
        raise InputError(f"folds.{name}.base: {fold['base']!r} is not a repetitions or subjects fold of folds")
    pool = gestures if fold["gestures"] == "all" else list(fold["gestures"])
    if fold["size"] >= len(pool):
        raise InputError(f"folds.{name}.size: {fold['size']} leaves no gesture to train on (of {len(pool)})")
    if fold["sets"] > math.comb(len(pool), fold["size"]):
        raise InputError(f"folds.{name}.sets: only {math.comb(len(pool), fold['size'])} different sets exist")
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))
    drawn: dict[str, dict] = {}
    while len(drawn) < fold["sets"]:
        unseen = sorted(rng.choice(pool, fold["size"], replace=False).tolist(), key=pool.index)
        copy = {**base, "unseen": unseen, "oracle": fold["base"], "family": name}
        drawn[f"{name}-{'-'.join(unseen)}"] = copy | ({"models": fold["models"]} if "models" in fold else {})
    return drawn


def fold_runs(models: dict, folds: dict, networks_only: bool = False, zero_shot_only: bool = False) -> list:
    """The (model, fold) pairs a run trains: every model on every fold, unless a fold names its ``models``;
    optionally networks only (no LDA), or zero-shot folds only (those with ``unseen`` gestures)."""
    return [
        (model, name)
        for name, fold in folds.items()
        for model in fold.get("models", list(models))
        if not (networks_only and models[model]["kind"] == "lda") and not (zero_shot_only and not fold.get("unseen"))
    ]


def fold_families(folds: dict) -> dict[str, str]:
    """Fold → the family it is summarised with: its shorthand's name when expanded from one, else its own."""
    return {name: fold.get("family", name) for name, fold in folds.items()}


def fold_selections(data: DB23, fold: dict, name: str = "fold") -> FoldSelections:
    """The fold's selections; gestures in ``unseen`` are left out of training and validation (their EMG is never
    fitted or selected on) and tested with every other class. A class with no training or validation frame stops
    here, named, rather than deep inside a model."""
    selections = _fold_selections(data, fold, name)
    for part in ("train", "validation"):
        selection = getattr(selections, part)
        present = data.selection_mask(selection).any(2).any(0)[selection.classes.to(data.valid.device)]
        missing = [
            data.classes[c] for c, here in zip(selection.classes.tolist(), present.tolist(), strict=True) if not here
        ]
        if missing:
            raise InputError(
                f"folds.{name}: class(es) {missing} have no {part} frames (not recorded in the {part} repetitions "
                "or subjects, or every repetition shorter than preprocess.windows); change the fold, the windows "
                "or data.exercises"
            )
    return selections


def _fold_selections(data: DB23, fold: dict, name: str) -> FoldSelections:
    n_reps = data.valid.shape[2]
    check_fold(name, fold)
    unknown = [gesture for gesture in fold.get("unseen", []) if gesture not in data.classes[1:]]
    if unknown:
        raise InputError(f"folds.{name}.unseen: {unknown} are not gestures of this run ({data.classes[1:]})")
    seen = [c for c in data.classes if c not in fold.get("unseen", [])]
    index = {subject: i for i, subject in enumerate(data.subject_names)}
    if fold["scheme"] == "repetitions":
        pool = {i: sorted(set(fold["validation"]) | set(fold["train"])) for i in index.values()}
        return FoldSelections(
            train=data.select(classes=seen, repetitions=fold["train"]),
            validation=data.select(classes=seen, repetitions=fold["validation"]),
            test=data.select(repetitions=fold["test"]),
            validation_pool=pool,
            test_pool={i: sorted(fold["test"]) for i in index.values()},
        )
    if fold["scheme"] == "subjects":
        held_out = validation_subjects(fold)
        trainers = [s for s in fold["subjects"] if s != fold["test_subject"] and s not in held_out]
        if held_out:
            validation = data.select(subjects=held_out, classes=seen)
            validation_pool = {index[s]: list(range(1, n_reps + 1)) for s in held_out}
        else:
            validation = data.select(subjects=trainers, classes=seen, repetitions=fold["validation"])
            validation_pool = {index[s]: sorted(set(fold["validation"]) | set(fold["train"])) for s in trainers}
        return FoldSelections(
            train=data.select(subjects=trainers, classes=seen, repetitions=fold["train"]),
            validation=validation,
            test=data.select(subjects=[fold["test_subject"]]),
            validation_pool=validation_pool,
            test_pool={index[fold["test_subject"]]: list(range(1, n_reps + 1))},
        )
    raise InputError(f"folds.{name}.scheme: unknown scheme {fold['scheme']!r}; use 'repetitions' or 'subjects'")
