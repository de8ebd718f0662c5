"""The test rest windows: every stretch of rest in the test repetitions' recording long enough for a segment, cut
into windows of the segment's length and scored as the segments are, so that the segment evaluation's rest false
activation (:mod:`..evaluation.rest_windows`) counts every rest run of the test repetitions, not the one rest
segment per repetition that conversion cuts.

Per test subject and test repetition, every run of consecutive rest frames of that repetition in the continuous
stream (one before every movement, and the recording's trailing rest), less ``training.guard_ms`` at each side of
every change of label (where the relabelled label itself is uncertain; training leaves those frames out too), holds
as many non-overlapping windows of the segment's length as fit, the block of them centred in the run, as the rest
segment is centred in its run. The stream metrics' 500 ms transition span is not cut away: rest right after a
release is rest a controller must hold too, and the stream metrics report it apart.

A window's frames are scored as a segment's: by the same network with the same adaptation state (cross-fitted
AdaBN: the subject's recording during the other test repetitions; ``scored_frames`` and ``batch_statistics``: the
statistics of the subject's scored segments, the latter's shuffled batches having no counterpart for frames outside
them), the same input (normalised stream frames, of which the segments are exact slices) and context, and, for LDA
(:func:`.lda.lda_rest_windows`), the same fitted models on the stream's Hudgins features.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch

from ..data.ninapro import REST
from .adaptation import cross_fitted_network
from .dataset import DB23, Selection
from .logits import RestWindows
from .models import adapt_batchnorm
from .poses import with_subject_codes
from .stream_sampling import guard_mask, guard_width

if TYPE_CHECKING:
    from .train import Setting


def rest_window_starts(data: DB23, selection: Selection, length: int, guard_frames: int) -> torch.Tensor:
    """[window] first stream frame of every rest window of the selection's subjects and repetitions, in stream
    order (see the module): windows of ``length`` frames in the rest runs less ``guard_frames`` at each side of
    every change of label."""
    streams = data.streams
    subject, repetition, classes = (t.cpu() for t in (streams.subject, streams.repetition, streams.classes))
    eligible = (
        torch.isin(subject, selection.subjects.cpu())
        & torch.isin(repetition, selection.repetitions.cpu() + 1)  # the stream's repetitions are 1-based
        & (classes == data.classes.index(REST))
        & ~guard_mask(classes, subject, guard_frames)
    )
    position = eligible.nonzero().squeeze(1)
    if length < 1 or not len(position):
        return torch.zeros(0, dtype=torch.long)
    key = subject[position] * (int(repetition.max()) + 1) + repetition[position]
    run_starts = torch.ones(len(position), dtype=torch.bool)
    run_starts[1:] = (position[1:] != position[:-1] + 1) | (key[1:] != key[:-1])
    run = torch.cumsum(run_starts, 0) - 1
    run_length = torch.bincount(run)
    fitting = run_length // length
    shift = (run_length - fitting * length) // 2  # the block of windows centred in its run
    offset = torch.arange(len(position)) - run_starts.nonzero().squeeze(1)[run] - shift[run]
    first = (offset >= 0) & (offset % length == 0) & (offset < fitting[run] * length)
    return position[first]


def window_positions(start: torch.Tensor, length: int) -> torch.Tensor:
    """[window, frame] stream positions of the windows starting at ``start``."""
    return start[:, None] + torch.arange(length)


def located(data: DB23, start: torch.Tensor, logits: torch.Tensor) -> RestWindows:
    """The windows starting at ``start`` (stream positions) with their scores, as logits.pt stores them."""
    streams = data.streams
    subject = streams.subject.cpu()[start]
    return RestWindows(logits, subject, streams.repetition.cpu()[start].long(), start - streams.offset.cpu()[subject])


@torch.no_grad()
def network_rest_windows(
    model: torch.nn.Module,
    data: DB23,
    selection: Selection,
    pool: dict[int, list[int]],
    *,
    adabn: bool,
    adaptation: str,
    batch: int,
    context: int,
    limit: int | None,
    codes: torch.Tensor | None,
    guard_frames: int,
    memo: dict | None = None,
) -> RestWindows:
    """The selection's rest windows scored by a network as :func:`.adaptation.predict` scores its segments (see the
    module): ``data`` normalised, the other arguments predict's."""
    model.eval()
    length, n_classes = data.emg.shape[3], len(data.classes)
    start = rest_window_starts(data, selection, length, guard_frames)
    windows = located(data, start, torch.empty((len(start), length, n_classes)))
    for subject in windows.subject.unique().tolist():
        coded = with_subject_codes(model, codes, subject)
        scorer = coded
        if adabn and adaptation != "cross_fitted":  # the statistics of the subject's scored segments
            one = Selection(torch.tensor([subject]), selection.classes, selection.repetitions)
            frames = [x for x, _ in data.frames(one, batch, context)]
            if frames:
                scorer = copy.deepcopy(coded)
                adapt_batchnorm(scorer, torch.cat(frames), batch)
        for repetition in windows.repetition[windows.subject == subject].unique().tolist():
            if adabn and adaptation == "cross_fitted":
                pooled = pool.get(subject, [])
                scorer = cross_fitted_network(coded, data, subject, repetition, pooled, context, limit, batch, memo)
            rows = ((windows.subject == subject) & (windows.repetition == repetition)).nonzero().squeeze(1)
            positions = window_positions(start[rows], length).reshape(-1)
            scores = []
            for chunk in positions.split(batch):
                x = data.stream_context(chunk.to(data.streams.frames.device), context)
                scores.append(scorer(x.to(data.device, non_blocking=data.pinned)).float().cpu())
            windows.logits[rows] = torch.cat(scores).view(len(rows), length, n_classes)
    return windows


def setting_rest_windows(setting: Setting, model: torch.nn.Module, memo: dict | None = None) -> RestWindows:
    """The test selection's rest windows scored by a trained network of ``setting`` (:class:`.train.Setting`), as
    :meth:`.train.Setting.scores` scores the test segments (with their cross-fitted statistics, ``memo``)."""
    settings = setting.settings
    return network_rest_windows(
        model,
        setting.data,
        setting.selections.test,
        setting.selections.test_pool,
        adabn=setting.adabn,
        adaptation=setting.adaptation,
        batch=settings.evaluation_batch,
        context=setting.config.context,
        limit=settings.adaptation_frames,
        codes=setting.subject_codes,
        guard_frames=guard_width(settings.guard_ms, setting.data.frame_rate_hz),
        memo=memo,
    )
