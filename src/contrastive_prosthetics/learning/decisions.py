"""The controller's decision rule, shared by the stream evaluation and the real-time controller: each frame's most
similar class among the chosen gestures + rest, then a causal majority vote over the last ``vote_frames`` decisions
(ties to the larger summed score, then the lower class index).

:func:`vote` is the one home of that tie rule: the causal votes here, the stream metrics' many subsets at once and
the windows of the offline evaluation (:mod:`..evaluation.voting`) all break their ties through it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..core.errors import InputError
from ..data.ninapro import REST


def allowed_classes(classes: list[str], gestures: list[str]) -> torch.Tensor:
    """[class] mask of the chosen gestures, plus rest (a prosthesis must be able to do nothing)."""
    unknown = [g for g in gestures if g not in classes]
    if unknown:
        raise InputError(f"unknown gesture(s) {unknown}; the model knows {classes[1:]}")
    return torch.tensor([name == REST or name in gestures for name in classes])


def vote(counts: torch.Tensor, score_sums: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """The class each row of ``counts`` [row, class] (votes) goes to: the most votes among the ``allowed`` classes
    ([class] or [row, class] mask; None: every class), a tie to the larger of ``score_sums`` [row, class], a tie in
    that sum to the lower class index. The sums are the caller's, in its own order and precision."""
    if allowed is not None:
        counts = counts.masked_fill(~allowed, -1)
    tied = counts == counts.amax(1, keepdim=True)
    tied_sums = score_sums.masked_fill(~tied, -math.inf)
    # Comparing against the tied classes' best sum (not taking a plain argmax) keeps the winner among the tied
    # classes even when their sums are -inf.
    winners = tied & (tied_sums == tied_sums.amax(1, keepdim=True))
    return winners.to(torch.uint8).argmax(1)  # argmax returns the first of equal maxima: the lower index


def window_score_sums(
    logits: torch.Tensor, frames: torch.Tensor, vote_frames: int, offsets: torch.Tensor | None = None
) -> torch.Tensor:
    """[frame of ``frames``, class] float64 sums of the scores of the last ``vote_frames`` frames up to each of
    ``frames`` (never before its stretch's start, ``offsets`` [frame] frames back; default: one stretch from frame
    0), added oldest to newest from zero: the sums a tied vote is broken by. Only the frames asked for are summed
    (ties are few); an exact zero added outside the window leaves a sum's bits as they are, so each row is the
    same bits as summing the whole recording at once."""
    n = max(vote_frames, 1)
    reach = frames if offsets is None else offsets[frames]  # how far back the frame's stretch goes
    sums = torch.zeros((len(frames), logits.shape[1]), dtype=torch.float64)
    for back in range(n - 1, -1, -1):
        inside = (reach >= back)[:, None]
        sums += torch.where(inside, logits[(frames - back).clamp(min=0)].double(), 0.0)
    return sums


def _window_votes(logits: torch.Tensor, allowed: torch.Tensor, n: int) -> torch.Tensor:
    """[frame, class] votes over the last ``n`` frames (fewer at the start) for each frame's most similar allowed
    class."""
    n_frames, n_classes = logits.shape
    predictions = logits.masked_fill(~allowed, -torch.inf).argmax(1)
    cumulative = torch.nn.functional.one_hot(predictions, n_classes).cumsum(0)
    before = torch.cat((torch.zeros((n, n_classes), dtype=cumulative.dtype), cumulative))[:n_frames]
    return cumulative - before


def decide(logits: torch.Tensor, allowed: torch.Tensor, vote_frames: int) -> torch.Tensor:
    """Decisions of consecutive frames [frame, class] → [frame] class indices: each frame's most similar allowed
    class, then a causal majority vote over the last ``vote_frames`` of them (fewer at the start; 0 or 1: no
    vote). A tie in votes goes to the larger summed score over those frames, then to the lower class index.

    Score sums run oldest to newest in float64 from zero, so the decision of frame t is the same whether the frames
    before it are scored in one call (offline) or kept by a controller (the last ``vote_frames`` of them).
    """
    n = max(vote_frames, 1)
    counts = _window_votes(logits, allowed, n).masked_fill(~allowed, -1)
    tied = counts == counts.amax(1, keepdim=True)
    decisions = tied.to(torch.uint8).argmax(1)  # the one winner, where the vote has one
    rows = (tied.sum(1) > 1).nonzero().squeeze(1)
    if len(rows):  # the rule's tie-break, on the tied frames' score sums
        decisions[rows] = vote(counts[rows], window_score_sums(logits, rows, n), allowed)
    return decisions


def decide_summing_every_frame(logits: torch.Tensor, allowed: torch.Tensor, vote_frames: int) -> torch.Tensor:
    """:func:`decide` as first written, the reference it is tested and benchmarked against: the score sums of every
    frame's window, whether its vote is tied or not."""
    n, n_frames = max(vote_frames, 1), len(logits)
    scores, sums = logits.double(), torch.zeros(logits.shape, dtype=torch.float64)
    for back in range(min(n, n_frames) - 1, -1, -1):
        sums[back:] += scores[: n_frames - back]
    return vote(_window_votes(logits, allowed, n), sums, allowed)


def decide_latest(latest: np.ndarray, allowed: np.ndarray, vote_frames: int) -> int:
    """:func:`decide`'s decision for the last of the frames ``latest`` [frame, class] (float32 logits, at least
    the last ``vote_frames``), in numpy: the same arithmetic, in the same order, at a fraction of the cost; the tie
    is :func:`vote`'s, on that one row."""
    window = latest[-max(vote_frames, 1) :]
    predictions = np.where(allowed, window, -np.inf).argmax(1)
    counts = np.bincount(predictions, minlength=window.shape[1])
    leader = int(counts.argmax())  # predictions are allowed classes, so the most votes are an allowed class's
    if (counts == counts[leader]).sum() == 1:  # one winner: no tie to break (most frames; the controller's budget)
        return leader
    sums = np.zeros(window.shape[1])
    for row in window:  # oldest first, from zero, in float64: as decide does
        sums += row.astype(np.float64)
    one = torch.from_numpy(counts)[None], torch.from_numpy(sums)[None]  # views, not copies: one row for vote
    return int(vote(*one, torch.as_tensor(allowed))[0])
