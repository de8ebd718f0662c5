"""Report figures that compare: the segment windows per model, and the gestures per model (recall, sorted), so
that a user sees which window a number belongs to and which gestures to avoid choosing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..evaluation.artefacts import ZERO_SHOT_SETS as SETS
from ..evaluation.stream_metrics import POOLED
from .plotting import (
    class_description,
    extend_colours,
    model_handles,
    no_data_figure,
    percent_axis,
    save_figure,
    styled,
    with_labels,
)
from .training_figures import kept_epoch

WINDOW_METRICS = {
    "accuracy": "Accuracy",
    "gesture_accuracy": "Gesture-only accuracy",
    "rest_false_activation": "Rest false activation",
}
WINDOW_HATCHES = ("", "//", "..", "xx", "\\\\")
# The x label of each zero-shot set of :data:`..evaluation.artefacts.ZERO_SHOT_SETS`.
SET_TICKS = {
    "unseen": "unseen gestures\n+ rest",
    "seen": "seen gestures\n+ rest",
    "all": "all gestures + rest\n(generalised)",
}


@styled
def windows_figure(summary: pd.DataFrame, out_stem: Path, colours: Mapping[str, str] | None = None) -> list[Path]:
    """Per model, each window's vote-level accuracy, gesture-only accuracy and rest false activation: the mean over
    subjects with its 95 % bootstrap interval, on the same (class, repetition) cells for every window."""
    title = "Segment windows side by side (after majority vote)"
    rows = with_labels(summary[(summary["level"] == "vote") & summary["metric"].isin(list(WINDOW_METRICS))])
    if rows.empty:
        return save_figure(no_data_figure(title, "No run summary."), out_stem)
    colours = extend_colours(colours, rows["label"])
    windows = list(dict.fromkeys(rows["window"]))
    labels = sorted(rows["label"].unique())
    figure = Figure(figsize=(max(9.0, 1.2 * len(labels) * len(windows) + 4), 4.8), layout="constrained")
    panels = figure.subplots(1, len(WINDOW_METRICS), sharey=True)
    width = 0.8 / len(windows)
    for axes, (metric, name) in zip(panels, WINDOW_METRICS.items(), strict=True):
        for w, window in enumerate(windows):
            columns = ["subject_mean", "subject_ci_low", "subject_ci_high"]
            # Several families of folds (when all are shown) are averaged per model.
            part = rows[(rows["metric"] == metric) & (rows["window"] == window)].groupby("label")[columns].mean()
            part = part.reindex(labels)
            x = np.arange(len(labels)) + (w - (len(windows) - 1) / 2) * width
            error = np.abs(part[["subject_ci_low", "subject_ci_high"]].to_numpy().T - part["subject_mean"].to_numpy())
            axes.bar(
                x,
                100 * part["subject_mean"],
                width=width,
                color=[colours[label] for label in labels],
                hatch=WINDOW_HATCHES[w % len(WINDOW_HATCHES)],
                edgecolor="white",
                yerr=100 * error,
                capsize=2,
            )
        axes.set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        axes.set_title(name)
        axes.grid(axis="x", visible=False)
    percent_axis(panels[0], "Mean over subjects (%), 95 % bootstrap interval")
    figure.suptitle(title)
    figure.legend(handles=model_handles(colours, labels, kind="bar"), loc="outside right upper", title="Model")
    keys = [
        Patch(facecolor="lightgrey", hatch=WINDOW_HATCHES[w % len(WINDOW_HATCHES)], edgecolor="white", label=window)
        for w, window in enumerate(windows)
    ]
    figure.legend(handles=keys, loc="outside right lower", title="Window")
    return save_figure(figure, out_stem)


@styled
def per_class_recall_figure(
    metrics: pd.DataFrame, out_stem: Path, model: str | None, colours: Mapping[str, str] | None = None
) -> list[Path]:
    """Recall of every class after majority vote, sorted, with NinaPro's names: bars for ``model`` (the one chosen
    on validation), dots for the other models. Gestures at the bottom are the ones to avoid choosing."""
    title = f"Recall per gesture after majority vote: {model}\n(bars; the other models: dots)"
    rows = with_labels(
        metrics[(metrics["metric"] == "recall") & (metrics["level"] == "vote") & (metrics["group"] == "all")]
    )
    recall = rows.pivot_table(index="class", columns="label", values="value", aggfunc="mean")
    chosen = [label for label in recall.columns if label.split(" (")[0] == model]
    if recall.empty or not chosen:
        return save_figure(no_data_figure(title, f"No per-class recall for model {model!r}."), out_stem)
    colours = extend_colours(colours, recall.columns)
    order = recall[chosen[0]].sort_values(ascending=False, kind="stable").index
    recall = recall.loc[order]
    names = [f"{name}  {class_description(name) or ''}".rstrip() for name in order]
    figure = Figure(figsize=(11, max(4.0, 0.24 * len(order) + 1.5)), layout="constrained")
    axes = figure.add_subplot()
    y = np.arange(len(order))
    axes.barh(y, 100 * recall[chosen[0]], color=colours[chosen[0]], height=0.7)
    for label in recall.columns:
        if label != chosen[0]:
            axes.plot(100 * recall[label], y, "o", color=colours[label], markersize=4)
    axes.set_yticks(y, names, fontsize=7 if len(order) > 25 else 9)
    axes.invert_yaxis()
    axes.set_xlim(0, 101)
    axes.set_xlabel("Recall: windows of the gesture decided as it (%), mean over folds")
    axes.grid(axis="y", visible=False)
    axes.set_title(title)
    handles = model_handles(colours, recall.columns, kind="point")
    handles.append(Line2D([], [], color="grey", linewidth=6, label=f"{chosen[0]} (bars)"))
    figure.legend(handles=handles, loc="outside right upper", title="Model")
    return save_figure(figure, out_stem)


def validation_choice(histories: Mapping[str, pd.DataFrame]) -> str | None:
    """The model whose final training reached the best validation accuracy (at its kept epoch, the lowest
    validation loss), mean over its folds: chosen without looking at test data."""
    scores: dict[str, list[float]] = {}
    for key, history in histories.items():
        kept = kept_epoch(history)
        if kept is None:
            continue
        scores.setdefault(key.split("/", 1)[0], []).append(float(kept["val_accuracy"]))
    if not scores:
        return None
    return max(sorted(scores), key=lambda model: np.mean(scores[model]))


# The zero-shot figure's bar panels: the metric, its chance column in zero_shot.tsv, the panel's title and y label.
ZERO_SHOT_PANELS = (
    (
        "gesture_accuracy",
        "gesture_chance",
        "The set's gesture windows decided right\n(rest decided is a miss; read first)",
        "Gesture accuracy (%), mean over the held-out sets",
    ),
    (
        "balanced_accuracy",
        "chance",
        "Balanced accuracy: mean recall over\nthe set's gestures and rest (rest can carry it)",
        "Balanced accuracy (%)",
    ),
)


def _zero_shot_bars(axes, rows: pd.DataFrame, colours: Mapping[str, str], metric: str, chance: str) -> None:
    """Per set and model: ``metric`` (bars; dots: each held-out set) with the oracle's and chance (ticks); for the
    gesture accuracy also the share of the gesture windows decided as rest (triangles)."""
    labels = sorted(rows["label"].unique())
    width = 0.8 / len(labels)
    as_rest = "gesture_windows_as_rest" if metric == "gesture_accuracy" else None
    for m, label in enumerate(labels):
        each = rows[rows["label"] == label]
        columns = [metric, f"oracle_{metric}", chance, *([as_rest] if as_rest else [])]
        part = each.groupby("set")[columns].mean().reindex(list(SETS))
        x = np.arange(len(SETS)) + (m - (len(labels) - 1) / 2) * width
        axes.bar(x, 100 * part[metric], width=width, color=colours[label])
        axes.scatter(x, 100 * part[f"oracle_{metric}"], marker="_", s=300, color="black", zorder=3)
        axes.scatter(x, 100 * part[chance], marker="_", s=300, color="grey", linewidths=2.5, zorder=3)
        if as_rest:
            axes.scatter(x, 100 * part[as_rest], marker="v", s=30, color="white", edgecolors="black", zorder=4)
        for s, name in enumerate(SETS):  # every held-out set, so that no result hangs on one lucky split
            values = each[each["set"] == name][metric]
            axes.scatter(np.full(len(values), x[s]), 100 * values, s=10, color="black", alpha=0.6, zorder=4)
    axes.set_xticks(range(len(SETS)), [SET_TICKS[name] for name in SETS])
    axes.grid(axis="x", visible=False)


@styled
def zero_shot_figure(
    table: pd.DataFrame, subsets: pd.DataFrame, out_stem: Path, colours: Mapping[str, str] | None = None
) -> list[Path]:
    """Zero-shot folds, per model, among the unseen, the seen and all gestures (+ rest): first the gesture accuracy
    (the set's gesture windows decided right) with the share decided as rest, then the balanced accuracy, each
    against the same model trained on every gesture (the oracle) and chance; and the gesture accuracy's subset-size
    curve over the unseen gestures. Of ``table``, the rows of every test subject pooled (``subject`` all): each
    subject's own rows are for intervals over subjects, and would count a held-out set once per subject here."""
    title = "Gestures never trained on (zero-shot), after majority vote"
    if "subject" in table:  # tables written before the per-subject rows have the pooled rows only
        table = table[table["subject"] == POOLED]
    if table.empty:
        return save_figure(no_data_figure(title, "No zero-shot folds in this run."), out_stem)
    rows = with_labels(table)
    if "decided_by" in rows:  # a pose decoder's decisions beside the class encoder's, as a model of their own
        rows["label"] = rows["label"].where(rows["decided_by"] != "pose_decoder", rows["label"] + " by pose")
    colours = extend_colours(colours, rows["label"])
    labels = sorted(rows["label"].unique())
    figure = Figure(figsize=(17, 5.2), layout="constrained")
    *bars, curves = figure.subplots(1, 3, width_ratios=[3, 3, 2])
    for axes, (metric, chance, name, axis_label) in zip(bars, ZERO_SHOT_PANELS, strict=True):
        _zero_shot_bars(axes, rows, colours, metric, chance)
        percent_axis(axes, axis_label)
        axes.set_title(name)
    curve_rows = with_labels(subsets)
    for label, part in curve_rows.groupby("label"):
        for who, style in (("model", "-"), ("oracle", "--")):
            curve = part[part["scored_by"] == who].groupby("k")["gesture_accuracy"].mean()
            curves.plot(curve.index, 100 * curve, linestyle=style, color=colours[label], marker="o", markersize=4)
    if len(curve_rows):
        k = np.arange(1, int(curve_rows["k"].max()) + 1)
        curves.plot(k, 100 / (k + 1), color="black", linestyle=":")
        curves.set_xticks(k)
    curves.set_xlabel("Unseen gestures chosen, k (rest added)")
    percent_axis(curves, "Gesture accuracy (%)")
    curves.set_title("Among k unseen gestures + rest:\ntheir windows decided right")
    figure.suptitle(f"{title}: {rows['fold'].nunique()} held-out set(s)")
    figure.legend(handles=model_handles(colours, labels, kind="bar"), loc="outside right upper", title="Model")
    tick = {"marker": "_", "markersize": 14, "linestyle": ""}
    key = [
        Line2D([], [], color="black", label="oracle: trained on\nevery gesture", **tick),
        Line2D([], [], color="grey", markeredgewidth=2.5, label="chance: 1 / (the set's\ngestures + rest)", **tick),
        Line2D([], [], color="black", marker="o", markersize=3, linestyle="", label="each held-out set"),
        Line2D(
            [],
            [],
            color="white",
            markeredgecolor="black",
            marker="v",
            linestyle="",
            label="gesture windows\ndecided as rest",
        ),
        Line2D([], [], color="grey", linestyle="--", label="oracle (right)"),
        Line2D([], [], color="black", linestyle=":", label="chance, 1 / (k + 1)"),
    ]
    figure.legend(handles=key, loc="outside right lower", title="Key")
    return save_figure(figure, out_stem)
