"""What the controller gives each user on the continuous recording, summarised over users: ``stream_summary.tsv``.

From ``stream_metrics.tsv``'s per-subject rows at k = K (every gesture allowed), per model × family × window ×
adaptation protocol × decision rule × vote: the mean over subjects of each metric with its 95 % bootstrap interval
over subjects (``<metric>``, ``<metric>_low``, ``<metric>_high``), and the rest promise user by user: how many
subjects' test rest false activation stayed within ``evaluation.rest_false_activation_target``
(``subjects_within_target`` of ``subjects``; ``subjects_outside_target`` names the others). A mean within the target
can hide users far beyond it; a prosthesis keeps its promise to each wearer or not at all.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .bootstrap import subject_interval
from .stream_metrics import POOLED
from .summary import with_family

METRICS = (
    "accuracy",
    "movement_accuracy",
    "rest_false_activation",
    "onset_delay_p50_ms",
    "onset_delay_p90_ms",
    "active_error_rate",
    "instability",
    "onset_within_250ms",
)
KEYS = ["model", "adabn", "adaptation", "adaptation_protocol", "family", "window", "rule", "vote_ms"]
COLUMNS = [*KEYS, "subjects", "subjects_within_target", "subjects_outside_target", "rest_false_activation_target"]
COLUMNS += [f"{metric}{end}" for metric in METRICS for end in ("", "_low", "_high")]


def stream_summary(
    stream_metrics: pd.DataFrame, families: dict[str, str], target: float | None, seed: int
) -> pd.DataFrame:
    """``stream_summary.tsv`` (see the module) from the run's ``stream_metrics.tsv``; ``target`` None: no rest
    promise (``subjects_within_target`` empty)."""
    every_gesture = stream_metrics["k"] == stream_metrics.groupby(["model", "fold"])["k"].transform("max")
    subjects = with_family(stream_metrics[(stream_metrics["subject"] != POOLED) & every_gesture], families)
    rows = []
    for key, group in subjects.groupby(KEYS, sort=False, dropna=False):
        # A subject tested by several folds of a family (zero-shot sets) counts as the mean of its rows.
        per_subject = group.groupby("subject", sort=True)[list(METRICS)].mean()
        row = dict(zip(KEYS, key, strict=True)) | {"subjects": len(per_subject), "rest_false_activation_target": target}
        if target is None:
            row |= {"subjects_within_target": np.nan, "subjects_outside_target": ""}
        else:
            outside = per_subject.index[per_subject["rest_false_activation"] > target].tolist()
            row |= {"subjects_within_target": len(per_subject) - len(outside)}
            row |= {"subjects_outside_target": " ".join(outside)}
        for metric in METRICS:
            mean, low, high = subject_interval(per_subject[metric].to_numpy(), seed)
            row |= {metric: mean, f"{metric}_low": low, f"{metric}_high": high}
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)
