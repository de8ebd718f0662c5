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

``calibration`` (a new user with a short calibration, :mod:`.personalise`): one ``subjects`` fold per subject whose
test subject's repetitions split in two: ``calibration`` repetitions, of which the first ``c`` (for each ``c`` in
``counts``) calibrate the model trained on the other subjects, and ``test`` repetitions, scored for every ``c`` (so
the curve is paired). Training, selection and the rest calibration at training time never read the test subject;
the calibration never reads the scored repetitions. With ``new_users: N`` a fold holds out N new users at once
(``test_subjects``; one network per N of them, a cost saving): each is held out and scored as a single test subject
is, and calibrated alone. :func:`test_subjects` reads a fold's new users, one or several.

Held out means held out: a zero-shot fold's ``unseen`` gestures are left out of the training and validation
selections by class, and :func:`training_view` leaves their stretches of the recording out of everything else that
training reads (normalisation, reference batch-norm frames, stream sampling, validation adaptation, the rest
calibration); the test stretches stay as they are, since scoring them is evaluation.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import InputError

if TYPE_CHECKING:  # the workflow imports this module while it is parsed: no torch there
    import torch

    from .dataset import DB23, Selection, Streams


@dataclass(frozen=True)
class FoldSelections:
    train: Selection
    validation: Selection
    test: Selection
    validation_pool: dict[int, list[int]]  # subject index → repetitions that may adapt it (1-based)
    test_pool: dict[int, list[int]]


def test_subjects(fold: dict) -> list[str]:
    """A ``subjects`` fold's new users, in the group's order: its ``test_subject``, or its ``test_subjects`` (a
    calibration family holding out several per fold, ``new_users``)."""
    return list(fold["test_subjects"]) if "test_subjects" in fold else [fold["test_subject"]]


def validation_subjects(fold: dict) -> list[str]:
    """The training-group subjects held out for validation in a ``subjects`` fold ([] when validating on
    repetitions): the ``validation_subjects`` after its last new user in the group's order, wrapping around, never a
    new user."""
    if fold["scheme"] != "subjects" or "validation_subjects" not in fold:
        return []
    group, new_users = list(fold["subjects"]), test_subjects(fold)
    start = max(group.index(subject) for subject in new_users)
    following = [group[(start + k) % len(group)] for k in range(1, len(group))]
    return [subject for subject in following if subject not in new_users][: fold["validation_subjects"]]


def training_subjects(fold: dict) -> list[str]:
    """The subjects a ``subjects`` fold trains on: every subject of its group but its new users and validation
    subjects; with ``training_subjects: N``, the first N of them in the group's order after its validation subjects
    (wrapping around), so that accuracy can be measured against the number of people a model was trained on."""
    group, new_users, held_out = list(fold["subjects"]), test_subjects(fold), validation_subjects(fold)
    start = max(group.index(subject) for subject in new_users)
    following = [group[(start + k) % len(group)] for k in range(1, len(group))]
    trainers = [subject for subject in following if subject not in new_users and subject not in held_out]
    if "training_subjects" not in fold:
        return [subject for subject in group if subject in trainers]  # the group's order, as before
    return trainers[: fold["training_subjects"]]


def fold_subjects(fold: dict, all_subjects: list[str]) -> list[str]:
    """Subject names (``db2/s1``) whose tensors a fold needs."""
    return list(fold["subjects"]) if fold["scheme"] == "subjects" else list(all_subjects)


def check_fold(name: str, fold: dict) -> None:
    """A fold that could leak: overlapping train/validation/test repetitions, a test subject outside its group,
    more validation subjects than the group can spare. The message names the fold."""
    parts = {part: set(fold.get(part, [])) for part in ("train", "validation", "test", "calibration")}
    # Within a subjects fold, train and validation repetitions are the other subjects', test and calibration ones
    # the test subject's: only repetitions of the same people can leak into each other.
    pairs = [("train", "validation"), ("calibration", "test")]
    if fold["scheme"] not in ("subjects", "calibration"):
        pairs += [("train", "test"), ("validation", "test")]
    if "calibration" in fold:
        too_many = [c for c in fold.get("counts", []) if c > len(fold["calibration"])]
        if too_many:
            raise InputError(
                f"folds.{name}.counts: {too_many} exceed the {len(fold['calibration'])} calibration repetitions "
                f"{fold['calibration']}; add repetitions to folds.{name}.calibration or lower the counts"
            )
        if "test" not in fold:
            raise InputError(f"folds.{name}: calibration repetitions need the test repetitions they are scored on")
    if fold["scheme"] == "subjects":
        key = "test_subjects" if "test_subjects" in fold else "test_subject"
        for subject in test_subjects(fold):
            if subject not in fold["subjects"]:
                raise InputError(f"folds.{name}.{key}: {subject} is not in folds.{name}.subjects: add it there")
        spare = len(fold["subjects"]) - len(test_subjects(fold)) - 1
        if fold.get("validation_subjects", 0) > spare:
            raise InputError(
                f"folds.{name}.validation_subjects: {fold['validation_subjects']} leaves no training subject "
                f"(the group has {len(fold['subjects'])}); use at most {spare}"
            )
        if "validation_subjects" in fold and "validation" in fold:
            raise InputError(f"folds.{name}: give validation_subjects or validation repetitions, not both")
        available = spare + 1 - fold.get("validation_subjects", 0)
        if fold.get("training_subjects", available) > available:
            raise InputError(
                f"folds.{name}.training_subjects: {fold['training_subjects']}, but the group of "
                f"{len(fold['subjects'])} leaves {available} besides the new users and validation subjects; use at "
                f"most {available}"
            )
    for first, second in pairs:
        shared = sorted(parts[first] & parts[second])
        if shared:
            raise InputError(
                f"folds.{name}: repetitions {shared} are in both {first} and {second}; a repetition can only be in one"
            )


def expand_folds(folds: dict, all_subjects: list[str], gestures: list[str] | None = None, seed: int = 0) -> dict:
    """Folds with every shorthand expanded: ``leave_one_subject_out`` and ``calibration`` into one ``subjects`` fold
    per subject of its group, named ``{name}-{db}-s{n}`` (``subjects: all`` is every subject of the run), a
    calibration fold keeping its ``calibration``, ``counts`` and ``test`` (with ``new_users: N`` > 1, one fold per
    N consecutive subjects of the group, see :func:`new_user_blocks`); ``zero_shot`` into ``sets``
    copies of its ``base`` fold, each holding out ``size`` gestures drawn (seeded) from ``gestures`` (``all``: the
    run's), named ``{name}-{g1}-{g2}-...``, whose oracle is the base fold."""
    expanded = {}
    for name, fold in folds.items():
        if fold["scheme"] == "zero_shot":
            expanded |= zero_shot_folds(name, fold, folds, gestures or [], seed)
            continue
        if fold["scheme"] not in ("leave_one_subject_out", "calibration"):
            expanded[name] = fold
            continue
        group = list(all_subjects) if fold["subjects"] == "all" else list(fold["subjects"])
        if len(group) < 2:
            raise InputError(
                f"folds.{name}: leaves one subject out of {group}, leaving none to train on; select at least two "
                f"subjects, or drop the fold with `{name}: null` under folds"
            )
        rest = {key: value for key, value in fold.items() if key not in ("scheme", "subjects", "new_users")}
        for block in new_user_blocks(name, fold, group):
            fold_name = f"{name}-{block_name(block)}"
            if fold_name in folds:
                raise InputError(f"folds.{name}: expands to {fold_name}, which the configuration already names")
            held_out = {"test_subject": block[0]} if fold.get("new_users", 1) == 1 else {"test_subjects": block}
            expanded[fold_name] = {"scheme": "subjects", "subjects": group, **held_out, **rest, "family": name}
    return expanded


def new_user_blocks(name: str, fold: dict, group: list[str]) -> list[list[str]]:
    """A calibration family's new users fold by fold: the group, in its order, in consecutive blocks of
    ``new_users`` (default 1; the last may be shorter). Each block's network trains on the rest of the group less its
    validation subjects: at least one must remain."""
    size = fold.get("new_users", 1)
    trainers = len(group) - size - fold.get("validation_subjects", 0)
    if size > 1 and trainers < 1:
        most = len(group) - fold.get("validation_subjects", 0) - 1
        raise InputError(
            f"folds.{name}.new_users: {size} new users per fold leave no training subject (the group has "
            f"{len(group)}, {fold.get('validation_subjects', 0)} validating each fold); use at most {max(most, 1)}"
        )
    return [group[start : start + size] for start in range(0, len(group), size)]


def block_name(block: list[str]) -> str:
    """``db1-s3-s4`` for new users db1/s3 and db1/s4: each subject's name, its database left out after the first
    subject of the same database (``db2-s40-db3-s1`` across databases)."""
    parts, database = [], None
    for subject in block:
        db, number = subject.split("/")
        parts += [number] if db == database else [db, number]
        database = db
    return "-".join(parts)


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


def fold_runs(models: dict, folds: dict, zero_shot_only: bool = False) -> list:
    """The (model, fold) pairs a run trains: every model on every fold, unless a fold names its ``models``;
    optionally zero-shot folds only (those with ``unseen`` gestures)."""
    return [
        (model, name)
        for name, fold in folds.items()
        for model in fold.get("models", list(models))
        if not (zero_shot_only and not fold.get("unseen"))
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
        held_out, new_users, trainers = validation_subjects(fold), test_subjects(fold), training_subjects(fold)
        if held_out:
            validation = data.select(subjects=held_out, classes=seen)
            validation_pool = {index[s]: list(range(1, n_reps + 1)) for s in held_out}
        else:
            validation = data.select(subjects=trainers, classes=seen, repetitions=fold["validation"])
            validation_pool = {index[s]: sorted(set(fold["validation"]) | set(fold["train"])) for s in trainers}
        # Every repetition of each new user is scored, or the fold's test repetitions (calibration folds); each new
        # user adapts on its own scored repetitions only.
        scored = fold.get("test", list(range(1, n_reps + 1)))
        return FoldSelections(
            train=data.select(subjects=trainers, classes=seen, repetitions=fold["train"]),
            validation=validation,
            test=data.select(subjects=new_users, repetitions=scored),
            validation_pool=validation_pool,
            test_pool={index[s]: sorted(scored) for s in new_users},
        )
    raise InputError(f"folds.{name}.scheme: unknown scheme {fold['scheme']!r}; use 'repetitions' or 'subjects'")


def setup_repetitions(selections: FoldSelections, with_validation: bool) -> dict[int, list[int]]:
    """Per subject the training selection holds, the repetitions recorded before a controller is used (the
    ``setup`` adaptation protocol, :mod:`.adaptation`): its training repetitions, and with ``with_validation`` its
    validation ones (for scoring its test repetitions; a validation repetition being scored adapts on the training
    ones alone). A subject that never trains (a new user, a validation subject) has none."""
    train, validation = selections.train, selections.validation
    validating = set(validation.subjects.tolist()) if with_validation else set()
    setup = {}
    for subject in train.subjects.tolist():
        repetitions = set((train.repetitions + 1).tolist())
        if subject in validating:
            repetitions |= set((validation.repetitions + 1).tolist())
        setup[subject] = sorted(repetitions)
    return setup


def held_out_frames(streams: Streams, unseen: torch.Tensor, rest: int) -> torch.Tensor:
    """[frame] True for every run of an ``unseen`` class in the stream (by its relabelled class) and for the rest runs
    right before and right after each: the release after a movement is labelled rest but is still that movement's
    EMG, and the rest before it holds the cue, with an onset the relabelling may have placed a little late. A run is
    a stretch of one class, one subject and one repetition."""
    import torch

    classes, subject, repetition = streams.classes, streams.subject, streams.repetition
    if len(classes) == 0:
        return torch.zeros(0, dtype=torch.bool, device=classes.device)
    starts = torch.ones(len(classes), dtype=torch.bool, device=classes.device)
    starts[1:] = (classes[1:] != classes[:-1]) | (subject[1:] != subject[:-1]) | (repetition[1:] != repetition[:-1])
    run = torch.cumsum(starts, 0) - 1  # each frame's run
    run_class, run_subject = classes[starts], subject[starts]
    unseen_run = torch.isin(run_class, unseen.to(classes.device))
    same_subject = run_subject[1:] == run_subject[:-1]
    held = unseen_run.clone()
    held[1:] |= (run_class[1:] == rest) & same_subject & unseen_run[:-1]  # the rest right after an unseen run
    held[:-1] |= (run_class[:-1] == rest) & same_subject & unseen_run[1:]  # the rest right before one
    return held[run]


def training_view(data: DB23, fold: dict, selections: FoldSelections) -> DB23:
    """The data that training, the search, model selection and the rest calibration read: outside the test pool's
    stretches, the fold's held-out frames (:func:`held_out_frames`) are outside every repetition (stream repetition
    0, so that no pool chosen by repetition reads them) and every segment cell overlapping them is invalid (a rest
    segment cut from a held-out release). The test stretches are unchanged: adapting to and scoring the test
    subject's test repetitions is evaluation. Without unseen gestures: ``data`` itself."""
    import copy
    from dataclasses import replace

    import torch

    from ..data.ninapro import REST

    if not fold.get("unseen"):
        return data
    streams = data.streams
    if streams is None:
        raise InputError("holding gestures out of training needs the streams: load DB23 with with_streams=True")
    unseen = torch.tensor([data.classes.index(g) for g in fold["unseen"]], device=streams.classes.device)
    n_subjects, _, n_reps = data.valid.shape
    tested = torch.zeros(n_subjects, n_reps + 1, dtype=torch.bool, device=streams.repetition.device)
    for subject, repetitions in selections.test_pool.items():
        tested[subject, repetitions] = True
    held = held_out_frames(streams, unseen, data.classes.index(REST))
    held &= ~tested[streams.subject, streams.repetition.long()]
    # A cell's segment overlaps held-out frames: their count over its stretch of the stream, from a running sum.
    running = torch.cat((held.new_zeros(1, dtype=torch.long), torch.cumsum(held.long(), 0)))
    start = streams.segment_start.to(held.device)
    first = start.clamp(min=0)
    last = (first + data.emg.shape[3]).clamp(max=len(held))
    overlapping = (start >= 0) & (running[last] - running[first] > 0)
    view = copy.copy(data)
    view.streams = replace(streams, repetition=torch.where(held, 0, streams.repetition))
    view.valid = data.valid & ~overlapping.to(data.valid.device)
    return view
