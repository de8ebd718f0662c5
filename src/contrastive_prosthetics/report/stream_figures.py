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
        return save_figure(
            no_data_figure(title, "No stream evaluation (a centred RMS reads ahead: not causal)."), out_stem
        )
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
    key = [
        Line2D([], [], color="grey", marker="o", label="one vote length each\n(longer votes: further right)"),
        Patch(
            color="green",
            alpha=0.25,
            label=f"{OPTIMAL_DELAY_MS[0]}-{OPTIMAL_DELAY_MS[1]} ms: the delay\nusers do best with",
        ),
        Line2D([], [], color="grey", linestyle=":", label=f"{LONGEST_DELAY_MS} ms: the usual limit"),
    ]
    return finished(figure, title, model_handles(colours, rows["label"]), key, out_stem)


def finished(figure: Figure, title: str, models: list, key: list, out_stem: Path) -> list[Path]:
    """The figure with its title, the models' legend (upper right) and the key to its marks (lower right), saved."""
    figure.suptitle(title)
    figure.legend(handles=models, loc="outside right upper", title="Model")
    figure.legend(handles=key, loc="outside right lower", title="Key")
    return save_figure(figure, out_stem)


@styled
def stream_tradeoff_figure(
    tradeoff: pd.DataFrame, out_stem: Path, vote_ms: float, colours: Mapping[str, str] | None = None
) -> list[Path]:
    """Movement accuracy and onset delay against rest false activation as the rest bias moves, every model (LDA
    included) on one plot, each at the ``vote_ms`` vote (k = K): one curve per model, fold and window, the
    calibrated operating point (chosen on validation streams) marked; a model's own decision rule (``rule`` other
    than ``vote``, :mod:`..learning.decision_rules`) dashed beside its vote, at the same rest false activation."""
    title = f"What a quieter rest costs: the rest bias's trade-off on the test streams ({vote_ms:g} ms vote)"
    if not tradeoff.empty:
        rule = tradeoff["rule"].fillna("vote") if "rule" in tradeoff else pd.Series("vote", index=tradeoff.index)
        tradeoff = tradeoff.assign(rule=rule)
        tradeoff = tradeoff[(tradeoff["vote_ms"] == vote_ms) | (tradeoff["rule"] != "vote")]
    rows = tradeoff
    if rows.empty:
        return save_figure(
            no_data_figure(title, "No stream evaluation (a centred RMS reads ahead: not causal)."), out_stem
        )
    rows = with_labels(rows)
    colours = extend_colours(colours, rows["label"])
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    movement_axes, onset_axes = figure.subplots(1, 2, sharex=True)
    for (label, _, _, rule), curve in rows.groupby(["label", "fold", "window", "rule"]):
        curve = curve.sort_values("rest_false_activation")
        rest = 100 * curve["rest_false_activation"]
        style = {"color": colours[label], "linewidth": 1.5, "marker": ".", "markersize": 4}
        style["linestyle"] = "-" if rule == "vote" else "--"
        movement_axes.plot(rest, 100 * curve["movement_accuracy"], **style)
        onset_axes.plot(rest, curve["onset_delay_p50_ms"], **style)
        chosen = curve[curve["calibrated"].astype(str) == "True"]
        mark = {"color": colours[label], "marker": "*", "markersize": 14, "markeredgecolor": "black", "zorder": 3}
        movement_axes.plot(100 * chosen["rest_false_activation"], 100 * chosen["movement_accuracy"], **mark)
        onset_axes.plot(100 * chosen["rest_false_activation"], chosen["onset_delay_p50_ms"], **mark)
    percent_axis(movement_axes, "Movement frames decided right (%)")
    movement_axes.set_title("Movement accuracy")
    onset_axes.set_ylabel("Median onset delay (ms)")
    onset_axes.set_title("Onset delay")
    for axes in (movement_axes, onset_axes):
        axes.set_xlabel("Rest false activation (%): rest frames decided as a gesture")
        axes.set_xlim(0, 101)
    key = [
        Line2D([], [], color="grey", marker=".", label="one bias on rest's logit each"),
        Line2D(
            [],
            [],
            color="grey",
            marker="*",
            markersize=12,
            markeredgecolor="black",
            linestyle="",
            label="calibrated\n(validation streams)",
        ),
    ]
    if (rows["rule"] != "vote").any():
        key.append(Line2D([], [], color="grey", linestyle="--", label="the model's decision rule\n(hysteresis)"))
    return finished(figure, title, model_handles(colours, rows["label"]), key, out_stem)
