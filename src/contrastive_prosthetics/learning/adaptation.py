"""Scoring frames, with adaptive batch normalisation when the model uses it: where its statistics come from.

A prosthesis adapts on an unlabelled stream, so the protocol that scores a subject's frames must not adapt on the
frames it scores, nor choose adaptation frames by their labels:

``cross_fitted`` (the default)
    To score repetition r of a subject, batch-norm statistics are re-estimated from that subject's continuous
    recording (every frame: rest, transitions and movements alike) during the other repetitions of its
    adaptation pool (:mod:`.folds`): for a test subject the other test repetitions. Frames are chosen by time
    alone (which repetition's stretch of the session they fall in), never by label, and never overlap the scored
    ones.
``scored_frames`` (kept to compare)
    Statistics from the very segment frames being scored, which were cut by their labels: optimistic.
``batch_statistics`` (the reference's code)
    Batch norm always normalises with the current batch's statistics: the scored segment frames of one subject
    are shuffled (seeded) into batches of ``statistics_batch`` frames, each normalised by its own statistics. As
    optimistic as ``scored_frames``, and a decision then depends on the other frames in its batch.

The continuous recording (the stream evaluation and the rest calibration, :mod:`.stream_scoring`) is scored under
one of three protocols (``evaluation.adaptation_protocol``) for a ``cross_fitted`` model; the first two are
deployable, reading nothing recorded after the frames they score:

``setup`` (the headline)
    The user's recordings made before the controller is used: their training repetitions (and, for a test
    repetition, the validation ones), the session a within-subject model is trained on. A user with none (a new
    user of a leave-one-subject-out fold) adapts as ``past``.
``past``
    A stretch is scored with statistics from the user's recording before it, as a controller that updates its
    statistics every ``evaluation.adaptation_update_s`` of the session would hold them (:func:`past_network`):
    nothing recorded after the stretch starts, nothing of a left-out repetition.
``transductive``
    ``cross_fitted`` as above: the other scored repetitions, later ones included; no controller can do that.
"""

from __future__ import annotations

import copy

import torch

from ..core.errors import InputError
from .dataset import DB23, Selection, evenly_spaced
from .models import adapt_batchnorm, batchnorm_layers, batchnorm_statistics, set_batchnorm_statistics
from .poses import with_subject_codes

ADAPTATION_SOURCES = ("cross_fitted", "scored_frames", "batch_statistics")
ADAPTATION_PROTOCOLS = ("setup", "past", "transductive")
DEPLOYABLE = ("setup", "past")  # the protocols that read nothing recorded after the scored frames
MIN_PAST_S = 2.0  # less of a user's recording than this, and no statistics are theirs yet: the stretch waits


def _scores(model: torch.nn.Module, data: DB23, selection: Selection, batch: int, context: int) -> tuple:
    outputs, indices = [], []
    for x, index in data.frames(selection, batch_size=batch, context=context):
        outputs.append(model(x).float())
        indices.append(index)
    return outputs, indices


def adaptation_frames(
    data: DB23, subject: int, scored_repetition: int, pool: list[int], context: int, limit: int | None
) -> torch.Tensor:
    """The cross-fitted adaptation set of one subject's scored repetition: its stream during the other
    repetitions of ``pool`` (at most ``limit`` frames, evenly spaced over it)."""
    sources = [r for r in pool if r != scored_repetition]
    if not sources:
        raise InputError(
            f"{data.subject_names[subject]}: cross-fitted adaptation of repetition {scored_repetition} needs another "
            f"repetition to adapt on, and the fold offers only {pool}: score at least two repetitions (folds), or "
            "set the model's adaptation to scored_frames"
        )
    return data.stream_frames(subject, sources, context, limit)


def cross_fitted_network(
    model: torch.nn.Module,
    data: DB23,
    subject: int,
    scored_repetition: int,
    pool: list[int],
    context: int,
    limit: int | None,
    batch: int = 1 << 16,
    memo: dict | None = None,
) -> torch.nn.Module:
    """A copy of ``model`` adapted to score one subject's repetition, cross-fitted (:func:`adaptation_frames`).

    ``memo`` (optional, a dict the caller keeps while the model's weights stay the same) keeps the statistics each
    adaptation gave, so that scoring the same repetition again (the validation segments, then the validation
    streams; the test segments, then the test rest windows) reuses them: the same bits, one adaptation."""
    key = (subject, scored_repetition, tuple(pool), context, limit, batch)
    adapted = copy.deepcopy(model)
    if memo is not None and key in memo:
        set_batchnorm_statistics(adapted, memo[key])
        return adapted
    adapt_batchnorm(adapted, adaptation_frames(data, subject, scored_repetition, pool, context, limit), batch)
    if memo is not None:
        memo[key] = batchnorm_statistics(adapted)
    return adapted


def protocol_of(adabn: bool, adaptation: str, protocol: str) -> str:
    """What a model's streams are scored under: ``none`` without AdaBN (nothing adapts), the deployable protocol
    asked for (``setup``, ``past``) for a cross-fitted model, else ``transductive`` (``scored_frames`` and
    ``batch_statistics`` read the scored frames themselves)."""
    if not adabn:
        return "none"
    if protocol not in ADAPTATION_PROTOCOLS:
        raise InputError(f"evaluation.adaptation_protocol: {protocol!r}; choose from {list(ADAPTATION_PROTOCOLS)}")
    return protocol if adaptation == "cross_fitted" else "transductive"


def past_positions(
    data: DB23, subject: int, start: int, update_frames: int, left_out: list[int]
) -> tuple[torch.Tensor, int]:
    """Stream positions a ``past`` adaptation of the subject's stretch starting at ``start`` reads: the subject's
    frames before the last statistics update at or before ``start`` (updates every ``update_frames`` from the
    subject's first frame), outside the ``left_out`` repetitions (and outside every repetition, 0: a held-out
    stretch); and that update's position (what the statistics depend on)."""
    streams = data.streams
    first = int(streams.offset[subject])
    cut = first + (start - first) // max(update_frames, 1) * max(update_frames, 1)
    position = torch.arange(first, cut, device=streams.repetition.device)
    outside = torch.isin(streams.repetition[first:cut], torch.tensor([0, *left_out], device=position.device))
    return position[~outside], cut


def past_network(
    model: torch.nn.Module,
    data: DB23,
    subject: int,
    start: int,
    *,
    update_frames: int,
    left_out: list[int],
    limit: int | None,
    memo: dict | None = None,
) -> torch.nn.Module | None:
    """A copy of ``model`` adapted as a deployed controller would be when the subject's stretch starting at stream
    position ``start`` begins: on the frames :func:`past_positions` gives (at most ``limit``, evenly spaced); None
    while they hold less than ``MIN_PAST_S`` (the controller has not heard the user yet). ``memo``: statistics per
    update, reused by the stretches after the same one."""
    position, cut = past_positions(data, subject, start, update_frames, left_out)
    if len(position) < MIN_PAST_S * data.frame_rate_hz:
        return None
    key = ("past", subject, cut, tuple(sorted(left_out)), model.config.context, limit)
    adapted = copy.deepcopy(model)
    if memo is not None and key in memo:
        set_batchnorm_statistics(adapted, memo[key])
        return adapted
    frames = data.stream_context(evenly_spaced(position, limit), model.config.context).to(data.device)
    adapt_batchnorm(adapted, frames)
    if memo is not None:
        memo[key] = batchnorm_statistics(adapted)
    return adapted


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    data: DB23,
    selection: Selection,
    *,
    adabn: bool,
    adaptation: str,
    pool: dict[int, list[int]],
    batch: int,
    context: int = 1,
    limit: int | None = None,
    statistics_batch: int = 1024,
    seed: int = 0,
    codes: torch.Tensor | None = None,
    memo: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits over all classes for every frame of ``selection`` and the frames' (subject, class, rep, frame), in
    that order. With ``adabn``, statistics come from ``adaptation`` (see the module's docstring); ``pool`` maps a
    subject index to the repetitions that may adapt it; ``limit`` caps the frames a cross-fitted adaptation reads
    (evenly spaced over its stretch: neighbouring frames of a 200 ms RMS are nearly equal, so statistics hardly
    move, and the cost of adapting every subject × repetition stays bounded). ``codes`` ([subject, class, code]),
    when given, are the class codes each subject is scored with (a zero-shot fold's pose prototypes, :mod:`.poses`);
    otherwise the model's own. ``memo``: cross-fitted statistics to reuse (:func:`cross_fitted_network`)."""
    model.eval()
    if codes is not None:
        settings = dict(adabn=adabn, adaptation=adaptation, pool=pool, batch=batch, context=context, limit=limit)
        settings |= dict(statistics_batch=statistics_batch, seed=seed, memo=memo)
        outputs, indices = [], []
        for subject in selection.subjects.tolist():
            one = Selection(torch.tensor([subject]), selection.classes, selection.repetitions)
            if data.selection_mask(one).any():
                logits, index = predict(with_subject_codes(model, codes, subject), data, one, **settings)
                outputs.append(logits)
                indices.append(index)
        return _ordered(outputs, indices)
    if not adabn:
        outputs, indices = _scores(model, data, selection, batch, context)
        return _ordered(outputs, indices)
    if adaptation not in ADAPTATION_SOURCES:
        raise InputError(f"unknown adaptation {adaptation!r}; choose from {list(ADAPTATION_SOURCES)}")
    outputs, indices = [], []
    for subject in selection.subjects.tolist():
        one = Selection(torch.tensor([subject]), selection.classes, selection.repetitions)
        if adaptation == "batch_statistics":
            part = _batch_statistics_scores(model, data, one, statistics_batch, context, seed)
            outputs += part[0]
            indices += part[1]
            continue
        if adaptation == "scored_frames":
            frames = [x for x, _ in data.frames(one, batch_size=batch, context=context)]
            if not frames:
                continue
            scorer = copy.deepcopy(model)
            adapt_batchnorm(scorer, torch.cat(frames), batch)
            part = _scores(scorer, data, one, batch, context)
            outputs += part[0]
            indices += part[1]
            continue
        for repetition in selection.repetitions.tolist():
            scored = Selection(torch.tensor([subject]), selection.classes, torch.tensor([repetition]))
            if not data.selection_mask(scored).any():
                continue
            pooled = pool.get(subject, [])
            scorer = cross_fitted_network(model, data, subject, repetition + 1, pooled, context, limit, batch, memo)
            part = _scores(scorer, data, scored, batch, context)
            outputs += part[0]
            indices += part[1]
    return _ordered(outputs, indices)


def _batch_statistics_scores(
    model: torch.nn.Module, data: DB23, one: Selection, statistics_batch: int, context: int, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One subject's frames scored in shuffled batches, batch norm on each batch's own statistics."""
    frames = [(x, index) for x, index in data.frames(one, batch_size=1 << 30, context=context)]
    if not frames:
        return [], []
    x, index = frames[0]
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
    scorer = copy.deepcopy(model)
    scorer.eval()
    for layer in batchnorm_layers(scorer):
        layer.train()  # batch statistics; dropout stays off
    outputs, indices = [], []
    for start in range(0, len(order), statistics_batch):
        chosen = order[start : start + statistics_batch]
        outputs.append(scorer(x[chosen]).float())
        indices.append(index[chosen])
    return outputs, indices


def _ordered(outputs: list[torch.Tensor], indices: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows in (subject, class, rep, frame) order, however they were scored."""
    if not outputs:
        raise InputError("the selection holds no valid frame to score")
    logits, index = torch.cat(outputs), torch.cat(indices)
    key = index[:, 0]
    for column in range(1, 4):
        key = key * (int(index[:, column].max()) + 1) + index[:, column]
    order = torch.argsort(key)
    return logits[order], index[order]


def pooled_network(
    model: torch.nn.Module, data: DB23, selection: Selection, context: int, limit: int
) -> torch.nn.Module:
    """A copy of ``model`` whose batch-norm statistics are those of the training subjects pooled: every subject of
    ``selection`` contributes its stream during the selection's repetitions, ``limit`` // subjects frames each (evenly
    spaced, labels unread). An AdaBN model's running statistics after training are its last batches' (one subject's:
    no one's); these are what it can use for a person it has read nothing of (a calibration-free start)."""
    subjects = selection.subjects.tolist()
    repetitions = (selection.repetitions + 1).tolist()  # Selection holds 0-based repetitions
    share = max(limit // len(subjects), 1)
    frames = torch.cat([data.stream_frames(subject, repetitions, context, share) for subject in subjects])
    pooled = copy.deepcopy(model)
    adapt_batchnorm(pooled, frames)
    return pooled
