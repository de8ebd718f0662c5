"""The run's calibration table: subject means with intervals, and each method's paired difference from the
baselines trained on the same repetitions, subject by subject."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contrastive_prosthetics.evaluation.bootstrap import subject_interval
from contrastive_prosthetics.evaluation.calibration_summary import COLUMNS, METRICS, calibration_table


def fold_rows(values: dict) -> pd.DataFrame:
    """calibration.tsv rows: ``values`` maps (subject, method, repetitions) to every metric's value."""
    leading = {"family": "calibration", "model": "contrastive", "window": "onset"}
    rows = [
        leading | {"subject": subject, "method": method, "repetitions": c} | dict.fromkeys(METRICS, value)
        for (subject, method, c), value in values.items()
    ]
    return pd.DataFrame(rows)


def test_each_method_is_compared_with_each_baseline_subject_by_subject_at_the_same_c():
    generator = np.random.default_rng(0)
    subjects = [f"db2/s{s}" for s in range(1, 7)]
    values = {(s, "adabn", 0): generator.uniform() for s in subjects}
    for method in ("adabn", "prototypes", "scratch", "lda"):
        values |= {(s, method, 1): generator.uniform() for s in subjects}
    del values[("db2/s6", "lda", 1)]  # LDA was not scored on one subject: only the five in common pair
    table = calibration_table(fold_rows(values), seed=3)
    assert list(table.columns) == COLUMNS
    accuracy = table[table["metric"] == "segment_accuracy"].set_index(["method", "repetitions"])
    method = np.array([values[(s, "prototypes", 1)] for s in subjects])
    scratch = np.array([values[(s, "scratch", 1)] for s in subjects])
    expected = subject_interval((method - scratch)[:, None], 3)[:, 0]
    got = accuracy.loc[("prototypes", 1), ["paired_vs_scratch", "paired_vs_scratch_low", "paired_vs_scratch_high"]]
    np.testing.assert_allclose(got.to_numpy(dtype=float), expected)
    lda = np.array([values[(s, "lda", 1)] for s in subjects[:5]])
    assert accuracy.loc[("prototypes", 1), "paired_vs_lda"] == pytest.approx(np.mean(method[:5] - lda))
    # The paired interval is not the difference of the two curves' intervals: it follows each subject's gap.
    assert accuracy.loc[("prototypes", 1), "paired_vs_scratch"] == pytest.approx(
        accuracy.loc[("prototypes", 1), "mean"] - accuracy.loc[("scratch", 1), "mean"]
    )
    assert accuracy.loc[("scratch", 1), "paired_vs_scratch"] == 0.0  # a baseline against itself
    # Nothing to pair with at c = 0: no baseline is trained on no repetition.
    assert accuracy.loc[("adabn", 0), ["paired_vs_scratch", "paired_vs_lda_high"]].isna().all()


def test_a_method_consistently_better_than_scratch_has_a_paired_interval_above_zero_where_its_curves_overlap():
    """Subjects differ by far more than the method's gain: the two curves' intervals overlap, the paired one does
    not reach zero."""
    subjects = [f"db2/s{s}" for s in range(1, 9)]
    level = {s: 0.3 + 0.08 * i for i, s in enumerate(subjects)}
    values = {(s, "scratch", 1): level[s] for s in subjects} | {(s, "fine_tune", 1): level[s] + 0.02 for s in subjects}
    row = calibration_table(fold_rows(values), seed=0)
    row = row[(row["metric"] == "stream_accuracy") & (row["method"] == "fine_tune")].iloc[0]
    scratch = calibration_table(fold_rows(values), seed=0)
    scratch = scratch[(scratch["metric"] == "stream_accuracy") & (scratch["method"] == "scratch")].iloc[0]
    assert row["low"] < scratch["high"]  # the curves' intervals overlap
    assert row["paired_vs_scratch_low"] == pytest.approx(0.02) and row["paired_vs_scratch_high"] == pytest.approx(0.02)
