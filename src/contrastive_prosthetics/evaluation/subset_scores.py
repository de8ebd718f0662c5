"""The subsets a user picks and the scores of each: the subsets drawn for k = 1..K (the same for every model and
fold with one seed: paired comparisons), each subset's classes, and its accuracy, balanced accuracy, gesture-only
accuracy and rest false activation from its right and tested windows per class (:mod:`.subsets` counts them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .voting import gesture_indices, rest_index


def draw_subsets(n_gestures: int, trials: int, seed: int) -> dict[int, torch.Tensor]:
    """For k = 1..n_gestures: [trials, n_gestures] masks of k gestures drawn uniformly without replacement.

    Each k has its own generator seeded by (seed, k) only, so every model and fold evaluated with one seed sees
    the very same subsets, and changing ``trials`` for one k leaves the others alone.
    """
    subsets = {}
    for k in range(1, n_gestures + 1):
        rng = np.random.default_rng(np.random.SeedSequence([seed, k]))
        order = rng.permuted(np.tile(np.arange(n_gestures), (trials, 1)), axis=1)  # a uniform permutation per row
        chosen = np.zeros((trials, n_gestures), dtype=bool)
        np.put_along_axis(chosen, order[:, :k], True, axis=1)
        subsets[k] = torch.from_numpy(chosen)
    return subsets


def subset_membership(
    subsets: dict[int, torch.Tensor], classes: list[str], include_rest: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """([trial, class] mask of every subset's classes in ascending k, each trial's k, its number within k)."""
    gestures = gesture_indices(classes)
    sizes = sorted(subsets)
    chosen = torch.cat([subsets[k] for k in sizes])
    if chosen.shape[1] != len(gestures):
        raise ValueError(f"subsets are over {chosen.shape[1]} gestures; the payload has {len(gestures)}")
    membership = torch.zeros(len(chosen), len(classes), dtype=torch.bool)
    membership[:, gestures] = chosen
    rest = rest_index(classes)
    if include_rest and rest is not None:
        membership[:, rest] = True
    k = torch.cat([torch.full((len(subsets[size]),), size) for size in sizes])
    trial = torch.cat([torch.arange(len(subsets[size])) for size in sizes])
    return membership, k, trial


def subset_metrics(
    correct: torch.Tensor,
    windows: torch.Tensor,
    membership: torch.Tensor,
    rest: int | None,
    rest_counts: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, ...]:
    """Per trial, from [trial, class] right windows: accuracy, balanced accuracy, windows scored, gesture-only
    accuracy (windows whose true class is a gesture), the rest false-activation rate (rest windows decided as
    a gesture: every wrong rest window, since the subset's other classes are gestures; NaN without rest) and the
    rest windows it counts.

    ``windows`` [class] counts each class's test windows; a trial scores the windows of its classes. ``rest`` is
    rest's index on the class axis (None when the run has no rest class). ``rest_counts`` ([trial] rest windows
    right, rest windows) are the rest windows' (:func:`.subsets.rest_window_right`); by default the rest segments'.
    """
    n = (membership * windows).sum(1)
    accuracy = correct.sum(1).double() / n  # 0/0 gives NaN when no window of the subset was tested
    counted = membership & (windows > 0)
    recall = torch.where(counted, correct.double() / windows.clamp(min=1), 0.0)
    gesture = torch.ones(membership.shape[1], dtype=torch.bool)
    if rest is not None:
        gesture[rest] = False
    gesture_windows = (membership[:, gesture] * windows[gesture]).sum(1)
    gesture_accuracy = correct[:, gesture].sum(1).double() / gesture_windows
    if rest is None:
        rest_false_activation = torch.full((len(membership),), torch.nan, dtype=torch.float64)
        rest_windows = torch.zeros(len(membership), dtype=torch.long)
    else:
        rest_right, rest_total = rest_counts if rest_counts is not None else (correct[:, rest], windows[rest])
        rest_windows = torch.where(membership[:, rest], rest_total, 0)
        rest_false_activation = torch.where(
            rest_windows > 0, 1 - rest_right.double() / rest_total.clamp(min=1), torch.nan
        )
    balanced = recall.sum(1) / counted.sum(1)
    return accuracy, balanced, n, gesture_accuracy, rest_false_activation, rest_windows


def subset_frame(k: torch.Tensor, trial: torch.Tensor, metrics: tuple) -> pd.DataFrame:
    accuracy, balanced, n, gesture_accuracy, rest_false_activation, rest_windows = metrics
    return pd.DataFrame(
        {
            "k": k.numpy(),
            "trial": trial.numpy(),
            "accuracy": accuracy.numpy(),
            "balanced_accuracy": balanced.numpy(),
            "gesture_accuracy": gesture_accuracy.numpy(),
            "rest_false_activation": rest_false_activation.numpy(),
            "n": n.numpy(),
            "rest_windows": rest_windows.numpy(),
        }
    )
