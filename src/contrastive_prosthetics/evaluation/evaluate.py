"""What a prosthesis user gets from one model × fold, computed from its test logits (``logits.pt``).

Tables made by :func:`evaluate_payload`, each led by the columns model, adabn, adaptation, fold, window, group:

    subset_accuracy  k, trial, accuracy, balanced_accuracy, gesture_accuracy, rest_false_activation, n,
                     rest_windows: the user picks k gestures (rest is always added), the classifier chooses among
                     just those classes, and windows of ``window_frames`` frames are majority-voted; k = 1..K,
                     ``trials`` random subsets per k, the same subsets for every model and fold (paired
                     comparisons)
    subset_exact     k, accuracy, balanced_accuracy, gesture_accuracy, rest_false_activation, rest_windows: the
                     expectation over all C(K, k) subsets, per frame
    voting           window_frames, window_ms, accuracy, balanced_accuracy, n over all classes
    metrics          level (frame | vote), metric, class, value (rest_windows among the metrics)
    confusion        level, true, predicted, count

Groups: all test frames, the intact and the amputee subjects, and each subject.

Accuracy counts windows (frames when ``window_frames`` is 1); balanced accuracy is the mean recall over the classes
that have test windows. Windows and votes are defined in :mod:`.voting`, the subset evaluation in :mod:`.subsets`
and :mod:`.exact`. Rest false activation counts the test rest windows (every window of the segment's length in the
test repetitions' rest runs, :mod:`.rest_windows`), and ``rest_windows`` how many: everything else counts the
segments.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core.atomic import atomic_write_frame
from ..core.errors import InputError
from ..learning.logits import read_logits
from .artefacts import EVALUATION_TABLES
from .bootstrap import subject_interval
from .exact import exact_subset_accuracy
from .rest_windows import LEVELS, rest_tallies, rest_window_payload, segment_rest_tallies, select_rows
from .subsets import (
    draw_subsets,
    rest_window_right,
    subset_correct,
    subset_frame,
    subset_membership,
    subset_metrics,
    subset_table,
)
from .voting import (
    checked_scores,
    frame_ms,
    gesture_indices,
    rest_index,
    voting_tallies,
    window_frames_for,
    window_ids,
    window_outcomes,
)

LEADING_COLUMNS = ["model", "adabn", "adaptation", "fold", "window", "group"]


def _confusion(predictions: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    flat = torch.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes)
    return flat.view(n_classes, n_classes)


def _unit_confusions(
    predictions: torch.Tensor, labels: torch.Tensor, units: torch.Tensor, n_units: int, n_classes: int
) -> torch.Tensor:
    """[unit, true, predicted] counts."""
    key = (units * n_classes + labels) * n_classes + predictions
    return torch.bincount(key, minlength=n_units * n_classes * n_classes).view(n_units, n_classes, n_classes)


def _metrics_from_confusion(
    confusion: torch.Tensor, rest: int | None = None, rest_counts: tuple[torch.Tensor, torch.Tensor] | None = None
) -> dict:
    """The metrics of one confusion matrix; the rest false activation from ``rest_counts`` (rest windows decided as
    rest, rest windows) when given, else from the confusion's rest row."""
    confusion = confusion.long()
    right = confusion.diagonal().double()
    tested = confusion.sum(1)
    predicted = confusion.sum(0)
    recall = right / tested  # NaN for classes without test samples
    precision = torch.where(predicted > 0, right / predicted.clamp(min=1), 0.0)  # never predicted: precision 0
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = tested > 0
    gesture = torch.ones_like(present)
    rest_false_activation, rest_windows = math.nan, 0
    if rest is not None:
        gesture[rest] = False
        rest_right, rest_total = (right[rest], tested[rest]) if rest_counts is None else rest_counts
        rest_false_activation, rest_windows = float(1 - rest_right.double() / rest_total), int(rest_total)
    return {
        "accuracy": float(right.sum() / tested.sum()),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        # Windows whose true class is a gesture; and rest windows decided as any gesture.
        "gesture_accuracy": float(right[gesture].sum() / tested[gesture].sum()),
        "rest_false_activation": rest_false_activation,
        "rest_windows": rest_windows,
        "recall": recall,
        "confusion": confusion,
    }


def classification_metrics(predictions: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict:
    """Accuracy, balanced accuracy and macro F1 (both over the classes present in ``labels``), per-class recall
    ([C], NaN for absent classes) and the confusion matrix ([C, C] counts, rows true, columns predicted).

    A present class that is never predicted has precision 0 (and F1 0), as scikit-learn's default.
    """
    return _metrics_from_confusion(_confusion(predictions, labels, n_classes))


def _accuracy_and_balanced(right: torch.Tensor, windows: torch.Tensor) -> tuple[float, float]:
    """From [class] right and tested counts."""
    present = windows > 0
    right = right.double()
    return float(right.sum() / windows.sum()), float((right[present] / windows[present]).mean())


def _voting_frame(tallies: list[tuple[torch.Tensor, torch.Tensor]], units: torch.Tensor, frame_ms: float):
    rows = []
    for window_frames, (right, windows) in enumerate(tallies, start=1):
        accuracy, balanced = _accuracy_and_balanced(right[units].sum(0), windows[units].sum(0))
        rows.append(
            {
                "window_frames": window_frames,
                "window_ms": _whole_if_exact(window_frames * frame_ms),
                "accuracy": accuracy,
                "balanced_accuracy": balanced,
                "n": int(windows[units].sum()),
            }
        )
    return pd.DataFrame(rows)


def _whole_if_exact(ms: float) -> float | int:
    """Whole milliseconds as an integer (10, not 10.0), so that tables read the same at any frame rate."""
    return int(ms) if float(ms).is_integer() else ms


def voting_curve(payload: dict, max_window_frames: int) -> pd.DataFrame:
    """Accuracy over all classes against the voting window, 1..max_window_frames frames (1: per frame)."""
    all_units = torch.ones(len(payload["subjects"]), dtype=torch.bool)
    return _voting_frame(voting_tallies(payload, max_window_frames), all_units, frame_ms(payload))


# ---------------------------------------------------------------------------------------------------------
# Groups and the per-payload tables


def groups(payload: dict) -> dict[str, torch.Tensor]:
    """[N] frame masks: "all", "intact" and "amputee" (when they have test frames), "subject:<name>" per subject
    with test frames."""
    subject = payload["subject"]
    amputee = torch.tensor(payload["amputee"], dtype=torch.bool)[subject]
    masks = {"all": torch.ones_like(subject, dtype=torch.bool)}
    if (~amputee).any():
        masks["intact"] = ~amputee
    if amputee.any():
        masks["amputee"] = amputee
    for index in torch.unique(subject).tolist():
        masks[f"subject:{payload['subjects'][index]}"] = subject == index
    return masks


_select = select_rows


def _group_units(payload: dict, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each group's frame mask as a [unit] mask of its subjects; every group must be a union of subjects."""
    subject = payload["subject"]
    units = {}
    for name, mask in masks.items():
        members = torch.zeros(len(payload["subjects"]), dtype=torch.bool)
        members[subject[mask]] = True
        if not torch.equal(members[subject], mask):
            raise ValueError(f"group {name} is not a union of subjects")
        units[name] = members
    return units


def _led(frame: pd.DataFrame, payload: dict, group: str) -> pd.DataFrame:
    leading = {
        "model": payload["model"],
        "adabn": bool(payload["adabn"]),
        "adaptation": payload["adaptation"],
        "fold": payload["fold"],
        "window": payload["window"],
        "group": group,
    }
    return frame.assign(**leading)[LEADING_COLUMNS + list(frame.columns)]


SUMMARISED = ("accuracy", "balanced_accuracy", "gesture_accuracy", "rest_false_activation")


def _metrics_frame(
    confusions: torch.Tensor,
    rest_counts: tuple[torch.Tensor, torch.Tensor],
    units: torch.Tensor,
    classes: list[str],
    level: str,
    across_subjects: bool,
    seed: int,
) -> pd.DataFrame:
    """Long-format metrics of the units' summed [unit, true, predicted] confusions and [unit] rest counts (rest
    windows decided as rest, rest windows); across subjects also each summarised metric's mean over subjects with
    its 95 % bootstrap interval over subjects, and the accuracy's standard deviation over subjects."""
    rest = rest_index(classes)
    rest_right, rest_windows = rest_counts
    metrics = _metrics_from_confusion(
        confusions[units].sum(0), rest, (rest_right[units].sum(), rest_windows[units].sum())
    )
    names = ["accuracy", "balanced_accuracy", "macro_f1", "gesture_accuracy", "rest_false_activation", "rest_windows"]
    metric, label, value = names + ["recall"] * len(classes), [""] * len(names) + classes, [metrics[n] for n in names]
    value += metrics["recall"].tolist()
    if across_subjects:
        members = [unit for unit in units.nonzero().squeeze(1).tolist() if confusions[unit].sum() > 0]
        per_subject = np.array(
            [
                [_metrics_from_confusion(confusions[u], rest, (rest_right[u], rest_windows[u]))[m] for m in SUMMARISED]
                for u in members
            ]
        )
        mean, low, high = subject_interval(per_subject, seed)
        for index, name in enumerate(SUMMARISED):
            metric += [f"subject_mean_{name}", f"subject_ci_low_{name}", f"subject_ci_high_{name}"]
            value += [float(mean[index]), float(low[index]), float(high[index])]
        metric.append("subject_std_accuracy")
        value.append(float(np.std(per_subject[:, 0], ddof=1)) if len(per_subject) > 1 else math.nan)
        label += [""] * (3 * len(SUMMARISED) + 1)
    return pd.DataFrame({"level": level, "metric": metric, "class": label, "value": value})


def _confusion_frame(confusions: torch.Tensor, units: torch.Tensor, classes: list[str], level: str) -> pd.DataFrame:
    """Long-format confusion counts of the units, zero counts omitted."""
    confusion = confusions[units].sum(0)
    true, predicted = confusion.nonzero(as_tuple=True)
    names = np.array(classes, dtype=object)
    return pd.DataFrame(
        {
            "level": level,
            "true": names[true.numpy()],
            "predicted": names[predicted.numpy()],
            "count": confusion[true, predicted].numpy(),
        }
    )


def evaluate_payload(
    payload: dict,
    *,
    window_frames: int,
    trials: int,
    seed: int,
    include_rest: bool,
    max_vote_frames: int | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table of the module's docstring for one logits payload, for every group of :func:`groups`.

    Window outcomes do not depend on the group, so each is worked out once for the whole payload and tallied per
    subject; a group sums its subjects' tallies. That makes subset_accuracy for every subject group nearly free
    (it is included; its rows, trials × K per group, are most of the output). Subsets come from
    ``draw_subsets(K, trials, seed)``: the same for every payload with K gestures. About 8 s for full DB2 + DB3
    on two CPU cores.
    """
    classes = payload["classes"]
    n_classes, n_units, rest = len(classes), len(payload["subjects"]), rest_index(classes)
    if window_ids(payload, window_frames)[1] == 0:
        raise InputError(
            f"{payload['model']}/{payload['fold']}: no segment holds a whole vote window of {window_frames} frames; "
            "shorten evaluation.vote_window_ms or lengthen preprocess.windows"
        )
    frame_masks = groups(payload)
    units_of = _group_units(payload, frame_masks)

    membership, k, trial = subset_membership(
        draw_subsets(len(gesture_indices(classes)), trials, seed), classes, include_rest
    )
    table = subset_table(payload, window_frames)
    subset_right = subset_correct(table, membership).view(len(membership), n_units, n_classes)
    subset_windows = table.windows.view(n_units, n_classes)

    voting = voting_tallies(payload, max_vote_frames or window_frames)
    frame_predictions = checked_scores(payload).argmax(1)
    votes, truth, window_unit = window_outcomes(payload, window_frames, frame_predictions)
    confusions = {
        "frame": _unit_confusions(frame_predictions, payload["label"], payload["subject"], n_units, n_classes),
        "vote": _unit_confusions(votes, truth, window_unit, n_units, n_classes),
    }
    # Rest false activation: over the rest windows when the payload has them, else over its rest segments.
    rest_windows = rest_window_payload(payload)
    if rest_windows is None:
        rest_levels = {level: segment_rest_tallies(confusions[level], rest) for level in LEVELS}
        rest_subsets = (subset_right[:, :, rest], subset_windows[:, rest]) if rest is not None else None
    else:
        rest_levels = rest_tallies(rest_windows, window_frames)
        rest_subsets = rest_window_right(rest_windows, window_frames, membership)

    tables = {name: [] for name in EVALUATION_TABLES}
    for group, units in units_of.items():
        across_subjects = not group.startswith("subject:")
        rest_counts = None if rest_subsets is None else (rest_subsets[0][:, units].sum(1), rest_subsets[1][units].sum())
        in_group = subset_metrics(
            subset_right[:, units].sum(1), subset_windows[units].sum(0), membership, rest, rest_counts
        )
        tables["subset_accuracy"].append(_led(subset_frame(k, trial, in_group), payload, group))
        group_rest = None if rest_windows is None else select_rows(rest_windows, units[rest_windows["subject"]])
        exact = exact_subset_accuracy(_select(payload, frame_masks[group]), include_rest, group_rest)
        tables["subset_exact"].append(_led(exact, payload, group))
        tables["voting"].append(_led(_voting_frame(voting, units, frame_ms(payload)), payload, group))
        metrics = [
            _metrics_frame(confusions[level], rest_levels[level], units, classes, level, across_subjects, seed)
            for level in LEVELS
        ]
        tables["metrics"].append(_led(pd.concat(metrics, ignore_index=True), payload, group))
        confusion = [_confusion_frame(confusions[level], units, classes, level) for level in LEVELS]
        tables["confusion"].append(_led(pd.concat(confusion, ignore_index=True), payload, group))
    return {name: pd.concat(frames, ignore_index=True) for name, frames in tables.items()}


def evaluate_logits_file(
    logits_path: Path, out_dir: Path, *, vote_window_ms: float, trials: int, seed: int, include_rest: bool
) -> dict[str, pd.DataFrame]:
    """Evaluate one ``logits.pt`` and write each table of :func:`evaluate_payload` as ``out_dir/<table>.tsv``.

    The vote window in frames comes from ``vote_window_ms`` and the logits' own frame rate.
    """
    payload = read_logits(logits_path)
    tables = evaluate_payload(
        payload,
        window_frames=window_frames_for(vote_window_ms, payload["frame_rate_hz"]),
        trials=trials,
        seed=seed,
        include_rest=include_rest,
    )
    for name, table in tables.items():
        atomic_write_frame(table, Path(out_dir) / f"{name}.tsv")
    return tables
