"""Windows and majority votes over test frames (``logits.pt`` payloads), the smoothing a controller applies.

A frame's prediction within a set of classes is the argmax of its logits over that set; equal logits go to the
lower class index, as ``torch.argmax`` does. A window is ``window_frames`` consecutive frames of one (subject,
class, repetition) segment (of one ``segment``, for payloads that number their segments, as the rest windows'
of :mod:`.rest_windows` do); an incomplete trailing window is not scored. A window's vote is its most frequent
frame prediction; a tie is broken by the larger sum of the tied classes' logits over the window's frames, and a
tie in that sum by the lower class index: the controller's rule, :func:`..learning.decisions.vote`. Window lengths
in frames come from milliseconds and the payload's frame rate (:func:`window_frames_for`).
"""

from __future__ import annotations

import torch

from ..core.errors import InputError
from ..core.units import ms_to_frames
from ..data.ninapro import REST
from ..learning.decisions import vote


def rest_index(classes: list[str]) -> int | None:
    return 0 if classes and classes[0] == REST else None


def gesture_indices(classes: list[str]) -> torch.Tensor:
    start = 0 if rest_index(classes) is None else 1
    return torch.arange(start, len(classes))


def checked_scores(payload: dict) -> torch.Tensor:
    """The payload's logits. NaN is refused: argmax takes it for the largest value, every comparison for none."""
    scores = payload["logits"]
    if torch.isnan(scores).any():
        raise InputError(f"logits of {payload.get('model')}/{payload.get('fold')} contain NaN")
    return scores


def frame_ms(payload: dict) -> float:
    """Milliseconds between consecutive frames of a logits payload."""
    return 1000.0 / payload["frame_rate_hz"]


def window_frames_for(window_ms: float, frame_rate_hz: float) -> int:
    """Frames in a vote window of ``window_ms`` at ``frame_rate_hz`` (rounded); at least one frame's length."""
    period_ms = 1000.0 / frame_rate_hz
    if window_ms < period_ms:
        raise InputError(
            f"evaluation.vote_window_ms = {window_ms:g} is shorter than one frame ({period_ms:g} ms at "
            f"{frame_rate_hz:g} Hz): set it to at least {period_ms:g}"
        )
    return ms_to_frames(window_ms, frame_rate_hz)


def _segments(payload: dict) -> torch.Tensor:
    """Each frame's (subject, label, repetition) segment, numbered in that lexicographic order; or, when the payload
    numbers its segments itself (``segment`` per frame), in that number's order."""
    if "segment" in payload:
        return torch.unique(payload["segment"], return_inverse=True)[1]
    label, repetition = payload["label"], payload["repetition"]
    key = (payload["subject"] * (int(label.max()) + 1) + label) * (int(repetition.max()) + 1) + repetition
    return torch.unique(key, return_inverse=True)[1]


def window_ids(payload: dict, window_frames: int) -> tuple[torch.Tensor, int]:
    """Each frame's window: ``window_frames`` consecutive frames of one (subject, label, repetition) segment.

    Windows do not overlap and are numbered segment by segment in (subject, label, repetition) order, then in
    time. Frames of an incomplete trailing window get -1 and are not scored. ``frame`` must count 0, 1, ...
    within each segment (as in logits.pt); the rows may come in any order.
    """
    if window_frames < 1:
        raise ValueError(f"window_frames must be at least 1, not {window_frames}")
    frame = payload["frame"]
    if frame.numel() == 0:
        return torch.empty(0, dtype=torch.long), 0
    segment = _segments(payload)
    whole_windows = torch.bincount(segment) // window_frames  # a segment's length is its frame count
    first_window = torch.cumsum(whole_windows, 0) - whole_windows
    within = frame // window_frames
    ids = torch.where(within < whole_windows[segment], first_window[segment] + within, -1)
    return ids, int(whole_windows.sum())


def window_frame_matrix(ids: torch.Tensor, n_windows: int, window_frames: int) -> torch.Tensor:
    """[window, frame] row indices of every window's frames (each scored window is complete)."""
    scored = (ids >= 0).nonzero().squeeze(1)
    return scored[torch.argsort(ids[scored], stable=True)].view(n_windows, window_frames)


def window_score_sums(scores: torch.Tensor, ids: torch.Tensor, n_windows: int) -> torch.Tensor:
    """[window, class] sum of each class's logit over the window's frames: the vote's tie-breaker.

    Both subset evaluations take it from here, from the same payload, so they break ties in float sums alike.
    """
    scored = ids >= 0
    return torch.zeros(n_windows, scores.shape[1], dtype=scores.dtype).index_add_(0, ids[scored], scores[scored])


def majority_vote(
    predictions: torch.Tensor,
    scores: torch.Tensor,
    ids: torch.Tensor,
    n_windows: int,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each window's most frequent frame prediction: [n_windows] class indices.

    A tie between classes predicted equally often goes to the class with the larger summed score (its logit
    summed over the window's frames), among the tied classes only; a tie in that sum to the lower class index.
    Frames with id -1 take no part. Classes outside ``allowed`` (a [C] mask) never win.
    """
    n_classes = scores.shape[1]
    scored = ids >= 0
    counts = torch.bincount(ids[scored] * n_classes + predictions[scored], minlength=n_windows * n_classes)
    return vote(counts.view(n_windows, n_classes), window_score_sums(scores, ids, n_windows), allowed)


def window_outcomes(
    payload: dict, window_frames: int, frame_predictions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(vote, true class, subject) of every scored window, over all classes."""
    if window_frames == 1:  # a single frame's vote is its prediction
        return frame_predictions, payload["label"], payload["subject"]
    ids, n_windows = window_ids(payload, window_frames)
    votes = majority_vote(frame_predictions, payload["logits"], ids, n_windows)
    first = window_frame_matrix(ids, n_windows, window_frames)[:, 0]
    return votes, payload["label"][first], payload["subject"][first]


def voting_tallies(payload: dict, max_window_frames: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per window length 1..max: [unit, class] right and tested windows."""
    n_units, n_classes = len(payload["subjects"]), len(payload["classes"])
    predictions = checked_scores(payload).argmax(1)
    tallies = []
    for window_frames in range(1, max_window_frames + 1):
        votes, truth, unit = window_outcomes(payload, window_frames, predictions)
        key = unit * n_classes + truth
        windows = torch.bincount(key, minlength=n_units * n_classes).view(n_units, n_classes)
        right = torch.bincount(key[votes == truth], minlength=n_units * n_classes).view(n_units, n_classes)
        tallies.append((right, windows))
    return tallies
