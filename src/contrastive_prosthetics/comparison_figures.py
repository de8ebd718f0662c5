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

WINDOW_METRICS = {
    "accuracy": "Accuracy",
    "gesture_accuracy": "Gesture-only accuracy",
    "rest_false_activation": "Rest false activation",
}
WINDOW_HATCHES = ("", "//", "..", "xx", "\\\\")


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
        finite = history[np.isfinite(history["val_loss"])] if len(history) else history
        if finite.empty:
            continue
        kept = finite.loc[finite["val_loss"].idxmin()]
        scores.setdefault(key.split("/", 1)[0], []).append(float(kept["val_accuracy"]))
    if not scores:
        return None
    return max(sorted(scores), key=lambda model: np.mean(scores[model]))
