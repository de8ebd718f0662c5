"""The run's calibration curve: every calibration fold's ``calibration.tsv`` (rows for each new user) summarised
as subject means with 95 % bootstrap intervals over subjects (:mod:`.bootstrap`), per family of folds, model,
window, method and number of calibration repetitions (its figure: :mod:`..report.calibration_figure`).

Beside each mean, the paired comparison with each baseline trained on the same c repetitions (``scratch``, ``lda``):
the mean over subjects of the method's value minus the baseline's, for the same subject, with its own 95 % bootstrap
interval (``paired_vs_scratch``, ``paired_vs_scratch_low``, ``paired_vs_scratch_high``; the same for ``lda``). A
difference between two curves' means can hide a consistent per-subject gain or loss inside wide intervals; the
paired interval shows whether the method beats the baseline subject by subject. NaN where the baseline was not run
at that c (c = 0, or a baseline left out of ``calibration.baselines``); only the subjects both were scored on
count."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .bootstrap import subject_interval

METRICS = (
    "segment_accuracy",
    "segment_balanced_accuracy",
    "segment_rest_false_activation",
    "stream_accuracy",
    "stream_movement_accuracy",
    "stream_rest_false_activation",
    "onset_delay_p50_ms",
)
KEYS = ["family", "model", "window", "method", "repetitions"]
BASELINES = ("scratch", "lda")  # what every method is compared with, subject by subject, at the same c
PAIRED = [f"paired_vs_{baseline}{part}" for baseline in BASELINES for part in ("", "_low", "_high")]
COLUMNS = [*KEYS, "metric", "mean", "low", "high", "subjects", *PAIRED]


def paired_difference(values: pd.DataFrame, baseline: pd.DataFrame | None, seed: int) -> np.ndarray:
    """[3, metric]: the mean over subjects of ``values`` minus ``baseline`` (both [subject, metric], by subject
    name), with its bootstrap interval over the subjects both hold; NaN without a baseline or a common subject."""
    common = values.index.intersection(baseline.index) if baseline is not None else []
    if not len(common):
        return np.full((3, values.shape[1]), np.nan)
    return subject_interval((values.loc[common] - baseline.loc[common]).to_numpy(), seed)


def calibration_table(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Per (family, model, window, method, repetitions) and metric: the mean over test subjects, its interval, how
    many subjects it counts, and the paired differences from each baseline at the same c (see the module)."""
    by_subject = {key: group.groupby("subject")[list(METRICS)].mean() for key, group in rows.groupby(KEYS, sort=True)}
    out = []
    for key, values in by_subject.items():
        mean, low, high = subject_interval(values.to_numpy(), seed)
        family, model, window, _, repetitions = key
        paired = {
            baseline: paired_difference(values, by_subject.get((family, model, window, baseline, repetitions)), seed)
            for baseline in BASELINES
        }
        for i, metric in enumerate(METRICS):
            row = dict(zip(KEYS, key, strict=True)) | {
                "metric": metric,
                "mean": mean[i],
                "low": low[i],
                "high": high[i],
            }
            row["subjects"] = int(np.isfinite(values[metric]).sum())
            for baseline, (difference, lower, upper) in paired.items():
                name = f"paired_vs_{baseline}"
                row |= {name: difference[i], f"{name}_low": lower[i], f"{name}_high": upper[i]}
            out.append(row)
    return pd.DataFrame(out, columns=COLUMNS)
