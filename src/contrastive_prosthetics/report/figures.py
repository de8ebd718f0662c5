"""Report figures of what a user gets: subset-size accuracy, voting window, confusion, per-subject accuracy.

Inputs are the aggregated evaluation tables (``subset_accuracy``, ``subset_exact``, ``voting``, ``metrics``,
``confusion``) and each model × fold's ``history.tsv`` and ``search.tsv`` (drawn by :mod:`.training_figures`); a
figure whose data are missing says so instead of failing, so that a run without networks (say, LDA only) still
gets its report. A model keeps its colour in every figure that :func:`make_figures` draws.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..evaluation.artefacts import EVALUATION_TABLES, STREAM_TABLES, SUMMARY_TABLES
from ..evaluation.tables import read_table
from .comparison_figures import per_class_recall_figure, validation_choice, windows_figure, zero_shot_figure
from .plotting import (
    BAND_ALPHA,
    KEY_FONT_SIZE,
    LEVEL_TEXT,
    as_bool,
    class_description,
    class_sort_key,
    extend_colours,
    group_text,
    integer_ticks,
    is_amputee,
    model_colours,
    model_handles,
    no_data_figure,
    percent_axis,
    read_run_tables,
    run_model,
    save_figure,
    styled,
    subject_name,
    subject_sort_key,
    with_labels,
)
from .stream_figures import stream_figure, stream_tradeoff_figure
from .training_figures import search_figure, training_curves_figure


def summary_rows(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    return with_labels(summary[summary["metric"] == metric]).sort_values("k")


def draw_subject_and_subset_bands(axes: Axes, rows: pd.DataFrame, colour: str, linestyle: str = "-") -> None:
    """The mean over subjects with its bootstrap interval (filled), and the subsets' Monte-Carlo interval (thin
    outline): how much users differ, and how much the subsets drawn do."""
    k = rows["k"].to_numpy()
    axes.plot(k, 100 * rows["subject_mean"], color=colour, linewidth=2, linestyle=linestyle)
    axes.fill_between(
        k, 100 * rows["subject_ci_low"], 100 * rows["subject_ci_high"], color=colour, alpha=BAND_ALPHA, lw=0
    )
    for edge in ("subset_ci_low", "subset_ci_high"):
        axes.plot(k, 100 * rows[edge], color=colour, linewidth=0.6, linestyle=(0, (1, 1)), alpha=0.8)


@styled
def subset_size_figure(
    subset_summary: pd.DataFrame,
    subset_exact: pd.DataFrame,
    out_stem: Path,
    colours: Mapping[str, str] | None = None,
    vote_ms: float | None = None,
) -> list[Path]:
    """What a prosthesis user gets for picking k gestures (rest always added), against k: accuracy (left), and
    gesture-only accuracy and the rest false-activation rate (right), each the mean over subjects with its 95 %
    bootstrap interval over subjects, and the Monte-Carlo interval over the subsets drawn."""
    title = "Among k chosen gestures + rest"
    accuracy = summary_rows(subset_summary, "accuracy")
    exact = with_labels(subset_exact[subset_exact["group"] == "all"])
    if accuracy.empty:
        return save_figure(no_data_figure(title, "No subset accuracies."), out_stem)
    colours = extend_colours(colours, [*accuracy["label"], *exact["label"]])
    k_max = int(accuracy["k"].max())
    k = np.arange(1, k_max + 1)

    figure = Figure(figsize=(14, 5.5), layout="constrained")
    left, right = figure.subplots(1, 2, sharex=True)
    for label, rows in accuracy.groupby("label"):
        draw_subject_and_subset_bands(left, rows, colours[label])
    for label, rows in exact.groupby("label"):
        expectation = rows.groupby("k")["accuracy"].mean()
        left.plot(expectation.index, 100 * expectation, color=colours[label], linestyle="--", linewidth=1.5)
    left.plot(k, 100 / (k + 1), color="black", linestyle=":", linewidth=1.5)
    left.set_title("Accuracy over all windows scored")
    percent_axis(left, "Accuracy (%)")
    for label, rows in summary_rows(subset_summary, "gesture_accuracy").groupby("label"):
        draw_subject_and_subset_bands(right, rows, colours[label])
    for label, rows in summary_rows(subset_summary, "rest_false_activation").groupby("label"):
        draw_subject_and_subset_bands(right, rows, colours[label], linestyle="-.")
    right.plot(k, 100 / k, color="black", linestyle=":", linewidth=1.5)
    right.set_title("Gesture-only accuracy (solid), rest false activation (dash-dot)")
    percent_axis(right, "Gesture windows right / rest windows decided as a gesture (%)")
    for axes in (left, right):
        axes.set_xlim(1, max(k_max, 2))
        axes.set_xticks(integer_ticks(k_max))
        axes.set_xlabel("Gestures chosen, k (rest is always added: k + 1 classes)")
    figure.suptitle(title)
    figure.legend(handles=model_handles(colours, accuracy["label"]), loc="outside right upper", title="Model")
    figure.legend(handles=subset_style_handles(accuracy, vote_ms), loc="outside right lower", title="Line style")
    return save_figure(figure, out_stem)


def subset_style_handles(accuracy: pd.DataFrame, vote_ms: float | None) -> list:
    """The key to line styles and bands, with the numbers of subjects and subsets behind them."""
    subjects = int(accuracy["subjects"].max()) if len(accuracy) else 0
    subsets = int(accuracy["subsets"].max()) if len(accuracy) else 0
    vote = f"{vote_ms:g} ms majority vote" if vote_ms else "majority vote"
    return [
        Line2D([], [], color="grey", linewidth=2, label=f"mean over {subjects} subjects, {vote}"),
        Patch(color="grey", alpha=BAND_ALPHA * 2, label="95 % bootstrap interval\nover subjects"),
        Line2D(
            [],
            [],
            color="grey",
            linewidth=0.6,
            linestyle=(0, (1, 1)),
            label=f"95 % interval over the\n{subsets} subsets drawn per k",
        ),
        Line2D([], [], color="grey", linestyle="--", label="exact expectation over\nall subsets, per frame"),
        Line2D([], [], color="black", linestyle=":", label="chance: 1 / (k + 1) (left),\n1 / k (gestures, right)"),
    ]


@styled
def voting_figure(
    voting: pd.DataFrame,
    out_stem: Path,
    group: str = "all",
    colours: Mapping[str, str] | None = None,
    vote_ms: float | None = None,
) -> list[Path]:
    """Accuracy over all classes against the majority-voting window: what smoothing decisions buys."""
    title = f"Accuracy against majority-voting window ({group_text(group)})"
    rows = with_labels(voting[voting["group"] == group])
    if rows.empty:
        return save_figure(no_data_figure(title, f"No voting results for group {group!r}."), out_stem)
    colours = extend_colours(colours, rows["label"])

    figure = Figure(figsize=(9, 5), layout="constrained")
    axes = figure.add_subplot()
    for label, model_rows in rows.groupby("label"):
        curve = model_rows.groupby("window_ms")["accuracy"].mean()
        axes.plot(curve.index, 100 * curve, color=colours[label], marker="o", markersize=4, linewidth=2)
    handles = model_handles(colours, rows["label"])
    if vote_ms and rows["window_ms"].min() <= vote_ms <= rows["window_ms"].max():
        axes.axvline(vote_ms, color="grey", linestyle=":", linewidth=1)
        handles.append(
            Line2D([], [], color="grey", linestyle=":", label=f"window of the subset\nfigure ({vote_ms:g} ms)")
        )
    axes.set_xlabel("Voting window (ms; one frame = no voting)")
    # Not 0-100 %: voting moves accuracy by a few points, which the full scale would flatten.
    axes.set_ylabel(f"Accuracy over all classes (%), mean of {rows['fold'].nunique()} fold(s)")
    axes.set_title(title)
    figure.legend(handles=handles, loc="outside right upper", title="Model")
    return save_figure(figure, out_stem)


def confusion_matrix(rows: pd.DataFrame) -> pd.DataFrame:
    """Counts summed over folds, true classes as rows, both axes in catalogue order (missing pairs are 0)."""
    classes = sorted(set(rows["true"]) | set(rows["predicted"]), key=class_sort_key)
    counts = rows.pivot_table(index="true", columns="predicted", values="count", aggfunc="sum", fill_value=0)
    return counts.reindex(index=classes, columns=classes, fill_value=0)


@styled
def confusion_figure(
    confusion: pd.DataFrame,
    out_stem: Path,
    model: str | None,
    group: str = "all",
    level: str = "vote",
    adabn: bool | None = None,
) -> list[Path]:
    """Row-normalised confusion matrix (recall per true class) of one model, with a key to the class names."""
    title = f"Confusion of {model}, {LEVEL_TEXT.get(level, level)} ({group_text(group)})"
    selected = (confusion["model"] == model) & (confusion["group"] == group) & (confusion["level"] == level)
    if adabn is not None:
        selected &= as_bool(confusion["adabn"]) == adabn
    rows = confusion[selected]
    if rows.empty or rows["count"].sum() == 0:
        return save_figure(no_data_figure(title, f"No confusion counts for model {model!r}."), out_stem)
    counts = confusion_matrix(rows)
    totals = counts.sum(axis=1)
    # A class never shown in the test data has no row to normalise; NaN leaves its row blank rather than 0 %.
    recall = counts.div(totals.where(totals > 0), axis=0)
    accuracy = np.trace(counts.to_numpy()) / totals.sum()
    classes = list(counts.index)

    side = max(5.0, 0.22 * len(classes))
    key_lines = class_key_lines(classes, missing=[c for c, total in totals.items() if total == 0])
    key_width = text_width_inches(key_lines, KEY_FONT_SIZE)
    figure = Figure(figsize=(side + 1.6 + key_width, side + 1.0), layout="constrained")
    matrix_axes, key_axes = figure.subplots(1, 2, width_ratios=[side + 1.6, key_width])
    # Top-aligned, so that the key starts level with the matrix rather than above it.
    matrix_axes.set_anchor("N")
    colour_map = mpl.colormaps["Blues"].with_extremes(bad="#dddddd")
    # A square-root colour scale keeps confusions of a few percent visible next to a diagonal near 100 %.
    image = matrix_axes.imshow(
        recall.to_numpy(dtype=float), cmap=colour_map, norm=PowerNorm(gamma=0.5, vmin=0, vmax=1), aspect="equal"
    )
    label_confusion_axes(matrix_axes, classes)
    matrix_axes.set_title(f"{title}\naccuracy {100 * accuracy:.1f} % over {int(totals.sum())} decisions", fontsize=10)
    # Shrunk on large matrices for looks, but never shorter than its label.
    colour_bar = figure.colorbar(
        image, ax=matrix_axes, shrink=min(1.0, 5.0 / side), fraction=0.05, pad=0.01, anchor=(0, 1)
    )
    colour_bar.set_label("Share of the true class (diagonal = recall)")
    colour_bar.set_ticks([0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0])
    colour_bar.set_ticklabels(["0 %", "1 %", "5 %", "10 %", "25 %", "50 %", "75 %", "100 %"])
    draw_class_key(key_axes, key_lines)
    return save_figure(figure, out_stem)


def label_confusion_axes(axes: Axes, classes: list[str]) -> None:
    # 41 classes only fit at a small font; x labels turned upright so that neighbours never overlap.
    font_size = 6 if len(classes) > 25 else 8
    ticks = np.arange(len(classes))
    axes.set_xticks(ticks, classes, rotation=90, fontsize=font_size)
    axes.set_yticks(ticks, classes, fontsize=font_size)
    axes.set_xlabel("Predicted class")
    axes.set_ylabel("True class")
    axes.grid(False)
    axes.spines[:].set_visible(True)


def class_key_lines(classes: list[str], missing: list[str]) -> list[str]:
    """NinaPro's description of each class, so that the figure reads without its caption."""
    lines = [f"{name:<5} {class_description(name) or ''}".rstrip() for name in classes]
    if missing:
        lines += ["", "grey rows: never shown in the test data", *textwrap.wrap(", ".join(missing), 50)]
    return lines


def text_width_inches(lines: list[str], font_size: float) -> float:
    # A monospace character is about 0.6 em wide; 72 points to the inch.
    return 0.3 + 0.6 * font_size / 72 * max(len(line) for line in lines)


def draw_class_key(axes: Axes, lines: list[str]) -> None:
    axes.set_axis_off()
    axes.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=KEY_FONT_SIZE)
    axes.set_title("Classes", loc="left", fontsize=10)


@styled
def per_subject_figure(
    metrics: pd.DataFrame, out_stem: Path, level: str = "vote", colours: Mapping[str, str] | None = None
) -> list[Path]:
    """Accuracy of each test subject per model; intact and amputee subjects in separate panels."""
    title = f"Accuracy per test subject, {LEVEL_TEXT.get(level, level)}"
    selected = (
        metrics["group"].astype(str).str.startswith("subject:")
        & (metrics["metric"] == "accuracy")
        & (metrics["level"] == level)
    )
    rows = with_labels(metrics[selected]).assign(subject=lambda t: t["group"].map(subject_name))
    if rows.empty:
        return save_figure(no_data_figure(title, "No per-subject accuracies."), out_stem)
    colours = extend_colours(colours, rows["label"])
    # A subject tested in several folds (e.g. the repetition fold and its own leave-one-subject-out fold) gets
    # the mean over them; the caption says so.
    accuracy = rows.pivot_table(index="subject", columns="label", values="value", aggfunc="mean")
    panels = [
        (name, sorted((s for s in accuracy.index if is_amputee(s) == amputee), key=subject_sort_key))
        for name, amputee in (("Intact", False), ("Amputees", True))
    ]
    panels = [(name, subjects) for name, subjects in panels if subjects]
    # About 0.05 inch per bar and per subject gap: 51 subjects × 4 models fit a 15-inch-wide page.
    width = float(np.clip(3 + 0.05 * accuracy.size + 0.05 * len(accuracy.index), 8, 22))
    font_size = 7 if len(accuracy.index) > 15 else 9
    figure = Figure(figsize=(width, 4.8), layout="constrained")
    axes_list = figure.subplots(
        1, len(panels), sharey=True, width_ratios=[len(s) + 2 for _, s in panels], squeeze=False
    )[0]
    for axes, (name, subjects) in zip(axes_list, panels, strict=True):
        draw_subject_bars(axes, accuracy.loc[subjects], colours, font_size)
        databases = sorted({s.partition("/")[0].upper() for s in subjects})
        axes.set_title(f"{name}\n{', '.join(databases)}, {len(subjects)} subject{'s' * (len(subjects) > 1)}")
        axes.set_xlabel("Test subject")
    percent_axis(axes_list[0], "Accuracy (%), mean over the\nfolds testing the subject")
    figure.suptitle(title)
    figure.legend(
        handles=model_handles(colours, accuracy.columns, kind="bar"), loc="outside right upper", title="Model"
    )
    return save_figure(figure, out_stem)


def draw_subject_bars(axes: Axes, accuracy: pd.DataFrame, colours: Mapping[str, str], font_size: float) -> None:
    """Bars grouped per subject, one per model, side by side within 80 % of a subject's slot."""
    positions = np.arange(len(accuracy.index))
    bar_width = 0.8 / len(accuracy.columns)
    for i, label in enumerate(accuracy.columns):
        offset = (i - (len(accuracy.columns) - 1) / 2) * bar_width
        axes.bar(positions + offset, 100 * accuracy[label], width=bar_width, color=colours[label], label=label)
    axes.set_xticks(positions, accuracy.index, rotation=90, fontsize=font_size)
    axes.set_xlim(-0.6, len(positions) - 0.4)
    axes.grid(axis="x", visible=False)


# ---------------------------------------------------------------------------------------------------- all


def selected(table: pd.DataFrame, window: str | None, folds: set[str] | None, family: str | None) -> pd.DataFrame:
    """The rows of one window and one family of folds (all when None)."""
    keep = pd.Series(True, index=table.index)
    if window is not None and "window" in table:
        keep &= table["window"].astype(str) == window
    if folds is not None and "fold" in table:
        keep &= table["fold"].astype(str).isin(folds)
    if family is not None and "family" in table:
        keep &= table["family"].astype(str) == family
    return table[keep]


def make_figures(
    eval_dir: Path,
    histories: list[Path],
    searches: list[Path],
    out_dir: Path,
    *,
    vote_ms: float,
    window: str | None = None,
    family: str | None = None,
    families: dict[str, str] | None = None,
    confusion_model: str | None = None,
) -> list[Path]:
    """Draw every report figure from a run's aggregated tables and the named ``history.tsv`` and ``search.tsv``
    files (``.../{model}/{fold}/{window}/``); returns the written files.

    The figures show one ``window`` and one ``family`` of folds (``families``: fold → family; all when None),
    except the window comparison, which shows every window of the family. The confusion and per-class recall
    figures show ``confusion_model``, by default the model chosen on validation accuracy.
    """
    eval_dir, out_dir = Path(eval_dir), Path(out_dir)
    families = families or {}
    folds = None if family is None else {fold for fold, name in families.items() if name == family} | {family}
    tables = {
        name: selected(read_table(eval_dir / f"{name}.tsv"), window, folds, family)
        for name in (*EVALUATION_TABLES, *SUMMARY_TABLES, *STREAM_TABLES)
    }
    # Zero-shot folds are a family of their own: shown for the window, whatever family the other figures show.
    zero_shot = {
        name: selected(read_table(eval_dir / f"{name}.tsv"), window, None, None)
        for name in ("zero_shot", "zero_shot_subsets")  # the figure's (ZERO_SHOT_TABLES has its confusion too)
    }
    every_window = selected(read_table(eval_dir / "summary.tsv"), None, None, family)

    def in_scope(paths: list[Path]) -> list[Path]:
        """Training records of the shown window and family (``.../{fold}/{window}/<name>.tsv``)."""
        return [
            path
            for path in paths
            if (window is None or Path(path).parent.name == window)
            and (folds is None or Path(path).parent.parent.name in folds)
        ]

    history_tables, search_tables = read_run_tables(in_scope(histories)), read_run_tables(in_scope(searches))
    labels = [label for table in tables.values() if "model" in table for label in with_labels(table)["label"]]
    colours = model_colours([*labels, *map(run_model, history_tables), *map(run_model, search_tables)])
    model = confusion_model or validation_choice(history_tables)

    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        *subset_size_figure(
            tables["subset_summary"], tables["subset_exact"], out_dir / "subset_size", colours=colours, vote_ms=vote_ms
        ),
        *voting_figure(tables["voting"], out_dir / "voting", colours=colours, vote_ms=vote_ms),
        *confusion_figure(tables["confusion"], out_dir / "confusion", model),
        *per_subject_figure(tables["metrics"], out_dir / "per_subject", colours=colours),
        *training_curves_figure(history_tables, out_dir / "training_curves", colours=colours),
        *search_figure(search_tables, out_dir / "search", colours=colours),
        *windows_figure(every_window, out_dir / "windows", colours=colours),
        *per_class_recall_figure(tables["metrics"], out_dir / "per_class_recall", model, colours=colours),
        *stream_figure(tables["stream_metrics"], tables["stream_timing"], out_dir / "stream", colours=colours),
        *stream_tradeoff_figure(tables["stream_tradeoff"], out_dir / "stream_tradeoff", vote_ms, colours=colours),
        *zero_shot_figure(
            zero_shot["zero_shot"], zero_shot["zero_shot_subsets"], out_dir / "zero_shot", colours=colours
        ),
    ]
