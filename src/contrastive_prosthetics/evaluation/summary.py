"""The run's summaries, from the aggregated evaluation tables: what each model gives a user, with uncertainty over
subjects, and the short table printed when a run ends.

Folds of one family (the folds a ``leave_one_subject_out`` shorthand expands to; any other fold is a family of its
own) are summarised together, so that leave-one-subject-out results pool their one test subject each.

    summary.tsv         per model × family × window and metric (accuracy, balanced, gesture-only accuracy, rest
                        false activation; frame and 250 ms-vote level): the value over all test windows (mean over
                        the family's folds), the mean over subjects and its 95 % bootstrap interval over subjects;
                        rest_windows: the test rest windows the rest false activation counts, each test subject's
                        once however many of the family's folds test it (frames at the frame level; empty for the
                        other metrics)
    subset_summary.tsv  per model × family × window × k and metric: the mean over subjects (each subject's mean
                        over the subsets drawn) with its bootstrap interval over subjects, and the mean over the
                        subsets drawn with its Monte-Carlo interval (mean ± 1.96 standard errors over subsets);
                        rest_windows as in summary.tsv, the vote windows each subset's rest false activation counts

The rest windows of a row are its subjects' windows, not its folds': a leave-one-subject-out family tests each
subject in one fold, but a zero-shot family's folds are copies of one base fold, each testing the same subjects on
the same rest windows (with other gestures held out), so summing over its folds would count every window once per
fold. A subject tested by several folds counts its largest count, which is every fold's when, as in every family
the shorthands make, its folds test the same repetitions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import atomic_write_frame
from .bootstrap import subject_interval
from .tables import aggregate_folders, read_table

MODEL_COLUMNS = ["model", "adabn", "adaptation", "family", "window"]
METRICS = ("accuracy", "balanced_accuracy", "gesture_accuracy", "rest_false_activation")
REST_WINDOWS = "rest_windows"  # how many windows the rest false activation counts (evaluation/rest_windows.py)
Z_95 = 1.96


def subject_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the per-subject groups (``subject:<name>``)."""
    return table[table["group"].astype(str).str.startswith("subject:")]


def rest_windows_once(subjects: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.Series | float:
    """The rest windows behind a summary row (per ``by``, if given): the sum over its test subjects of each one's
    count, taken once however many folds test the subject (see the module's docstring). ``subjects``: rows of
    per-subject groups with a ``rest_windows`` column."""
    per_subject = subjects.groupby([*by, "group"])[REST_WINDOWS].max()
    return per_subject.groupby(level=list(by)).sum(min_count=1) if by else per_subject.sum(min_count=1)


def with_family(table: pd.DataFrame, families: dict[str, str]) -> pd.DataFrame:
    return table.assign(family=table["fold"].map(lambda fold: families.get(fold, fold)))


def run_summary(metrics: pd.DataFrame, families: dict[str, str], seed: int) -> pd.DataFrame:
    """summary.tsv from the aggregated metrics table."""
    wanted = metrics["metric"].isin([*METRICS, REST_WINDOWS])
    table = with_family(metrics[(metrics["class"].fillna("") == "") & wanted], families)
    rows = []
    for key, part in table.groupby([*MODEL_COLUMNS, "level"], sort=False):
        overall = part[part["group"] == "all"].groupby("metric")["value"].mean()
        subjects = subject_rows(part)
        counted = rest_windows_once(
            subjects[subjects["metric"] == REST_WINDOWS].rename(columns={"value": REST_WINDOWS})
        )
        per_subject = subjects.pivot_table(index="group", columns="metric", values="value", aggfunc="mean")
        per_subject = per_subject.reindex(columns=list(METRICS))
        mean, low, high = subject_interval(per_subject.to_numpy(), seed)
        for index, metric in enumerate(METRICS):
            rows.append(
                dict(zip([*MODEL_COLUMNS, "level"], key, strict=True))
                | {
                    "metric": metric,
                    "value": overall.get(metric, np.nan),
                    "subject_mean": mean[index],
                    "subject_ci_low": low[index],
                    "subject_ci_high": high[index],
                    "subjects": len(per_subject),
                    "folds": part["fold"].nunique(),
                    REST_WINDOWS: counted if metric == "rest_false_activation" else np.nan,
                }
            )
    return pd.DataFrame(rows)


def subset_summary(subset_accuracy: pd.DataFrame, families: dict[str, str], seed: int) -> pd.DataFrame:
    """subset_summary.tsv from the aggregated subset_accuracy table."""
    table = with_family(subset_accuracy, families)
    subjects = subject_rows(table)
    trials = table[table["group"] == "all"]
    rows = []
    for key, part in subjects.groupby(MODEL_COLUMNS, sort=False):
        # [subject, k, metric]: each subject's mean over the subsets drawn (and the folds testing it)
        means = part.groupby(["group", "k"])[list(METRICS)].mean()
        ks = means.index.get_level_values("k").unique().sort_values()
        values = np.stack([means.xs(k, level="k").to_numpy() for k in ks], axis=1)  # [subject, k, metric]
        centre, low, high = subject_interval(values, seed)
        drawn = trials.merge(pd.DataFrame([dict(zip(MODEL_COLUMNS, key, strict=True))]), on=MODEL_COLUMNS)
        spread = drawn.groupby("k")[list(METRICS)].agg(["mean", "std", "count"])
        # Each subset's rest windows (the same for every subset of a fold with rest added), each subject's once.
        counted = rest_windows_once(part, ("k",)) if REST_WINDOWS in part else pd.Series(np.nan, index=ks)
        for ki, k in enumerate(ks):
            for mi, metric in enumerate(METRICS):
                mc_mean, mc_std, mc_count = (spread.loc[k, (metric, stat)] for stat in ("mean", "std", "count"))
                half = Z_95 * mc_std / np.sqrt(mc_count) if mc_count > 1 else np.nan
                rows.append(
                    dict(zip(MODEL_COLUMNS, key, strict=True))
                    | {
                        "k": int(k),
                        "metric": metric,
                        "subject_mean": centre[ki, mi],
                        "subject_ci_low": low[ki, mi],
                        "subject_ci_high": high[ki, mi],
                        "subjects": len(values),
                        "subset_mean": mc_mean,
                        "subset_ci_low": mc_mean - half,
                        "subset_ci_high": mc_mean + half,
                        "subsets": int(mc_count),
                        REST_WINDOWS: counted.get(k, np.nan) if metric == "rest_false_activation" else np.nan,
                    }
                )
    return pd.DataFrame(rows)


def aggregate_run(
    folders: list[Path], table_names: list[str], out_dir: Path, families: dict[str, str], seed: int
) -> None:
    """Concatenate the per model × fold × window tables into ``out_dir`` and write the two summaries beside them."""
    out_dir = Path(out_dir)
    aggregate_folders(folders, table_names, out_dir)
    metrics = read_table(out_dir / "metrics.tsv")
    atomic_write_frame(run_summary(metrics, families, seed), out_dir / "summary.tsv")
    subsets = read_table(out_dir / "subset_accuracy.tsv")
    atomic_write_frame(subset_summary(subsets, families, seed), out_dir / "subset_summary.tsv")


def summary_text(summary_path: Path, figures_dir: Path, report: str) -> str:
    """The short table a finished run prints: per model, family and window, the vote-level accuracy, balanced
    accuracy, gesture-only accuracy and rest false activation (subject mean and interval), and the rest windows
    that counts, from summary.tsv."""
    summary = read_table(summary_path)
    voted = summary[summary["level"] == "vote"]
    lines = ["", "What a user gets (majority vote; mean over subjects [95 % bootstrap interval]):"]
    header = f"{'model':<28} {'folds':<12} {'window':<8}" + "".join(f"{m.replace('_', ' '):>26}" for m in METRICS)
    lines.append(header + f"{'rest windows':>14}")
    for key, part in voted.groupby(["model", "family", "window"], sort=False):
        cells = []
        for metric in METRICS:
            row = part[part["metric"] == metric].iloc[0]
            cells.append(
                f"{100 * row['subject_mean']:>8.1f} [{100 * row['subject_ci_low']:5.1f}, "
                f"{100 * row['subject_ci_high']:5.1f}] %"
            )
        counted = part[part["metric"] == "rest_false_activation"].iloc[0].get(REST_WINDOWS, np.nan)
        counted = "" if pd.isna(counted) else f"{int(counted)}"
        lines.append(
            f"{key[0]:<28} {key[1]:<12} {key[2]:<8}" + "".join(f"{cell:>26}" for cell in cells) + f"{counted:>14}"
        )
    lines += ["", f"Figures: {figures_dir}/   Tables: {Path(summary_path).parent}/   Report: {report}", ""]
    return "\n".join(lines)


def print_run_summary(summary_path: Path, figures_dir: Path, report: str) -> None:
    """Print :func:`summary_text` when the run made its summary (a run of other targets ends quietly)."""
    if Path(summary_path).exists():
        print(summary_text(Path(summary_path), Path(figures_dir), report))
