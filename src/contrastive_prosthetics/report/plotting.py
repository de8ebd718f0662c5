"""Shared plotting: the report style, reading run tables, one colour per model, class and subject names, saving.

Figures are drawn with matplotlib's object-oriented API (``Figure``, no pyplot): no display, no global figure
registry to close, and nothing that changes the backend of whoever imports this module. Each is saved atomically
as SVG (text kept as text, so it stays searchable and editable) and PNG.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import matplotlib as mpl
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..core.atomic import atomic_write
from ..data.ninapro import DATABASES, EXERCISES, REST, describe
from ..evaluation.tables import read_table

PNG_DPI = 150
KEY_FONT_SIZE = 7
LEVEL_TEXT = {"vote": "after majority vote", "frame": "per frame (no voting)"}
# z = 1.96: the normal 97.5 % quantile, so mean ± z·SE is a 95 % interval for the mean.
Z_95 = 1.96
BAND_ALPHA = 0.2
STYLE = {
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    # Text as <text> elements rather than glyph outlines: searchable, editable, and much smaller files.
    "svg.fonttype": "none",
    # Fixed ids inside the SVG, so that equal data give byte-identical files across runs.
    "svg.hashsalt": "contrastive-prosthetics",
}


def styled(draw: Callable[..., list[Path]]) -> Callable[..., list[Path]]:
    """Draw and save inside the report style; rcParams are read when artists are made, so both need it."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> list[Path]:
        with mpl.rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------------------- reading


def read_run_tables(paths: Iterable[Path]) -> dict[str, pd.DataFrame]:
    """``{"model/fold/window": table}`` for files laid out as ``.../{model}/{fold}/{window}/<name>.tsv``."""
    return {"/".join(Path(path).parts[-4:-1]): read_table(path) for path in sorted(paths)}


def as_bool(values: pd.Series) -> pd.Series:
    """True/False whether pandas parsed the column as booleans or left it as text."""
    return values.astype(str).str.strip().str.lower().isin({"true", "1", "yes"})


# ---------------------------------------------------------------------------------------------------- models


def with_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Add a ``label`` column: the model name, plus " (AdaBN)" only where one name occurs with both settings."""
    table = table.copy()
    if "adabn" not in table:
        table["label"] = table["model"].astype(str)
        return table
    adabn = as_bool(table["adabn"])
    settings_per_model = adabn.groupby(table["model"]).nunique()
    ambiguous = table["model"].map(settings_per_model) > 1
    table["label"] = table["model"].astype(str).where(~(ambiguous & adabn), table["model"].astype(str) + " (AdaBN)")
    return table


def run_model(key: str) -> str:
    """The model of a ``"model/fold"`` key of ``read_run_tables``."""
    return key.split("/", 1)[0]


def model_colours(labels: Iterable[str]) -> dict[str, str]:
    """One colour per model label, assigned in sorted order so that every figure of a run agrees."""
    ordered = sorted(set(labels))
    cycle = mpl.colormaps["tab10" if len(ordered) <= 10 else "tab20"].colors
    return {label: to_hex(cycle[i % len(cycle)]) for i, label in enumerate(ordered)}


def extend_colours(colours: Mapping[str, str] | None, labels: Iterable[str]) -> dict[str, str]:
    """``colours`` as given (consistent across figures), with any label it lacks given a colour of its own."""
    labels = sorted(set(labels))
    if colours is None:
        return model_colours(labels)
    extended = dict(colours)
    missing = [label for label in labels if label not in extended]
    if missing:
        unused = [c for c in model_colours(list(extended) + missing).values() if c not in extended.values()]
        extended.update(zip(missing, unused or ["#7f7f7f"] * len(missing), strict=False))
    return extended


def model_handles(colours: Mapping[str, str], labels: Iterable[str], kind: str = "line") -> list:
    """Legend entries, one per model, drawn like the figure's marks: ``"line"``, ``"bar"`` or ``"point"``."""
    labels = sorted(set(labels))
    if kind == "bar":
        return [Patch(color=colours[label], label=label) for label in labels]
    if kind == "point":
        return [Line2D([], [], color=colours[label], marker="o", linestyle="", label=label) for label in labels]
    return [Line2D([], [], color=colours[label], linewidth=2, label=label) for label in labels]


# ---------------------------------------------------------------------------------------------------- classes


def class_sort_key(name: str) -> tuple:
    """Catalogue order: rest, then A1..A12, B1..B17, C1..C23, D1..D9; anything unknown last, alphabetically."""
    if name == REST:
        return (0, 0, 0, "")
    letter, number = name[:1], name[1:]
    if letter in EXERCISES and number.isdigit():
        return (1, EXERCISES.index(letter), int(number), "")
    return (2, 0, 0, name)


def class_description(name: str) -> str | None:
    try:
        return describe(name)
    except (KeyError, ValueError, IndexError):
        return None


def subject_name(group: str) -> str:
    return group.removeprefix("subject:")


def subject_sort_key(subject: str) -> tuple:
    """``db2/s10`` after ``db2/s9``: database, then subject number."""
    database, _, number = subject.partition("/")
    digits = number.lstrip("s")
    return (database, int(digits) if digits.isdigit() else 0, number)


def is_amputee(subject: str) -> bool:
    spec = DATABASES.get(subject.partition("/")[0])
    return bool(spec and spec.amputee)


# ---------------------------------------------------------------------------------------------------- saving


def save_figure(figure: Figure, out_stem: Path) -> list[Path]:
    """Write ``<stem>.svg`` and ``<stem>.png`` atomically; returns both paths."""
    out_stem = Path(out_stem)
    paths = []
    for fmt, options in (("svg", {"metadata": {"Date": None}}), ("png", {"dpi": PNG_DPI})):
        path = out_stem.with_name(f"{out_stem.name}.{fmt}")
        atomic_write(path, lambda stream, fmt=fmt, options=options: figure.savefig(stream, format=fmt, **options))
        paths.append(path)
    return paths


def no_data_figure(title: str, message: str) -> Figure:
    figure = Figure(figsize=(6, 2.5), layout="constrained")
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_title(title)
    axes.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=axes.transAxes)
    return figure


def percent_axis(axes: Axes, label: str) -> None:
    axes.set_ylabel(label)
    axes.set_ylim(0, 101)


def integer_ticks(k_max: int) -> list[int]:
    """1..K for few k, else 1 and every fifth k: the axis starts at one gesture, not at zero."""
    return list(range(1, k_max + 1)) if k_max <= 12 else sorted({1, *range(5, k_max + 1, 5)})


def group_text(group: str) -> str:
    return f"group: {subject_name(group)}" if group.startswith("subject:") else f"group: {group} subjects"
