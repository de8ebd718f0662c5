"""Rest false activation over every test rest window, not over the one rest segment per test repetition.

Conversion cuts one rest segment per (class, repetition): per subject and test repetition, one second of rest. A
rest false activation over those rests on a handful of vote windows. logits.pt therefore also holds the test rest
windows (``rest_window_*``): every window of the segment's length in the rest runs of the test repetitions'
recording, cut and scored as segments by :mod:`..learning.rest_windows`. Each is scored as a rest segment: its frames
are predicted (argmax over all classes, or over a subset's), voted over consecutive non-overlapping windows of
``window_frames`` (:mod:`.voting`, the same vote), and, with rest in every subset, a window is a false activation
when its decided class is not rest. Every table's ``rest_false_activation`` counts these windows, and
``rest_windows`` says how many (frames at the frame level and in the per-frame expectation): accuracy, balanced
accuracy, gesture-only accuracy, per-class recall (rest's included) and the confusion counts still count the
segments, unchanged.

The zero-shot evaluation's subset tables count them too, scored among each subset's classes. A payload without rest
windows (hand-made ones) counts its rest segments' windows instead, as the evaluation did before; its
``rest_windows`` says so.
"""

from __future__ import annotations

import torch

from ..learning.logits import PER_FRAME
from .voting import checked_scores, rest_index, window_outcomes

ROWS = (*PER_FRAME, "segment")  # the per-frame keys of a payload, segment numbers included
LEVELS = ("frame", "vote")


def rest_window_payload(payload: dict) -> dict | None:
    """The payload's rest windows as a payload of their own (every frame one row, label rest, each window its own
    ``segment``, numbered in logits.pt's order, ``frame`` 0, 1, ... within it); None without rest windows or rest."""
    logits, rest = payload.get("rest_window_logits"), rest_index(payload["classes"])
    if logits is None or rest is None:
        return None
    n_windows, length, n_classes = logits.shape
    per_window = {
        "subject": payload["rest_window_subject"],
        "repetition": payload["rest_window_repetition"],
        "segment": torch.arange(n_windows),
    }
    rows = {key: value.long().repeat_interleave(length) for key, value in per_window.items()}
    return {key: value for key, value in payload.items() if key not in ROWS and not key.startswith("rest_window_")} | {
        "logits": logits.reshape(n_windows * length, n_classes),
        "label": torch.full((n_windows * length,), rest, dtype=torch.long),
        "frame": torch.arange(length).repeat(n_windows),
        **rows,
    }


def select_rows(payload: dict, mask: torch.Tensor) -> dict:
    """The payload's rows (frames) where ``mask`` holds; everything per file as it is."""
    return {key: value[mask] if key in ROWS else value for key, value in payload.items()}


def rest_tallies(rest: dict, window_frames: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per level (frame, vote: ``window_frames``), over all classes: ([unit] rest windows decided as rest, [unit]
    rest windows) of a :func:`rest_window_payload`; the false activations are the others."""
    n_units, rest_class = len(rest["subjects"]), rest_index(rest["classes"])
    predictions = checked_scores(rest).argmax(1)
    tallies = {}
    for level, frames in zip(LEVELS, (1, window_frames), strict=True):
        votes, _, unit = window_outcomes(rest, frames, predictions)
        right = torch.bincount(unit[votes == rest_class], minlength=n_units)
        tallies[level] = right, torch.bincount(unit, minlength=n_units)
    return tallies


def segment_rest_tallies(confusions: torch.Tensor, rest: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """([unit] rest segment windows decided as rest, [unit] rest segment windows) from [unit, true, predicted]
    confusions: a payload's rest false activation without rest windows (zeros without rest)."""
    if rest is None:
        zeros = torch.zeros(len(confusions), dtype=torch.long)
        return zeros, zeros
    return confusions[:, rest, rest], confusions[:, rest].sum(1)
