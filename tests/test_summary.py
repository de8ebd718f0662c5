"""The run's summaries: subject means with bootstrap intervals, families of folds, the printed table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_evaluate import grid_payload

from contrastive_prosthetics.evaluation.evaluate import evaluate_payload
from contrastive_prosthetics.evaluation.summary import run_summary, subset_summary, summary_text
from contrastive_prosthetics.evaluation.tables import aggregate

OPTIONS = {"window_frames": 5, "trials": 6, "seed": 0, "include_rest": True}


def loso_tables() -> dict[str, pd.DataFrame]:
    """Three leave-one-subject-out folds (one test subject each) of one model, aggregated; two rest windows per
    test repetition."""
    tables = []
    for subject in range(3):
        payload = grid_payload(
            n_gestures=5, subjects=3, repetitions=2, frames=10, seed=subject, model="m", rest_windows=2
        )
        keep, rest_kept = payload["subject"] == subject, payload["rest_window_subject"] == subject
        one = {
            k: v[keep] if k in ("logits", "label", "subject", "repetition", "frame") else v for k, v in payload.items()
        }
        one |= {k: v[rest_kept] for k, v in payload.items() if k.startswith("rest_window_")}
        one["fold"] = f"loso-db2-s{subject + 1}"
        tables.append(evaluate_payload(one, **OPTIONS))
    return aggregate(tables)


FAMILIES = {f"loso-db2-s{s}": "loso" for s in (1, 2, 3)}


def test_leave_one_subject_out_folds_are_summarised_together_over_subjects():
    tables = loso_tables()
    summary = run_summary(tables["metrics"], FAMILIES, seed=0)
    assert set(summary["family"]) == {"loso"}
    voted = summary[(summary["level"] == "vote") & (summary["metric"] == "accuracy")].iloc[0]
    per_subject = tables["metrics"].query(
        "level == 'vote' and metric == 'accuracy' and group.str.startswith('subject:')"
    )
    assert voted["subjects"] == 3 and voted["folds"] == 3
    assert voted["subject_mean"] == pytest.approx(per_subject["value"].mean())
    assert (
        per_subject["value"].min() <= voted["subject_ci_low"] <= voted["subject_ci_high"] <= per_subject["value"].max()
    )
    # Without the families each fold is its own, with one subject: no spread to speak of.
    alone = run_summary(tables["metrics"], {}, seed=0)
    assert alone["family"].nunique() == 3 and (alone["subjects"] == 1).all()


def test_summary_counts_the_rest_windows_behind_the_rest_false_activation():
    """Per fold, 2 repetitions x 2 rest windows of 10 frames, 2 vote windows of 5 frames each: 8 vote windows and
    40 frames; the family's three folds count three times as many. Only the rest false activation has a count."""
    summary = run_summary(loso_tables()["metrics"], FAMILIES, seed=0).set_index(["level", "metric"])
    assert summary.loc[("vote", "rest_false_activation"), "rest_windows"] == 3 * 8
    assert summary.loc[("frame", "rest_false_activation"), "rest_windows"] == 3 * 40
    assert summary.drop(index="rest_false_activation", level="metric")["rest_windows"].isna().all()
    subsets = subset_summary(loso_tables()["subset_accuracy"], FAMILIES, seed=0)
    rest = subsets[subsets["metric"] == "rest_false_activation"]
    assert len(rest) == 5 and (rest["rest_windows"] == 3 * 8).all()  # k = 1..5, rest in every subset
    assert subsets[subsets["metric"] != "rest_false_activation"]["rest_windows"].isna().all()


def test_folds_that_test_the_same_subjects_count_their_rest_windows_once():
    """A zero-shot family's folds are copies of one base fold: the same subjects on the same rest windows. Its
    summary rows count each subject's windows once, as the single fold does: 3 subjects x 2 repetitions x 2 rest
    windows of 10 frames, 2 vote windows each, are 24 vote windows and 120 frames, not three times as many."""
    payload = grid_payload(n_gestures=5, subjects=3, repetitions=2, frames=10, seed=0, model="m", rest_windows=2)
    folds = [f"zero-shot-B{g}" for g in (1, 2, 3)]
    tables = aggregate([evaluate_payload(payload | {"fold": fold, "unseen": [fold[-2:]]}, **OPTIONS) for fold in folds])
    families = dict.fromkeys(folds, "zero-shot")
    summary = run_summary(tables["metrics"], families, seed=0).set_index(["level", "metric"])
    alone = run_summary(evaluate_payload(payload, **OPTIONS)["metrics"], {}, seed=0).set_index(["level", "metric"])
    for level, counted in (("vote", 24), ("frame", 120)):
        row = (level, "rest_false_activation")
        assert summary.loc[row, "rest_windows"] == alone.loc[row, "rest_windows"] == counted
    assert summary.loc[("vote", "accuracy"), "folds"] == 3 and summary.loc[("vote", "accuracy"), "subjects"] == 3
    subsets = subset_summary(tables["subset_accuracy"], families, seed=0)
    rest = subsets[subsets["metric"] == "rest_false_activation"]
    assert len(rest) == 5 and (rest["rest_windows"] == 24).all()


def test_subset_summary_gives_both_bands_for_every_k_and_metric():
    tables = loso_tables()
    summary = subset_summary(tables["subset_accuracy"], FAMILIES, seed=0)
    assert sorted(summary["k"].unique()) == [1, 2, 3, 4, 5]
    assert set(summary["metric"]) == {"accuracy", "balanced_accuracy", "gesture_accuracy", "rest_false_activation"}
    row = summary[(summary["k"] == 2) & (summary["metric"] == "accuracy")].iloc[0]
    subjects = tables["subset_accuracy"].query("k == 2 and group.str.startswith('subject:')")
    assert row["subject_mean"] == pytest.approx(subjects.groupby("group")["accuracy"].mean().mean())
    drawn = tables["subset_accuracy"].query("k == 2 and group == 'all'")["accuracy"]
    assert row["subsets"] == len(drawn) == 18  # 6 subsets × 3 folds
    half = 1.96 * drawn.std() / np.sqrt(len(drawn))
    assert row["subset_ci_high"] - row["subset_mean"] == pytest.approx(half)
    assert row["subject_ci_low"] <= row["subject_mean"] <= row["subject_ci_high"]


def test_summary_text_lists_each_model_with_its_numbers_and_where_to_look(tmp_path):
    tables = loso_tables()
    summary = run_summary(tables["metrics"], FAMILIES, seed=0)
    path = tmp_path / "summary.tsv"
    summary.to_csv(path, sep="\t", index=False)
    text = summary_text(path, tmp_path / "figures", "make report")
    voted = summary[(summary["level"] == "vote") & (summary["metric"] == "gesture_accuracy")].iloc[0]
    assert "m " in text and "loso" in text and "rest false activation" in text and "rest windows" in text
    assert f"{100 * voted['subject_mean']:.1f}" in text
    assert text.splitlines()[3].endswith(" 24")  # the rest windows behind the rest false activation
    assert "Figures:" in text and "make report" in text
