"""The calibration curve: 250 ms-vote accuracy against the number of calibration repetitions, every calibration
method and baseline, subject means with 95 % intervals over subjects (``results/eval/calibration.tsv``)."""

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
METHOD_TEXT = {
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
    figure = Figure(figsize=(12, 4.4), layout="constrained")
    axes = figure.subplots(1, len(PANELS), sharex=True)
    text = table["method"].map(METHOD_TEXT).fillna(table["method"])
    # LDA is no model's: it is fitted on the user's repetitions alone.
    table = table.assign(
        label=(table["model"] + ": " + text).where(table["method"] != "lda", "LDA on the user's repetitions")
    )
    colours = model_colours(table["label"])
    for ax, (metric, title) in zip(axes, PANELS.items(), strict=True):
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
    subjects = int(table["subjects"].max()) if not table.empty else 0
    figure.suptitle(
        f"A new user's calibration: the model trained on others, calibrated on c repetitions ({subjects} subjects)"
    )
    handles = model_handles(colours, table["label"])
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), title="Method")
    return save_figure(figure, out_stem)


def summarise_calibration(inputs: list[Path], out_table: Path, figure_stem: Path, seed: int) -> pd.DataFrame:
    """Write the run's ``calibration.tsv`` (:func:`..evaluation.calibration_summary.calibration_table` of every
    calibration fold's rows) and its figure."""
    rows = pd.concat([read_table(path) for path in inputs], ignore_index=True)
    table = calibration_table(rows, seed)
    atomic_write_frame(table, Path(out_table))
    calibration_figure(table, Path(figure_stem))
    return table
