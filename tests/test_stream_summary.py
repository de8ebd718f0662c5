"""stream_summary.tsv: the stream metrics over users at k = K, and the rest promise user by user."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contrastive_prosthetics.evaluation.stream_summary import COLUMNS, METRICS, stream_summary


def rows(fold: str, subject: str, k: int, rest_false_activation: float, accuracy: float, rule="vote", vote_ms=250.0):
    leading = {"model": "m", "adabn": True, "adaptation": "cross_fitted", "adaptation_protocol": "setup"}
    metrics = {metric: 0.5 for metric in METRICS} | {"accuracy": accuracy}
    metrics["rest_false_activation"] = rest_false_activation
    where = {"fold": fold, "window": "onset", "subject": subject, "k": k, "rule": rule, "vote_ms": vote_ms}
    return leading | where | metrics


def table() -> pd.DataFrame:
    """Three users of a leave-one-subject-out family (one fold each) at k = 2 (K), their pooled rows and a k = 1 row
    that must not count: s1 and s2 keep a 10 % promise, s3 does not; the hysteresis rule's rows (no vote) apart."""
    return pd.DataFrame(
        [
            rows("loso-s1", "s1", 2, 0.05, 0.9),
            rows("loso-s2", "s2", 2, 0.10, 0.8),
            rows("loso-s3", "s3", 2, 0.30, 0.4),
            rows("loso-s3", "all", 2, 0.99, 0.0),  # pooled frames: not a user
            rows("loso-s3", "s3", 1, 0.99, 0.0),  # a smaller subset: not the headline
            rows("loso-s1", "s1", 2, 0.20, 0.7, rule="hysteresis", vote_ms=np.nan),
            rows("loso-s2", "s2", 2, 0.02, 0.9, rule="hysteresis", vote_ms=np.nan),
        ]
    )


def test_users_within_the_rest_promise_are_counted_and_the_others_named():
    families = {f"loso-s{i}": "loso" for i in (1, 2, 3)}
    summary = stream_summary(table(), families, target=0.1, seed=0)
    assert list(summary.columns) == COLUMNS
    vote = summary[summary["rule"] == "vote"].iloc[0]
    assert vote["family"] == "loso" and vote["subjects"] == 3 and vote["subjects_within_target"] == 2
    assert vote["subjects_outside_target"] == "s3"
    assert vote["accuracy"] == pytest.approx(0.7) and vote["accuracy_low"] <= 0.7 <= vote["accuracy_high"]
    assert vote["rest_false_activation"] == pytest.approx(0.15)
    rule = summary[summary["rule"] == "hysteresis"].iloc[0]
    assert rule["subjects"] == 2 and rule["subjects_within_target"] == 1 and rule["subjects_outside_target"] == "s1"


def test_without_a_rest_target_no_promise_is_counted():
    summary = stream_summary(table(), {}, target=None, seed=0)
    assert summary["subjects_within_target"].isna().all() and (summary["subjects_outside_target"] == "").all()
    assert set(summary["family"]) == {"loso-s1", "loso-s2", "loso-s3"}  # folds of no family stay their own
