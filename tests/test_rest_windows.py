"""The segment evaluation's rest false activation over every test rest window: which windows are cut from the test
rest runs, that they are scored as the segments are (networks and LDA), and that every table counts them while
the gesture metrics stay those of the segments."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from test_evaluate import all_subsets, grid_payload
from test_train import FOLD, settings_of, write_subject

from contrastive_prosthetics.core.atomic import atomic_torch_save
from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.evaluation.evaluate import evaluate_logits_file, evaluate_payload
from contrastive_prosthetics.evaluation.exact import exact_subset_accuracy
from contrastive_prosthetics.evaluation.rest_windows import rest_window_payload
from contrastive_prosthetics.evaluation.subsets import (
    draw_subsets,
    straightforward_subset_size_accuracy,
    subset_size_accuracy,
)
from contrastive_prosthetics.evaluation.zero_shot import restricted, zero_shot_tables
from contrastive_prosthetics.learning.adaptation import predict
from contrastive_prosthetics.learning.dataset import DB23, Selection
from contrastive_prosthetics.learning.folds import fold_selections
from contrastive_prosthetics.learning.lda import train_lda_fold
from contrastive_prosthetics.learning.logits import PER_REST_WINDOW, read_logits
from contrastive_prosthetics.learning.models import ModelConfig, build_model
from contrastive_prosthetics.learning.rest_windows import network_rest_windows, rest_window_starts
from contrastive_prosthetics.learning.streams import Streams

REST_COLUMNS = ["rest_false_activation", "rest_windows"]

# ------------------------------------------------------------------------------------------------------------
# Which windows


# Per subject, the stream's runs (class, repetition, frames): rest runs of every length before and after movements.
RUNS = [
    [(0, 1, 37), (1, 1, 20), (0, 1, 25), (2, 1, 15), (0, 2, 52), (1, 2, 20), (0, 2, 9), (2, 2, 20), (0, 2, 31)],
    [(0, 1, 12), (1, 1, 30), (0, 2, 64), (2, 2, 11), (0, 3, 40), (1, 3, 20), (0, 3, 100)],
]


def hand_made_streams() -> SimpleNamespace:
    subject, classes, repetition = [], [], []
    for index, runs in enumerate(RUNS):
        for label, rep, frames in runs:
            subject += [index] * frames
            classes += [label] * frames
            repetition += [rep] * frames
    lengths = torch.tensor([sum(frames for *_, frames in runs) for runs in RUNS])
    streams = Streams(
        frames=torch.zeros(len(subject), 2),
        subject=torch.tensor(subject),
        repetition=torch.tensor(repetition),
        classes=torch.tensor(classes),
        offset=torch.cumsum(lengths, 0) - lengths,
        segment_start=torch.full((2, 3, 3), -1),
    )
    return SimpleNamespace(streams=streams, classes=["rest", "B1", "B2"])


@pytest.mark.parametrize(("length", "guard"), [(10, 0), (10, 3), (20, 2), (25, 0)])
def test_every_whole_window_of_the_test_rest_runs_outside_the_guard_band_is_counted(length, guard):
    data = hand_made_streams()
    test = Selection(torch.tensor([0, 1]), torch.arange(3), torch.tensor([1, 2]))  # repetitions 2 and 3
    starts = rest_window_starts(data, test, length, guard)
    # From the run lengths alone: every rest run of repetition 2 or 3 loses the guard band at both ends (a
    # movement or the recording's edge), and holds as many whole windows as fit, the block centred.
    expected, position = [], 0
    for runs in RUNS:
        for label, rep, frames in runs:
            usable = frames - 2 * guard
            if label == 0 and rep in (2, 3) and usable >= length:
                fitting = usable // length
                first = position + guard + (usable - fitting * length) // 2
                expected += [first + j * length for j in range(fitting)]
            position += frames
    assert starts.tolist() == expected
    assert len(expected) == sum(
        max(frames - 2 * guard, 0) // length for runs in RUNS for label, rep, frames in runs if label == 0 and rep > 1
    )
    # One repetition, one subject: the others' runs are left out.
    only = rest_window_starts(data, Selection(torch.tensor([1]), torch.arange(3), torch.tensor([2])), length, guard)
    assert set(data.streams.repetition[only].tolist()) <= {3} and set(data.streams.subject[only].tolist()) <= {1}
    assert set(only.tolist()) <= set(expected)


# ------------------------------------------------------------------------------------------------------------
# What the evaluation makes of them


def one_false_window() -> tuple[dict, int]:
    """A classifier right on every segment and every rest window but one, whose frames every gesture beats rest
    in; and the number of rest windows (2 subjects x 2 repetitions x 3)."""
    payload = grid_payload(n_gestures=4, subjects=2, repetitions=2, frames=10, seed=0, boost=100.0, rest_windows=3)
    payload["rest_window_logits"][7, :, 0] = -100.0  # window 7: subject 1, repetition 1
    return payload, 2 * 2 * 3


def test_one_rest_window_decided_as_a_gesture_is_one_over_the_rest_windows_in_every_table():
    payload, n_windows = one_false_window()
    tables = evaluate_payload(payload, window_frames=10, trials=4, seed=0, include_rest=True)
    metrics = tables["metrics"].set_index(["group", "level", "metric", "class"])["value"]
    for level, per_window in (("vote", 1), ("frame", 10)):  # one vote window or 10 frames per rest window
        assert metrics["all", level, "rest_false_activation", ""] == pytest.approx(1 / n_windows)
        assert metrics["all", level, "rest_windows", ""] == n_windows * per_window
        assert metrics["subject:db2/s2", level, "rest_false_activation", ""] == pytest.approx(2 / n_windows)
        assert metrics["subject:db2/s1", level, "rest_false_activation", ""] == 0.0
        assert metrics["all", level, "subject_mean_rest_false_activation", ""] == pytest.approx(1 / n_windows)
        # The rest segments, all right, still make rest's recall and the accuracy.
        assert metrics["all", level, "recall", "rest"] == 1.0 and metrics["all", level, "accuracy", ""] == 1.0
    subsets = tables["subset_accuracy"].query("group == 'all'")
    assert subsets["rest_false_activation"].tolist() == pytest.approx([1 / n_windows] * len(subsets))
    assert (subsets["rest_windows"] == n_windows).all() and (subsets["accuracy"] == 1.0).all()
    exact = tables["subset_exact"].query("group == 'all'")
    assert exact["rest_false_activation"].tolist() == pytest.approx([1 / n_windows] * 4, rel=1e-12)
    assert (exact["rest_windows"] == n_windows * 10).all()


def test_without_rest_in_the_subsets_no_rest_window_is_counted():
    payload, _ = one_false_window()
    tables = evaluate_payload(payload, window_frames=10, trials=4, seed=0, include_rest=False)
    for name in ("subset_accuracy", "subset_exact"):
        assert tables[name]["rest_false_activation"].isna().all() and (tables[name]["rest_windows"] == 0).all()


def test_the_gesture_metrics_are_those_of_the_segments_whatever_the_rest_windows():
    with_windows = grid_payload(
        n_gestures=5, subjects=3, repetitions=2, frames=10, seed=8, integer=True, rest_windows=4
    )
    without = {key: value for key, value in with_windows.items() if not key.startswith("rest_window_")}
    options = {"window_frames": 5, "trials": 6, "seed": 0, "include_rest": True}
    new, old = evaluate_payload(with_windows, **options), evaluate_payload(without, **options)
    for name in ("voting", "confusion"):
        pd.testing.assert_frame_equal(new[name], old[name], check_exact=True)
    for name in ("subset_accuracy", "subset_exact"):
        pd.testing.assert_frame_equal(new[name].drop(columns=REST_COLUMNS), old[name].drop(columns=REST_COLUMNS))
        assert not new[name]["rest_false_activation"].equals(old[name]["rest_false_activation"])
    rest_rows = new["metrics"]["metric"].str.contains("rest_")
    pd.testing.assert_frame_equal(new["metrics"][~rest_rows], old["metrics"][~rest_rows], check_exact=True)
    # Without rest windows, the rest segments' windows are counted, and rest_windows says how many.
    counted = old["metrics"].query("group == 'all' and level == 'vote' and metric == 'rest_windows'")["value"]
    assert counted.tolist() == [3 * 2 * 2]  # subjects x repetitions x (10 frames // 5)


@pytest.mark.parametrize("window_frames", [1, 3, 5])
@pytest.mark.parametrize("include_rest", [True, False])
def test_the_rest_windows_fast_subset_scores_equal_the_straightforward_ones(window_frames, include_rest):
    payload = grid_payload(n_gestures=8, subjects=2, repetitions=2, frames=10, seed=3, integer=True, rest_windows=3)
    rest, subsets = rest_window_payload(payload), draw_subsets(8, 6, seed=1)
    fast = subset_size_accuracy(payload, window_frames, subsets, include_rest, rest_windows=rest)
    reference = straightforward_subset_size_accuracy(payload, window_frames, subsets, include_rest, rest_windows=rest)
    pd.testing.assert_frame_equal(fast, reference, check_exact=True)
    tables = evaluate_payload(payload, window_frames=window_frames, trials=6, seed=1, include_rest=include_rest)
    in_all = tables["subset_accuracy"].query("group == 'all'").iloc[:, 6:].reset_index(drop=True)
    pd.testing.assert_frame_equal(in_all, fast, check_dtype=False)


def test_the_exact_rest_false_activation_is_the_mean_over_every_subset():
    payload = grid_payload(n_gestures=5, subjects=1, repetitions=2, frames=6, seed=5, integer=True, rest_windows=2)
    rest = rest_window_payload(payload)
    exact = exact_subset_accuracy(payload, True, rest)
    every = subset_size_accuracy(payload, 1, all_subsets(5), rest_windows=rest).groupby("k")
    torch.testing.assert_close(
        torch.tensor(exact["rest_false_activation"].to_numpy()),
        torch.tensor(every["rest_false_activation"].mean().to_numpy()),
        rtol=1e-10,
        atol=1e-12,
    )
    assert (exact["rest_windows"] == 2 * 2 * 6).all() and 0 < exact["rest_false_activation"].iloc[-1] < 1


def test_the_zero_shot_subsets_count_the_rest_windows_among_each_subsets_classes():
    """zero_shot_subsets.tsv scores rest as subset_accuracy does: over the test rest windows, among the subset's
    classes. Window 5's frames put the unseen B4 above rest, window 7's the seen B1: only subsets holding B4 count
    a false activation, one of the 12 rest windows."""
    payload, n_windows = one_false_window()
    payload["rest_window_logits"][7, :, 0] = 200.0  # rest right again, over every class
    payload["rest_window_logits"][7, :, 1] = 1000.0  # B1, seen: no subset of the unseen gestures holds it
    payload["rest_window_logits"][5, :, 4] = 1000.0  # B4, unseen
    payload["unseen"] = ["B2", "B4"]
    curves = zero_shot_tables(payload, dict(payload), window_frames=10, trials=3, seed=0)["zero_shot_subsets"]
    holds_b4 = torch.cat([chosen[:, 1] for chosen in draw_subsets(2, 3, seed=0).values()]).double()
    for _, curve in curves.groupby("scored_by"):
        assert curve["rest_false_activation"].tolist() == pytest.approx((holds_b4 / n_windows).tolist())
        assert (curve["rest_windows"] == n_windows).all()
    # The main evaluation's numbers among the same classes.
    among = evaluate_payload(
        restricted(payload, ["rest", "B2", "B4"]), window_frames=10, trials=3, seed=0, include_rest=True
    )
    main = among["subset_accuracy"].query("group == 'all'")[["k", "trial", *REST_COLUMNS]].reset_index(drop=True)
    model = curves[curves["scored_by"] == "model"][["k", "trial", *REST_COLUMNS]].reset_index(drop=True)
    pd.testing.assert_frame_equal(model, main, check_dtype=False)


# ------------------------------------------------------------------------------------------------------------
# Scored as the segments are


def hand_made_subjects(tmp_path) -> list:
    """test_train's subjects: their streams are the segments back to back, so each test repetition's rest run is its
    rest segment, one window of 20 frames."""
    return [write_subject(tmp_path / f"s{s}.pt", s) for s in (1, 2, 3)]


def rest_segment_rows(index: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """[subject x repetition, frame, class] the rest segments' logits of predict's output, in stream order."""
    rest = index[:, 1] == 0
    return logits[rest].view(-1, 20, logits.shape[1])


@pytest.mark.parametrize(
    ("adabn", "adaptation", "context"), [(False, "none", 1), (True, "cross_fitted", 1), (True, "scored_frames", 3)]
)
def test_a_networks_rest_windows_are_scored_as_its_segments(tmp_path, adabn, adaptation, context):
    data = DB23.load(hand_made_subjects(tmp_path), device="cpu", with_streams=True)
    selections = fold_selections(data, FOLD, "f")
    data = data.normalised(data.normalisation(selections.train))
    torch.manual_seed(0)
    config = ModelConfig("contrastive", 6, 13, embedding_dim=8, conv_maps=4, width=16, depth=1, context=context)
    model = build_model(config)
    settings = {"adabn": adabn, "adaptation": adaptation, "batch": 4096, "context": context, "limit": None}
    logits, index = predict(model, data, selections.test, pool=selections.test_pool, **settings)
    windows = network_rest_windows(
        model, data, selections.test, selections.test_pool, codes=None, guard_frames=0, **settings
    )
    assert windows.subject.tolist() == [0, 0, 1, 1, 2, 2] and windows.repetition.tolist() == [2, 5] * 3
    segment_start = data.streams.segment_start[:, 0] - data.streams.offset[:, None]  # rest's, per subject
    assert windows.start.tolist() == segment_start[:, [1, 4]].reshape(-1).tolist()
    torch.testing.assert_close(windows.logits, rest_segment_rows(index, logits), rtol=1e-5, atol=1e-5)


def test_lda_writes_its_rest_windows_and_the_evaluation_counts_them(tmp_path):
    paths, out = hand_made_subjects(tmp_path), tmp_path / "out"
    train_lda_fold(paths, "lda", "reps-2-5", FOLD, 0, out, settings_of())
    payload = read_logits(out / "logits.pt")
    assert payload["rest_window_logits"].shape == (3 * 2, 20, 13)  # subjects x test repetitions
    assert payload["rest_window_repetition"].tolist() == [2, 5] * 3
    segments = payload["logits"].view(3, 13, 2, 20, 13)[:, 0].reshape(6, 20, 13)
    # The stream's features are kept in bfloat16, the segments' in float32: the same decisions, nearly the same scores.
    assert torch.equal(payload["rest_window_logits"].argmax(-1), segments.argmax(-1))
    torch.testing.assert_close(payload["rest_window_logits"], segments, rtol=0.05, atol=0.5)
    options = {"vote_window_ms": 100, "trials": 2, "seed": 0, "include_rest": True}
    tables = evaluate_logits_file(out / "logits.pt", tmp_path / "eval", **options)
    vote = tables["metrics"].query("group == 'all' and level == 'vote' and metric == 'rest_windows'")
    assert vote["value"].tolist() == [6 * 2]  # two 100 ms vote windows per 200 ms rest window


def test_a_logits_file_without_rest_windows_is_refused(tmp_path):
    payload = grid_payload(3, 1, 1, 10, seed=0, rest_windows=1)
    for field in PER_REST_WINDOW:  # as an older version wrote it: by hand, as the writer always writes every field
        atomic_torch_save({key: value for key, value in payload.items() if key != field}, tmp_path / "old.pt")
        with pytest.raises(InputError, match=field):
            read_logits(tmp_path / "old.pt")
