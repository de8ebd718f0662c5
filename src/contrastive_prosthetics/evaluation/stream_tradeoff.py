"""The rest bias's whole trade-off on the test streams: movement accuracy and onset delay against rest false
activation, so that models (LDA included) can be compared along the curve and not only at their calibrated point.

A bias on rest's logit moves one operating point along one curve: more bias keeps rest quieter and costs movement
frames and onset delay. The stream evaluation decides at the bias calibrated on validation streams (offset 0
here); this table repeats the k = K decisions (every gesture allowed) at offsets around it. The offsets are placed
at quantiles of the test rest frames' margin (best gesture's score minus rest's), so that the curve spans false
activations from nearly 0 to nearly 1 whatever the scale of a model's scores; they only place the points of a
drawing, nothing is chosen with them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..data.ninapro import REST
from ..learning.decision_rules import decide_rule_subsets
from .stream_metrics import stream_metrics

MARGIN_QUANTILES = np.linspace(0.02, 0.98, 13)  # offsets: where the rest frames' margin has these quantiles


def bias_offsets(scored: list, rest: int) -> np.ndarray:
    """0 (the calibrated bias) and the offsets at :data:`MARGIN_QUANTILES` of the rest frames' margin: the best
    gesture's score minus rest's, the offset at which a frame turns from a gesture to rest."""
    margins = []
    for _, _, logits, truth in scored:
        at_rest = logits[torch.from_numpy(truth == rest)]
        gestures = at_rest.clone()
        gestures[:, rest] = -torch.inf
        margins.append((gestures.max(1).values - at_rest[:, rest]).numpy())
    margins = np.concatenate(margins) if margins else np.zeros(0)
    if not len(margins):
        return np.zeros(1)
    return np.unique(np.concatenate(([0.0], np.quantile(margins, MARGIN_QUANTILES))))


def tradeoff_table(
    scored: list,
    classes: list[str],
    every_gesture: torch.Tensor,
    vote_frames: list[int],
    frame_ms: float,
    rule=None,
) -> pd.DataFrame:
    """One row per (bias offset, vote): the k = K stream metrics (gestures ``every_gesture``: one subset of all)
    over every scored stretch ``(subject, positions, logits, truth)``, with ``offset`` added to rest's logit;
    decided by ``rule`` (:class:`..learning.decision_rules.Hysteresis`, its own rest offset on top) when given."""
    rest = classes.index(REST)
    offsets = bias_offsets(scored, rest)
    if rule is not None:  # every offset decided in one pass of the rule's per-frame loop, as a subset of its own
        subsets = {len(classes) - 1: every_gesture.expand(len(offsets), -1)}
        metrics = stream_metrics(scored, classes, subsets, vote_frames, frame_ms, rule=_SweptRule(rule, offsets))
        swept = offsets[metrics["trial"].to_numpy()]
        return metrics.assign(trial=0, bias_offset=swept.astype(float), calibrated=swept == 0.0)
    rows = []
    for offset in offsets:
        shift = torch.zeros(len(classes))
        shift[rest] = float(offset)
        shifted = [(subject, positions, logits + shift, truth) for subject, positions, logits, truth in scored]
        metrics = stream_metrics(shifted, classes, {len(classes) - 1: every_gesture}, vote_frames, frame_ms, rule=rule)
        rows.append(metrics.assign(bias_offset=float(offset), calibrated=bool(offset == 0.0)))
    return pd.concat(rows, ignore_index=True)


class _SweptRule:
    """A decision rule (:class:`..learning.decision_rules.Hysteresis`) deciding its subsets (copies of one subset)
    each with the next of ``offsets`` added to rest's logit: ``stream_metrics`` then scores every offset in one
    pass, the rule's per-frame loop run once rather than once per offset, with the same decisions as the logits
    shifted first."""

    def __init__(self, rule, offsets: np.ndarray):
        self.rule, self.offsets = rule, offsets

    def decide_subsets(self, logits, allowed, vote_frames, starts, rest: int) -> dict[int, torch.Tensor]:
        decided = decide_rule_subsets(self.rule, logits, allowed[:1], starts, rest, rest_shifts=self.offsets)
        return {votes: decided[:, 0] for votes in vote_frames}
