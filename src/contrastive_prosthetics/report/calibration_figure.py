"""The calibration curve: 250 ms-vote accuracy against the number of calibration repetitions, every calibration
method and baseline, subject means with 95 % intervals over subjects (``results/eval/calibration.tsv``), and each
method's paired difference from the network trained from scratch on the same repetitions. At c = 0 the two
calibration-free starts (``none``, ``unlabelled``) are single points."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ..core.atomic import atomic_write_frame
from ..evaluation.calibration_summary import calibration_table
from ..evaluation.tables import read_table
from .plotting import BAND_ALPHA, model_colours, model_handles, percent_axis, save_figure, styled

PANELS = {
    "segment_balanced_accuracy": "Segments: balanced accuracy",
    "stream_accuracy": "Stream: accuracy (rest bias)",
    "stream_movement_accuracy": "Stream: movement frames",
    "stream_rest_false_activation": "Stream: rest false activation",
}
PAIRED_METRIC = "segment_balanced_accuracy"  # the last panel: each method minus scratch, subject by subject
METHOD_TEXT = {
    "none": "calibration-free (pooled statistics)",
    "unlabelled": "unlabelled recording (AdaBN)",
    "adabn": "AdaBN",
    "prototypes": "AdaBN + prototypes",
    "fine_tune": "AdaBN + fine-tuned head",
    "fine_tune_network": "fine-tuned network",
    "scratch": "network from scratch",
    "lda": "LDA",
}


@styled
def calibration_figure(table: pd.DataFrame, out_stem: Path) -> list[Path]:
    """One panel per metric of :data:`PANELS`; one line per (model, method), a band for its interval."""
    figure = Figure(figsize=(15, 4.4), layout="constrained")
    axes = figure.subplots(1, len(PANELS) + 1, sharex=True)
    text = table["method"].map(METHOD_TEXT).fillna(table["method"])
    # LDA is no model's: it is fitted on the user's repetitions alone.
    table = table.assign(
        label=(table["model"] + ": " + text).where(table["method"] != "lda", "LDA on the user's repetitions")
    )
    colours = model_colours(table["label"])
    for ax, (metric, title) in zip(axes, PANELS.items(), strict=False):
        rows = table[table["metric"] == metric]
        for (label, _family, _window), line in rows.groupby(["label", "family", "window"], sort=True):
            line = line.sort_values("repetitions")
            ax.plot(line["repetitions"], 100 * line["mean"], marker="o", color=colours[label])
            ax.fill_between(
                line["repetitions"], 100 * line["low"], 100 * line["high"], color=colours[label], alpha=BAND_ALPHA
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("calibration repetitions c")
        percent_axis(ax, "%")
        if not rows.empty:
            ax.set_xticks(sorted(rows["repetitions"].unique()))
    paired_panel(axes[-1], table, colours)
    subjects = int(table["subjects"].max()) if not table.empty else 0
    figure.suptitle(
        f"A new user's calibration: the model trained on others, calibrated on c repetitions ({subjects} subjects)"
    )
    handles = model_handles(colours, table["label"])
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), title="Method")
    return save_figure(figure, out_stem)


def paired_panel(ax, table: pd.DataFrame, colours: dict) -> None:
    """Each method's mean paired difference from ``scratch`` at the same c (:data:`PAIRED_METRIC`), with its 95 %
    interval over subjects as an error bar: above zero where the method beats training from scratch subject by
    subject."""
    rows = table[
        (table["metric"] == PAIRED_METRIC) & table["paired_vs_scratch"].notna() & (table["method"] != "scratch")
    ]
    labels = sorted(rows["label"].unique())
    for i, (label, line) in enumerate(rows.groupby("label", sort=True)):
        line = line.sort_values("repetitions")
        x = line["repetitions"] + 0.08 * (i - (len(labels) - 1) / 2)  # side by side at each c
        middle, low, high = (100 * line[f"paired_vs_scratch{part}"] for part in ("", "_low", "_high"))
        ax.errorbar(x, middle, yerr=[middle - low, high - middle], marker="o", color=colours[label], capsize=2)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_title("Paired: minus scratch (balanced acc.)", fontsize=10)
    ax.set_xlabel("calibration repetitions c")
    ax.set_ylabel("percentage points")


def summarise_calibration(inputs: list[Path], out_table: Path, figure_stem: Path, seed: int) -> pd.DataFrame:
    """Write the run's ``calibration.tsv`` (:func:`..evaluation.calibration_summary.calibration_table` of every
    calibration fold's rows) and its figure."""
    rows = pd.concat([read_table(path) for path in inputs], ignore_index=True)
    table = calibration_table(rows, seed)
    atomic_write_frame(table, Path(out_table))
    calibration_figure(table, Path(figure_stem))
    return table
