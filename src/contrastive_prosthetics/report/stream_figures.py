"""The stream evaluation's figure: what the controller gives against the delay it costs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .plotting import extend_colours, model_handles, no_data_figure, percent_axis, save_figure, styled, with_labels

OPTIMAL_DELAY_MS = (100, 125)  # Farrell and Weir (2007): the controller delay users do best with
LONGEST_DELAY_MS = 300  # the usual upper limit


def total_delay(metrics: pd.DataFrame, timing: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``metrics`` with ``delay_ms``: half the RMS window + half the vote + the compute per decision (the
    mean over the model's folds of its measured median)."""
    compute = timing.groupby("model")[["compute_ms", "rms_window_ms"]].mean()
    rows = metrics.join(compute, on="model")
    return rows.assign(delay_ms=rows["rms_window_ms"] / 2 + rows["vote_ms"] / 2 + rows["compute_ms"])


@styled
def stream_figure(
    metrics: pd.DataFrame, timing: pd.DataFrame, out_stem: Path, colours: Mapping[str, str] | None = None
) -> list[Path]:
    """Accuracy over every frame of the test recordings, onset delay and rest false activation against the total
    controller delay, one point per vote length, among all gestures + rest (k = K): the mean over the folds."""
    title = "The controller on the continuous recordings (all gestures + rest)"
    if metrics.empty or timing.empty:
        return save_figure(no_data_figure(title, "No stream evaluation (no network models)."), out_stem)
    pooled = metrics[metrics["subject"] == "all"] if "subject" in metrics else metrics
    rows = with_labels(total_delay(pooled[pooled["k"] == pooled["k"].max()], timing))
    colours = extend_colours(colours, rows["label"])
    figure = Figure(figsize=(15, 4.8), layout="constrained")
    accuracy_axes, onset_axes, rest_axes = figure.subplots(1, 3, sharex=True)
    columns = ["delay_ms", "accuracy", "onset_delay_p50_ms", "onset_delay_p90_ms", "rest_false_activation"]
    for label, part in rows.groupby("label"):
        curve = part.groupby("vote_ms")[columns].mean().sort_values("delay_ms")
        style = {"color": colours[label], "marker": "o", "markersize": 4, "linewidth": 2}
        accuracy_axes.plot(curve["delay_ms"], 100 * curve["accuracy"], **style)
        onset_axes.plot(curve["delay_ms"], curve["onset_delay_p50_ms"], **style)
        onset_axes.plot(curve["delay_ms"], curve["onset_delay_p90_ms"], **(style | {"linestyle": "--", "linewidth": 1}))
        rest_axes.plot(curve["delay_ms"], 100 * curve["rest_false_activation"], **style)
    for axes in (accuracy_axes, onset_axes, rest_axes):
        axes.axvspan(*OPTIMAL_DELAY_MS, color="green", alpha=0.12, lw=0)
        axes.axvline(LONGEST_DELAY_MS, color="grey", linestyle=":", linewidth=1)
        axes.set_xlabel("Controller delay (ms): RMS window / 2 + vote / 2 + compute")
    percent_axis(accuracy_axes, "Frames decided right (%)")
    accuracy_axes.set_title("Accuracy over every frame, transitions included")
    onset_axes.set_ylabel("From the relabelled onset (ms)")
    onset_axes.set_title("Onset delay: median (solid), 90th percentile (dashed)")
    percent_axis(rest_axes, "Rest frames decided as a gesture (%)")
    rest_axes.set_title("Rest false activation")
    figure.suptitle(title)
    figure.legend(handles=model_handles(colours, rows["label"]), loc="outside right upper", title="Model")
    key = [
        Line2D([], [], color="grey", marker="o", label="one vote length each\n(longer votes: further right)"),
        Patch(
            color="green",
            alpha=0.25,
            label=f"{OPTIMAL_DELAY_MS[0]}-{OPTIMAL_DELAY_MS[1]} ms: the delay\nusers do best with",
        ),
        Line2D([], [], color="grey", linestyle=":", label=f"{LONGEST_DELAY_MS} ms: the usual limit"),
    ]
    figure.legend(handles=key, loc="outside right lower", title="Key")
    return save_figure(figure, out_stem)
