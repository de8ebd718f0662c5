"""The exact expectation of per-frame subset-size accuracy over all C(K, k) subsets of k gestures.

Each frame's chance of being right in a random k-subset is a ratio of binomial coefficients (how many subsets hold
its class and no class that beats it), so the expectation over every subset costs one pass over the frames; the
Monte-Carlo mean of :mod:`.subsets` is tested against it. The rest false activation counts the test rest windows
when they are given (:mod:`.rest_windows`), the rest segments otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from .subsets import beats_true_class
from .voting import checked_scores, gesture_indices, rest_index


def _log_binomial(n: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """log C(n, r), -inf where C(n, r) is 0 (r < 0, r > n); float64."""
    n, r = torch.broadcast_tensors(n.double(), r.double())
    possible = (r >= 0) & (r <= n)
    n, r = n.clamp(min=0), r.clamp(min=0)
    value = torch.lgamma(n + 1) - torch.lgamma(r + 1) - torch.lgamma((n - r).clamp(min=0) + 1)
    return torch.where(possible, value, -math.inf)


def exact_subset_accuracy(payload: dict, include_rest: bool = True, rest_windows: dict | None = None) -> pd.DataFrame:
    """Per-frame accuracy and balanced accuracy averaged over all C(K, k) subsets of k gestures, k = 1..K.

    Gesture-only accuracy is, like accuracy, a ratio of expectations (exact when every gesture has as many test
    frames); the rest false-activation rate is exact, since rest frames are scored in every subset. It counts the
    frames of ``rest_windows`` (a :func:`.rest_windows.rest_window_payload`) when given, else the rest segments';
    the ``rest_windows`` column says how many (0 when rest is not in the subsets).

    A frame with true class y is right in subset S iff no class of S beats y (:func:`beats_true_class`). With b gestures
    beating a gesture frame, P(right | y in S) = C(K-1-b, k-1) / C(K-1, k-1), and 0 when rest is in S and beats
    y; a rest frame (rest in every S) is right with probability C(K-b, k) / C(K, k).

    Balanced accuracy is exact: the expectation of the mean recall over the subset's tested classes, which with
    every class tested is (1/(k+1)) [r_rest + (k/K) sum_g r_g], r_c the mean probability over class c's frames
    (1/k without rest). Gestures without test frames still compete but do not count in the mean, so the sum is
    then taken over how many tested gestures S holds; without rest, subsets holding none (balanced accuracy
    undefined, NaN in :func:`.subsets.subset_size_accuracy`) are left out, as pandas' mean leaves out NaN.

    Accuracy is the ratio of expectations sum_n P(y_n in S) P_n / sum_n P(y_n in S): the expected accuracy when
    every class has the same number of test frames (the number scored is then the same for every S), an
    approximation of it otherwise.
    """
    scores = checked_scores(payload)
    counts = _class_counts(payload["label"], payload["classes"], include_rest)
    bins = _frame_bins(scores, payload["label"], counts)
    table = _expected_scores(bins, _subset_ways(bins, counts), counts)
    if rest_windows is None:
        return table.assign(rest_windows=counts.rest_frames if counts.rest_in_subsets else 0)
    false_activation, frames = exact_rest_false_activation(rest_windows, include_rest)
    return table.assign(rest_false_activation=false_activation.numpy(), rest_windows=frames)


def exact_rest_false_activation(rest_windows: dict, include_rest: bool = True) -> tuple[torch.Tensor, int]:
    """([k] the share of the rest frames of ``rest_windows`` (a payload whose frames are all rest) decided as a
    gesture, averaged over all C(K, k) subsets with rest added; the frames counted).

    A rest frame beaten by b gestures (:func:`beats_true_class`) stays rest in the C(K - b, k) subsets that hold
    none of them. NaN (and no frame counted) without rest in the subsets or without rest frames.
    """
    classes = rest_windows["classes"]
    gestures, rest = gesture_indices(classes), rest_index(classes)
    n_gestures, frames = len(gestures), len(rest_windows["label"])
    if not include_rest or rest is None or frames == 0:
        return torch.full((n_gestures,), math.nan, dtype=torch.float64), 0
    beaten = beats_true_class(checked_scores(rest_windows), rest_windows["label"])[:, gestures].sum(1)
    frames_beaten = torch.bincount(beaten, minlength=n_gestures + 1).double()  # [b] frames beaten by b gestures
    b, k = torch.arange(n_gestures + 1)[:, None], torch.arange(1, n_gestures + 1)[None, :]
    stays = (_log_binomial(n_gestures - b, k) - _log_binomial(torch.tensor(n_gestures), k)).exp()  # [b, k]
    return 1 - (frames_beaten[:, None] * stays).sum(0) / frames, frames


@dataclass(frozen=True)
class _ClassCounts:
    """The classes of a payload as the expectation sees them: which are gestures, which have test frames."""

    n_classes: int
    n_gestures: int
    rest: int | None
    rest_in_subsets: bool  # rest is added to every subset
    rest_counted: bool  # rest is one of the classes balanced accuracy averages
    frames_per_class: torch.Tensor
    is_gesture: torch.Tensor
    tested: torch.Tensor  # gestures with test frames
    n_tested: int
    rest_frames: int
    gesture_frames: int


def _class_counts(label: torch.Tensor, classes: list[str], include_rest: bool) -> _ClassCounts:
    n_classes = len(classes)
    gestures = gesture_indices(classes)
    rest = rest_index(classes)
    rest_in_subsets = include_rest and rest is not None
    frames_per_class = torch.bincount(label, minlength=n_classes)
    is_gesture = torch.zeros(n_classes, dtype=torch.bool)
    is_gesture[gestures] = True
    tested = is_gesture & (frames_per_class > 0)
    rest_frames = int(frames_per_class[rest]) if rest is not None else 0
    return _ClassCounts(
        n_classes=n_classes,
        n_gestures=len(gestures),
        rest=rest,
        rest_in_subsets=rest_in_subsets,
        rest_counted=rest_in_subsets and rest_frames > 0,
        frames_per_class=frames_per_class,
        is_gesture=is_gesture,
        tested=tested,
        n_tested=int(tested.sum()),
        rest_frames=rest_frames,
        gesture_frames=int(frames_per_class[gestures].sum()),
    )


@dataclass(frozen=True)
class _FrameBins:
    """The frames that can be right in some subset, tallied by (own gesture, tested beating, untested beating)."""

    own: torch.Tensor  # 1 for a gesture frame (its own class must be one of S's tested gestures), 0 for rest
    tested_beating: torch.Tensor
    untested_beating: torch.Tensor
    frames: torch.Tensor  # frames in the bin (float64)
    weight: torch.Tensor  # sum of 1 / (frames of the frame's class) over the bin (float64), for balanced accuracy


def _frame_bins(scores: torch.Tensor, label: torch.Tensor, counts: _ClassCounts) -> _FrameBins:
    rest, rest_in_subsets = counts.rest, counts.rest_in_subsets
    # Per frame: tested and untested gestures beating its true class, and whether rest does (one matmul).
    kinds = torch.stack(
        (
            counts.tested,
            counts.is_gesture & ~counts.tested,
            torch.arange(counts.n_classes) == (rest if rest is not None else -1),
        )
    )
    tallies = (beats_true_class(scores, label).to(torch.float32) @ kinds.T.to(torch.float32)).long()
    tested_beating, untested_beating, rest_beats = tallies.unbind(1)
    is_rest_frame = label == rest if rest is not None else torch.zeros_like(label, dtype=torch.bool)
    gesture_alive = ~is_rest_frame & ~(rest_beats.bool() & rest_in_subsets)
    alive = gesture_alive | (is_rest_frame & rest_in_subsets)
    own_gesture = (~is_rest_frame).long()  # a gesture frame's own class must be one of S's tested gestures

    # Frames differ only by (own gesture, tested beating, untested beating): tally them once per combination.
    side = counts.n_gestures + 1
    key = ((own_gesture * side + tested_beating) * side + untested_beating)[alive]
    weight = 1.0 / counts.frames_per_class[label[alive]].double()
    bins, index = torch.unique(key, return_inverse=True)
    return _FrameBins(
        own=bins // (side * side),
        tested_beating=bins // side % side,
        untested_beating=bins % side,
        frames=torch.bincount(index, minlength=len(bins)).double(),
        weight=torch.zeros(len(bins), dtype=torch.float64).index_add_(0, index, weight),
    )


def _subset_ways(bins: _FrameBins, counts: _ClassCounts) -> torch.Tensor:
    """ways[bin, k, j]: the share of all k-subsets that hold the frame's own gesture, no class beating it and j
    other tested gestures; its recall then counts 1 / (own + j + rest_counted) in the mean."""
    n_gestures = counts.n_gestures
    k = torch.arange(1, n_gestures + 1)
    j = torch.arange(0, n_gestures + 1)
    own = bins.own[:, None, None]
    tested_free = (counts.n_tested - bins.own - bins.tested_beating)[:, None, None]
    untested_free = (n_gestures - counts.n_tested - bins.untested_beating)[:, None, None]
    k_, j_ = k[None, :, None], j[None, None, :]
    log_ways = (
        _log_binomial(tested_free, j_)
        + _log_binomial(untested_free, k_ - own - j_)
        - _log_binomial(torch.tensor(n_gestures), k_)
    )
    return log_ways.exp()


def _expected_scores(bins: _FrameBins, ways: torch.Tensor, counts: _ClassCounts) -> pd.DataFrame:
    """The expected right frames per k, summed over the bins, as the table of accuracies per k."""
    n_gestures, n_tested, rest_frames = counts.n_gestures, counts.n_tested, counts.rest_frames
    rest_in_subsets, gesture_frames = counts.rest_in_subsets, counts.gesture_frames
    k = torch.arange(1, n_gestures + 1)
    j = torch.arange(0, n_gestures + 1)
    classes_averaged = (bins.own[:, None] + j[None, :] + int(counts.rest_counted)).double()
    right_per_bin = bins.frames[:, None] * ways.sum(2)  # [bin, k] expected right frames
    right = right_per_bin.sum(0)
    gesture_right = right_per_bin[bins.own == 1].sum(0)
    rest_right = right_per_bin[bins.own == 0].sum(0)
    balanced = (bins.weight[:, None] * (ways / classes_averaged[:, None, :].clamp(min=1)).sum(2)).sum(0)
    scored = rest_frames * int(rest_in_subsets) + gesture_frames * k.double() / n_gestures
    if not counts.rest_counted:
        no_tested = _log_binomial(torch.tensor(n_gestures - n_tested), k) - _log_binomial(torch.tensor(n_gestures), k)
        balanced = balanced / (1 - no_tested.exp())
    gesture_accuracy = gesture_right / (gesture_frames * k.double() / n_gestures)
    rest_false_activation = (
        1 - rest_right / rest_frames if rest_in_subsets and rest_frames else torch.full_like(right, torch.nan)
    )
    return pd.DataFrame(
        {
            "k": k.numpy(),
            "accuracy": (right / scored).numpy(),
            "balanced_accuracy": balanced.numpy(),
            "gesture_accuracy": gesture_accuracy.numpy(),
            "rest_false_activation": rest_false_activation.numpy(),
        }
    )
