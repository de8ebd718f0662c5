"""The run's calibration curve: every calibration fold's ``calibration.tsv`` (one test subject each) summarised
as subject means with 95 % bootstrap intervals over subjects (:mod:`.bootstrap`), per family of folds, model,
window, method and number of calibration repetitions (its figure: :mod:`..report.calibration_figure`)."""

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
COLUMNS = [*KEYS, "metric", "mean", "low", "high", "subjects"]


def calibration_table(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Per (family, model, window, method, repetitions) and metric: the mean over test subjects, its interval, and
    how many subjects it counts."""
    out = []
    for key, group in rows.groupby(KEYS, sort=True):
        by_subject = group.groupby("subject")[list(METRICS)].mean()
        mean, low, high = subject_interval(by_subject.to_numpy(), seed)
        for i, metric in enumerate(METRICS):
            out.append(
                dict(zip(KEYS, key, strict=True)) | {"metric": metric, "mean": mean[i], "low": low[i], "high": high[i]}
            )
            out[-1]["subjects"] = int(np.isfinite(by_subject[metric]).sum())
    return pd.DataFrame(out, columns=COLUMNS)
