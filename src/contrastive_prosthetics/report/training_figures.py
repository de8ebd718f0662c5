"""Report figures of training: loss and validation accuracy per epoch, and the random hyper-parameter search."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ..learning.training_settings import STREAM_SCORE
from .plotting import extend_colours, model_handles, no_data_figure, percent_axis, run_model, save_figure, styled


@styled
def training_curves_figure(
    histories: Mapping[str, pd.DataFrame], out_stem: Path, colours: Mapping[str, str] | None = None
) -> list[Path]:
    """Loss and validation accuracy per epoch of each final model × fold, coloured by model."""
    title = "Training of the final models"
    # Only networks trained epoch by epoch have curves (the LDA baseline's history is a single fit).
    histories = {key: table for key, table in histories.items() if len(table) and "train_loss" in table}
    if not histories:
        return save_figure(no_data_figure(title, "No training histories (no trained networks)."), out_stem)
    colours = extend_colours(colours, map(run_model, histories))
    runs_per_model = pd.Series([run_model(key) for key in histories]).value_counts()
    # Many folds per model draw many lines of one colour; thinner, translucent lines keep them apart.
    line_width, alpha = (1.8, 1.0) if runs_per_model.max() == 1 else (1.0, 0.6)

    figure = Figure(figsize=(12, 4.8), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for key, history in histories.items():
        colour = colours[run_model(key)]
        style = {"color": colour, "linewidth": line_width, "alpha": alpha}
        loss_axes.plot(history["epoch"], history["train_loss"], **style)
        loss_axes.plot(history["epoch"], history["val_loss"], linestyle="--", **style)
        accuracy_axes.plot(history["epoch"], 100 * history["val_accuracy"], **style)
        kept = kept_epoch(history)
        if kept is not None:
            loss_axes.plot(kept["epoch"], kept["val_loss"], "o", color=colour, markersize=5)
    for axes in (loss_axes, accuracy_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_axes.set_title("Loss")
    loss_axes.set_xlabel("Epoch")
    loss_axes.set_ylabel("Loss (each model's training objective)")
    accuracy_axes.set_title("Validation accuracy")
    accuracy_axes.set_xlabel("Epoch")
    percent_axis(accuracy_axes, "Validation accuracy, per frame (%)")
    folds = len({key.split("/", 1)[-1] for key in histories})
    figure.suptitle(f"{title}: {len(runs_per_model)} model(s) × {folds} fold(s)")
    figure.legend(handles=model_handles(colours, runs_per_model.index), loc="outside right upper", title="Model")
    figure.legend(
        handles=[
            Line2D([], [], color="grey", label="training loss"),
            Line2D([], [], color="grey", linestyle="--", label="validation loss"),
            Line2D([], [], color="grey", marker="o", linestyle="", label="epoch kept\n(lowest validation loss)"),
        ],
        loc="outside right lower",
        title="Line style",
    )
    return save_figure(figure, out_stem)


@styled
def search_figure(
    searches: Mapping[str, pd.DataFrame], out_stem: Path, colours: Mapping[str, str] | None = None
) -> list[Path]:
    """Validation accuracy of every random-search trial against its learning rate; stars mark the chosen ones."""
    title = "Random hyper-parameter search"
    # The LDA baseline has no learning rate to search: only networks appear.
    searches = {key: table for key, table in searches.items() if len(table) and "learning_rate" in table}
    if not searches:
        return save_figure(no_data_figure(title, "No hyper-parameter searches (no trained networks)."), out_stem)
    colours = extend_colours(colours, map(run_model, searches))
    figure = Figure(figsize=(9, 5), layout="constrained")
    axes = figure.add_subplot()
    for key, search in searches.items():
        colour = colours[run_model(key)]
        axes.scatter(search["learning_rate"], 100 * search["val_accuracy"], color=colour, s=18, alpha=0.7, lw=0)
        chosen = chosen_trial(search)
        axes.scatter(
            chosen["learning_rate"], 100 * chosen["val_accuracy"], color=colour, marker="*", s=180, ec="black", lw=0.8
        )
    axes.set_xscale("log")
    axes.set_xlabel("Learning rate (log scale)")
    percent_axis(axes, "Validation accuracy of the trial, per frame (%)")
    trials = max(len(search) for search in searches.values())
    axes.set_title(f"{title}: up to {trials} trials per model × fold ({len(searches)} runs)")
    handles = model_handles(colours, map(run_model, searches), kind="point")
    handles.append(
        Line2D([], [], marker="*", color="grey", markeredgecolor="black", markersize=12, linestyle="", label="chosen")
    )
    figure.legend(handles=handles, loc="outside right upper", title="Model")
    return save_figure(figure, out_stem)


def chosen_trial(search: pd.DataFrame) -> pd.Series:
    """The trial training kept: the row marked in search.tsv's ``chosen`` column."""
    chosen = search[search["chosen"].astype(str).str.lower() == "true"]
    if len(chosen) != 1:
        raise ValueError(f"search table marks {len(chosen)} trials as chosen, not one")
    return chosen.iloc[0]


def kept_epoch(history: pd.DataFrame) -> pd.Series | None:
    """The row of ``history.tsv`` whose weights training kept, as :func:`..learning.train.kept_row` chose it: the
    highest validation stream score where the rows carry one (``training.selection: stream``), else the lowest
    finite validation loss, the first of ties (``model.pt`` records its epoch as ``best_epoch``, but the figure rule
    reads the history and search tables only). None when no validation loss is finite."""
    finite = history[np.isfinite(history["val_loss"])] if len(history) else history
    if finite.empty:
        return None
    # Read back from tables, an all-NaN column may come as text: numbers or NaN.
    stream = pd.to_numeric(finite[STREAM_SCORE], errors="coerce") if STREAM_SCORE in finite else pd.Series([])
    if np.isfinite(stream.astype(float)).any():
        return finite.loc[stream.idxmax()]
    return finite.loc[finite["val_loss"].idxmin()]
