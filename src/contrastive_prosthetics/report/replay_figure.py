"""The figure of a replayed recording (:func:`..realtime.replay.replay`'s timeline): true and decided gesture over
time. The replay command draws it after the real-time stage has returned the timeline, so that the controller's
stage imports nothing of the report's."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .plotting import class_sort_key, save_figure, styled


@styled
def timeline_figure(timeline: pd.DataFrame, out_stem: Path, title: str) -> list[Path]:
    """True (grey) and decided (colour) gesture over time; wrong decisions in red."""
    classes = sorted(set(timeline["true"]) | set(timeline["decided"]), key=class_sort_key)
    row = {name: i for i, name in enumerate(classes)}
    figure = Figure(figsize=(14, max(3.0, 0.3 * len(classes) + 1.5)), layout="constrained")
    axes = figure.add_subplot()
    time = timeline["time_s"].to_numpy()
    truth, decided = timeline["true"].map(row).to_numpy(), timeline["decided"].map(row).to_numpy()
    axes.step(time, truth, where="post", color="grey", linewidth=4, alpha=0.5, label="true (relabelled)")
    right = truth == decided
    axes.scatter(time[right], decided[right], s=2, color="tab:blue", label="decided, right")
    axes.scatter(time[~right], decided[~right], s=2, color="tab:red", label="decided, wrong")
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("Time (s)")
    axes.set_title(f"{title}: {100 * right.mean():.1f} % of frames decided right")
    axes.legend(loc="upper right", markerscale=4)
    return save_figure(figure, out_stem)
