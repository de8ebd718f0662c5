"""Evaluation from test logits: windows and votes, subset-size accuracy (fast = straightforward = brute force),
the exact expectation over all subsets, seeded subsets, classification metrics and the per-payload tables."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import contrastive_prosthetics.evaluation.subsets as subset_module
from contrastive_prosthetics.evaluation import evaluate
from contrastive_prosthetics.evaluation.evaluate import classification_metrics, evaluate_payload, groups, voting_curve
from contrastive_prosthetics.evaluation.exact import exact_subset_accuracy
from contrastive_prosthetics.evaluation.subsets import (
    draw_subsets,
    straightforward_subset_size_accuracy,
    subset_size_accuracy,
)
from contrastive_prosthetics.evaluation.tables import aggregate, read_table
from contrastive_prosthetics.evaluation.voting import majority_vote, window_ids
from contrastive_prosthetics.learning.logits import PER_FRAME, PER_REST_WINDOW, RestWindows, read_logits, write_logits


def make_payload(
    logits: torch.Tensor,
    label: torch.Tensor,
    subject: torch.Tensor,
    repetition: torch.Tensor,
    frame: torch.Tensor,
    n_gestures: int,
    amputee: list[bool] | None = None,
    model: str = "contrastive",
) -> dict:
    n_subjects = int(subject.max()) + 1
    return {
        "logits": logits.float(),
        "label": label,
        "subject": subject,
        "repetition": repetition,
        "frame": frame,
        "subjects": [f"db2/s{s + 1}" for s in range(n_subjects)],
        "amputee": amputee if amputee is not None else [False] * n_subjects,
        "classes": ["rest"] + [f"B{g + 1}" for g in range(n_gestures)],
        "adabn": False,
        "model": model,
        "fold": "repetitions",
        "frame_rate_hz": 100.0,
        "adaptation": "none",
        "window": "onset",
    }


def grid_payload(
    n_gestures: int,
    subjects: int,
    repetitions: int,
    frames: int,
    seed: int,
    integer: bool = False,
    boost: float = 1.0,
    amputee: list[bool] | None = None,
    model: str = "contrastive",
    rest_windows: int = 0,
) -> dict:
    """Every (subject, class, repetition) segment of ``frames`` frames, rows sorted as in logits.pt; random
    logits with the true class boosted. ``integer`` logits (0..3) make ties in argmax and in votes common. With
    ``rest_windows``, that many rest windows of ``frames`` frames per (subject, repetition), logits drawn alike."""
    n_classes = n_gestures + 1
    s, c, r, f = torch.meshgrid(
        torch.arange(subjects), torch.arange(n_classes), torch.arange(repetitions), torch.arange(frames), indexing="ij"
    )
    label = c.reshape(-1)
    generator = torch.Generator().manual_seed(seed)
    if integer:
        logits = torch.randint(0, 4, (len(label), n_classes), generator=generator).float()
    else:
        logits = torch.randn(len(label), n_classes, generator=generator)
    logits[torch.arange(len(label)), label] += boost
    payload = make_payload(logits, label, s.reshape(-1), r.reshape(-1) + 1, f.reshape(-1), n_gestures, amputee, model)
    if rest_windows:
        shape = (subjects * repetitions * rest_windows, frames, n_classes)
        if integer:
            scores = torch.randint(0, 4, shape, generator=generator).float()
        else:
            scores = torch.randn(shape, generator=generator)
        scores[..., 0] += boost
        cell = torch.arange(subjects * repetitions).repeat_interleave(rest_windows)
        payload |= {
            "rest_window_logits": scores,
            "rest_window_subject": cell // repetitions,
            "rest_window_repetition": cell % repetitions + 1,
            "rest_window_start": torch.arange(len(cell)) * frames,
        }
    return payload


def write_payload(path, payload: dict) -> None:
    """A payload of :func:`grid_payload` (with rest windows) written through logits.pt's writer: its frames' (subject,
    class, repetition, frame) and what the writer reads from the training data."""
    index = torch.stack((payload["subject"], payload["label"], payload["repetition"] - 1, payload["frame"]), 1)
    data = SimpleNamespace(
        subject_names=payload["subjects"],
        subjects=[SimpleNamespace(amputee=amputee) for amputee in payload["amputee"]],
        classes=payload["classes"],
        frame_rate_hz=payload["frame_rate_hz"],
        window=payload["window"],
    )
    rest_windows = RestWindows(*(payload[key] for key in PER_REST_WINDOW))
    options = {key: payload[key] for key in ("adabn", "adaptation")}
    write_logits(
        path, payload["logits"], index, data, payload["model"], payload["fold"], **options, rest_windows=rest_windows
    )


def all_subsets(n_gestures: int) -> dict[int, torch.Tensor]:
    """Every subset of every size, in draw_subsets' format: trial i of size k is the i-th combination."""
    subsets = {}
    for k in range(1, n_gestures + 1):
        combinations = list(itertools.combinations(range(n_gestures), k))
        chosen = torch.zeros(len(combinations), n_gestures, dtype=torch.bool)
        for row, combination in enumerate(combinations):
            chosen[row, list(combination)] = True
        subsets[k] = chosen
    return subsets


# ------------------------------------------------------------------------------------------------------------
# Brute force, in plain Python: the definitions written out frame by frame and window by window.


def brute_force_windows(payload: dict, window_frames: int) -> list[list[int]]:
    """Row indices of each complete window, segment by segment."""
    segments: dict[tuple, list[tuple[int, int]]] = {}
    for row in range(len(payload["label"])):
        key = (int(payload["subject"][row]), int(payload["label"][row]), int(payload["repetition"][row]))
        segments.setdefault(key, []).append((int(payload["frame"][row]), row))
    windows = []
    for key in sorted(segments):
        rows = [row for _, row in sorted(segments[key])]
        whole = len(rows) // window_frames
        windows += [rows[w * window_frames : (w + 1) * window_frames] for w in range(whole)]
    return windows


def brute_force_predict(scores: list[float], allowed: list[int]) -> int:
    """Argmax over the allowed classes; equal scores go to the lower index."""
    return max(sorted(allowed), key=lambda c: (scores[c], -c))


def brute_force_vote(predictions: list[int], rows: list[int], logits: list[list[float]]) -> int:
    counts = Counter(predictions)
    most = max(counts.values())
    tied = [c for c, n in counts.items() if n == most]
    return max(tied, key=lambda c: (sum(logits[row][c] for row in rows), -c))


def brute_force_subset(payload: dict, window_frames: int, allowed: list[int]) -> tuple[float, float, int]:
    accuracy, balanced, n, _, _ = brute_force_subset_all(payload, window_frames, allowed)
    return accuracy, balanced, n


def brute_force_subset_all(payload: dict, window_frames: int, allowed: list[int]) -> tuple:
    """(accuracy, balanced accuracy, n, gesture-only accuracy, rest false-activation rate) of one subset."""
    logits, label = payload["logits"].tolist(), payload["label"].tolist()
    right, tested, rest_as_gesture = Counter(), Counter(), 0
    for rows in brute_force_windows(payload, window_frames):
        truth = label[rows[0]]
        if truth not in allowed:
            continue
        vote = brute_force_vote([brute_force_predict(logits[row], allowed) for row in rows], rows, logits)
        tested[truth] += 1
        right[truth] += vote == truth
        rest_as_gesture += truth == 0 and vote != 0
    n = sum(tested.values())
    accuracy = sum(right.values()) / n if n else math.nan
    recalls = [right[c] / tested[c] for c in allowed if tested[c]]
    gestures = sum(tested[c] for c in tested if c != 0)
    gesture_accuracy = sum(right[c] for c in right if c != 0) / gestures if gestures else math.nan
    false_activation = rest_as_gesture / tested[0] if tested[0] else math.nan
    return accuracy, (sum(recalls) / len(recalls) if recalls else math.nan), n, gesture_accuracy, false_activation


def allowed_classes(payload: dict, gestures: torch.Tensor, include_rest: bool) -> list[int]:
    return ([0] if include_rest else []) + [g + 1 for g in gestures.nonzero().squeeze(1).tolist()]


# ------------------------------------------------------------------------------------------------------------
# Windows and votes


def test_window_ids_drop_the_incomplete_trailing_window_of_each_segment():
    # Two segments of 7 and 5 frames; 3-frame windows: 2 + 1 whole windows.
    label = torch.tensor([1] * 7 + [2] * 5)
    frame = torch.tensor(list(range(7)) + list(range(5)))
    payload = make_payload(
        torch.zeros(12, 3), label, torch.zeros(12, dtype=torch.long), torch.ones(12).long(), frame, 2
    )
    ids, n_windows = window_ids(payload, 3)
    assert n_windows == 3
    assert ids.tolist() == [0, 0, 0, 1, 1, 1, -1, 2, 2, 2, -1, -1]
    # The rows' order does not matter: each frame keeps its window.
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    shuffled = {key: value[order] if key in PER_FRAME else value for key, value in payload.items()}
    assert window_ids(shuffled, 3)[0].tolist() == ids[order].tolist()


def test_majority_vote_takes_each_windows_most_frequent_prediction():
    predictions = torch.tensor([2, 2, 1, 0, 1, 1, 3, 3, 3])
    ids = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, -1])  # the last frame belongs to no window
    scores = torch.zeros(9, 4)
    scores[:, 0] = 100.0  # sums only break ties; here there are none
    assert majority_vote(predictions, scores, ids, 3).tolist() == [2, 1, 3]


def test_majority_vote_breaks_ties_by_summed_score_among_the_tied_classes_only():
    # Window 0: classes 1 and 2 have two votes each; class 3, with one vote, has by far the largest sum but is
    # not tied; class 2 has the larger sum of the tied two.
    predictions = torch.tensor([1, 1, 2, 2, 3])
    scores = torch.tensor(
        [[0, 0.5, 0.4, 9], [0, 0.5, 0.4, 9], [0, 0.2, 0.4, 9], [0, 0.2, 0.7, 9], [0, 0.1, 0.1, 9]]
    )  # summed over the window's five frames: class 1: 1.5, class 2: 2.0, class 3: 45
    ids = torch.zeros(5, dtype=torch.long)
    assert majority_vote(predictions, scores, ids, 1).tolist() == [2]
    # Equal counts and equal sums: the lower class index wins (as torch.argmax would).
    assert majority_vote(torch.tensor([2, 1]), torch.ones(2, 4), torch.zeros(2, dtype=torch.long), 1).tolist() == [1]
    # A class outside ``allowed`` never wins, even as the most frequent prediction.
    allowed = torch.tensor([True, True, False, True])
    assert majority_vote(predictions, scores, ids, 1, allowed).tolist() == [1]


def test_voting_scores_only_whole_windows():
    # One segment of 5 frames, 2-frame windows: frame 4 (wrong) is in no window.
    logits = torch.tensor([[0, 1.0], [0, 1], [0, 1], [0, 1], [1, 0]])
    payload = make_payload(
        logits, torch.ones(5).long(), torch.zeros(5).long(), torch.ones(5).long(), torch.arange(5), 1
    )
    curve = voting_curve(payload, 3)
    assert curve["n"].tolist() == [5, 2, 1]
    assert curve["accuracy"].tolist() == [0.8, 1.0, 1.0]
    assert curve["window_ms"].tolist() == [10, 20, 30]


# ------------------------------------------------------------------------------------------------------------
# Subset-size accuracy


@pytest.mark.parametrize("window_frames", [1, 3])
@pytest.mark.parametrize("include_rest", [True, False])
def test_subset_accuracy_equals_brute_force_over_all_subsets(window_frames, include_rest):
    payload = grid_payload(n_gestures=5, subjects=2, repetitions=2, frames=7, seed=3, integer=True)
    subsets = all_subsets(5)
    table = subset_size_accuracy(payload, window_frames, subsets, include_rest)
    assert len(table) == 2**5 - 1
    for row in table.itertuples():
        allowed = allowed_classes(payload, subsets[row.k][row.trial], include_rest)
        accuracy, balanced, n, gesture_accuracy, false_activation = brute_force_subset_all(
            payload, window_frames, allowed
        )
        assert row.n == n
        assert row.accuracy == pytest.approx(accuracy, rel=1e-12)
        assert row.balanced_accuracy == pytest.approx(balanced, rel=1e-12)
        assert row.gesture_accuracy == pytest.approx(gesture_accuracy, rel=1e-12)
        assert row.rest_false_activation == pytest.approx(false_activation, rel=1e-12, nan_ok=True)
        assert math.isnan(row.rest_false_activation) == (not include_rest)


@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("window_frames", [1, 2, 4, 5])
def test_fast_subset_accuracy_equals_the_straightforward_one(monkeypatch, integer, window_frames):
    # 12 gestures, fewer rivals than classes: every path runs (certain windows, rival rounds, full votes).
    payload = grid_payload(n_gestures=12, subjects=3, repetitions=2, frames=21, seed=window_frames, integer=integer)
    subsets = draw_subsets(12, 6, seed=1)
    full_votes = Counter()  # pairs voted in full, per number of rivals
    real_full_votes = subset_module._full_votes_right

    def counting_full_votes(table, membership, trial, window):
        full_votes[subset_module.MAX_RIVALS] += len(trial)
        return real_full_votes(table, membership, trial, window)

    monkeypatch.setattr(subset_module, "_full_votes_right", counting_full_votes)
    for rivals in (0, 2, subset_module.MAX_RIVALS):
        monkeypatch.setattr(subset_module, "MAX_RIVALS", rivals)
        for include_rest in (True, False):
            fast = subset_size_accuracy(payload, window_frames, subsets, include_rest)
            reference = straightforward_subset_size_accuracy(payload, window_frames, subsets, include_rest)
            pd.testing.assert_frame_equal(fast, reference, check_exact=True)
    if window_frames > 1:  # every path ran: full votes, and rivals settling most contested windows before them
        assert full_votes[0] > full_votes[2] > 0


def test_the_random_test_data_has_votes_decided_by_the_summed_score():
    # Sanity check of the data above: tied votes occur, and the summed score, not the class index, decides some.
    payload = grid_payload(n_gestures=12, subjects=3, repetitions=2, frames=21, seed=2, integer=True)
    ids, n_windows = window_ids(payload, 2)
    scored = ids >= 0
    predictions = payload["logits"].argmax(1)
    counts = torch.bincount(ids[scored] * 13 + predictions[scored], minlength=n_windows * 13).view(n_windows, 13)
    tied = (counts == 1).sum(1) == 2
    lower_index = counts.argmax(1)  # among equal counts, the first: what an index-only tie-break would pick
    votes = majority_vote(predictions, payload["logits"], ids, n_windows)
    assert tied.any() and (votes[tied] != lower_index[tied]).any() and (votes[tied] == lower_index[tied]).any()


# ------------------------------------------------------------------------------------------------------------
# Exact expectation


def brute_force_expectation(payload: dict, include_rest: bool) -> pd.DataFrame:
    """Per frame, over all subsets: mean accuracy, ratio of summed right / summed scored, mean balanced accuracy."""
    n_gestures = len(payload["classes"]) - 1
    rows = []
    for k, chosen in all_subsets(n_gestures).items():
        accuracies, balanced, right_total, scored_total, false_activations = [], [], 0, 0, []
        for gestures in chosen:
            accuracy, balanced_accuracy, n, _, false_activation = brute_force_subset_all(
                payload, 1, allowed_classes(payload, gestures, include_rest)
            )
            if n:
                accuracies.append(accuracy)
                right_total += accuracy * n
                scored_total += n
            if not math.isnan(balanced_accuracy):
                balanced.append(balanced_accuracy)
            false_activations.append(false_activation)
        rows.append(
            {
                "k": k,
                "mean_accuracy": sum(accuracies) / len(accuracies),
                "ratio_accuracy": right_total / scored_total,
                "balanced_accuracy": sum(balanced) / len(balanced),
                "rest_false_activation": sum(false_activations) / len(false_activations),
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("include_rest", [True, False])
def test_exact_expectation_equals_brute_force_with_equal_class_counts(include_rest):
    payload = grid_payload(n_gestures=7, subjects=1, repetitions=1, frames=6, seed=5, integer=True)
    exact = exact_subset_accuracy(payload, include_rest)
    brute = brute_force_expectation(payload, include_rest)
    assert exact["k"].tolist() == list(range(1, 8))
    torch.testing.assert_close(
        torch.tensor(exact["accuracy"]), torch.tensor(brute["mean_accuracy"]), rtol=1e-10, atol=0
    )
    torch.testing.assert_close(
        torch.tensor(exact["balanced_accuracy"]), torch.tensor(brute["balanced_accuracy"]), rtol=1e-10, atol=0
    )
    torch.testing.assert_close(
        torch.tensor(exact["rest_false_activation"]),
        torch.tensor(brute["rest_false_activation"]),
        rtol=1e-10,
        atol=1e-12,
        equal_nan=True,
    )
    # With equal class counts, every subset scores the same share of gesture frames: the expected gesture-only
    # accuracy is the mean of the Monte-Carlo values over all subsets.
    every = subset_size_accuracy(payload, 1, all_subsets(7), include_rest).groupby("k")["gesture_accuracy"].mean()
    torch.testing.assert_close(torch.tensor(exact["gesture_accuracy"]), torch.tensor(every.values), rtol=1e-10, atol=0)


@pytest.mark.parametrize("include_rest", [True, False])
def test_exact_balanced_accuracy_is_exact_with_unequal_and_missing_classes(include_rest):
    payload = grid_payload(n_gestures=6, subjects=1, repetitions=1, frames=8, seed=7, integer=True)
    # Unequal counts: drop a few frames of some classes, and every frame of gesture 4 (untested, still predicted).
    keep = torch.ones(len(payload["label"]), dtype=torch.bool)
    keep[(payload["label"] == 4)] = False
    keep[(payload["label"] == 2) & (payload["frame"] < 5)] = False
    keep[(payload["label"] == 0) & (payload["frame"] < 2)] = False
    payload = evaluate._select(payload, keep)
    exact = exact_subset_accuracy(payload, include_rest)
    brute = brute_force_expectation(payload, include_rest)
    torch.testing.assert_close(
        torch.tensor(exact["balanced_accuracy"]), torch.tensor(brute["balanced_accuracy"]), rtol=1e-10, atol=0
    )
    # Accuracy is the documented ratio of expectations, which then differs from the mean of ratios.
    torch.testing.assert_close(
        torch.tensor(exact["accuracy"]), torch.tensor(brute["ratio_accuracy"]), rtol=1e-10, atol=0
    )
    assert not torch.allclose(torch.tensor(exact["accuracy"]), torch.tensor(brute["mean_accuracy"]), rtol=1e-6)


def test_monte_carlo_mean_lies_within_its_standard_error_of_the_exact_value():
    payload = grid_payload(n_gestures=40, subjects=2, repetitions=1, frames=10, seed=11, boost=2.0)
    monte_carlo = subset_size_accuracy(payload, 1, draw_subsets(40, 144, seed=0))
    exact = exact_subset_accuracy(payload).set_index("k")
    summary = monte_carlo.groupby("k")[["accuracy", "balanced_accuracy"]].agg(["mean", "std", "count"])
    for metric in ("accuracy", "balanced_accuracy"):
        standard_error = summary[(metric, "std")] / summary[(metric, "count")] ** 0.5
        distance = (summary[(metric, "mean")] - exact[metric]).abs()
        assert (distance <= 4 * standard_error + 1e-12).all(), metric
    assert 0.3 < exact.loc[20, "accuracy"] < 0.95  # neither trivial nor hopeless


# ------------------------------------------------------------------------------------------------------------
# Subsets are seeded and shared


def test_draw_subsets_is_reproducible_and_uniform_in_size():
    first, again, other = draw_subsets(10, 50, seed=0), draw_subsets(10, 50, seed=0), draw_subsets(10, 50, seed=1)
    assert list(first) == list(range(1, 11))
    for k in range(1, 11):
        assert first[k].shape == (50, 10)
        assert (first[k].sum(1) == k).all()
        assert torch.equal(first[k], again[k])
    assert any(not torch.equal(first[k], other[k]) for k in range(1, 10))
    # Each k has its own generator: asking for more trials keeps the first ones.
    assert torch.equal(draw_subsets(10, 80, seed=0)[3][:50], first[3])
    # Every gesture gets drawn: no gesture is systematically left out.
    assert (torch.cat([first[k] for k in range(1, 10)]).sum(0) > 0).all()


def test_two_models_evaluated_with_one_seed_see_identical_subsets(monkeypatch):
    drawn = []
    real_draw = evaluate.draw_subsets

    def recording_draw(*args):
        drawn.append(real_draw(*args))
        return drawn[-1]

    monkeypatch.setattr(evaluate, "draw_subsets", recording_draw)
    for model, seed in (("contrastive", 1), ("classifier", 2)):
        payload = grid_payload(n_gestures=6, subjects=2, repetitions=1, frames=10, seed=seed, model=model)
        evaluate_payload(payload, window_frames=5, trials=7, seed=3, include_rest=True)
    assert len(drawn) == 2
    assert all(torch.equal(drawn[0][k], drawn[1][k]) for k in range(1, 7))
    assert all(torch.equal(drawn[0][k], draw_subsets(6, 7, 3)[k]) for k in range(1, 7))


# ------------------------------------------------------------------------------------------------------------
# Classification metrics, groups and the per-payload tables


def test_classification_metrics_on_a_hand_made_example():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    predictions = torch.tensor([0, 0, 0, 1, 1, 0, 2, 0])
    metrics = classification_metrics(predictions, labels, n_classes=4)  # class 3 never occurs
    assert metrics["confusion"].tolist() == [[3, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    assert metrics["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    recall = metrics["recall"]
    assert recall[:3].tolist() == pytest.approx([0.75, 0.5, 0.5]) and math.isnan(recall[3])
    # Precision 3/5, 1/2, 1/1; F1 = 2PR / (P + R) per class present in the labels.
    f1 = [2 * 0.6 * 0.75 / 1.35, 0.5, 2 * 1 * 0.5 / 1.5]
    assert metrics["macro_f1"] == pytest.approx(sum(f1) / 3)
    # Class 0 is rest: 2 of 4 gesture windows right, 1 of 4 rest windows decided as a gesture.
    with_rest = evaluate._metrics_from_confusion(metrics["confusion"], rest=0)
    assert with_rest["gesture_accuracy"] == pytest.approx(2 / 4)
    assert with_rest["rest_false_activation"] == pytest.approx(1 / 4)


def test_metrics_table_gives_subject_means_with_bootstrap_intervals():
    payload = grid_payload(n_gestures=6, subjects=5, repetitions=2, frames=10, seed=4)
    tables = evaluate_payload(payload, window_frames=5, trials=2, seed=0, include_rest=True)
    metrics = tables["metrics"].query("group == 'all' and level == 'vote'").set_index("metric")["value"]
    per_subject = tables["metrics"].query("group.str.startswith('subject:') and level == 'vote'")
    accuracies = per_subject[per_subject["metric"] == "accuracy"]["value"]
    assert metrics["subject_mean_accuracy"] == pytest.approx(accuracies.mean())
    assert metrics["subject_ci_low_accuracy"] <= metrics["subject_mean_accuracy"] <= metrics["subject_ci_high_accuracy"]
    assert (
        metrics["subject_ci_low_accuracy"] >= accuracies.min()
        and metrics["subject_ci_high_accuracy"] <= accuracies.max()
    )
    false_activation = per_subject[per_subject["metric"] == "rest_false_activation"]["value"]
    assert metrics["subject_mean_rest_false_activation"] == pytest.approx(false_activation.mean())
    again = evaluate_payload(payload, window_frames=5, trials=2, seed=0, include_rest=True)["metrics"]
    pd.testing.assert_frame_equal(tables["metrics"], again)  # seeded: the same intervals


def test_groups_are_all_intact_amputee_and_each_subject_with_frames():
    payload = grid_payload(n_gestures=3, subjects=3, repetitions=1, frames=4, seed=0, amputee=[False, True, False])
    masks = groups(payload)
    assert list(masks) == ["all", "intact", "amputee", "subject:db2/s1", "subject:db2/s2", "subject:db2/s3"]
    assert torch.equal(masks["amputee"], payload["subject"] == 1)
    assert torch.equal(masks["intact"], payload["subject"] != 1)
    # A leave-one-subject-out payload lists every subject but has test frames of one: only its groups appear.
    only_second = evaluate._select(payload, payload["subject"] == 1)
    assert list(groups(only_second)) == ["all", "amputee", "subject:db2/s2"]


def test_evaluate_payload_tables():
    payload = grid_payload(n_gestures=6, subjects=3, repetitions=2, frames=10, seed=4, amputee=[False, False, True])
    tables = evaluate_payload(payload, window_frames=5, trials=4, seed=0, include_rest=True)
    leading = ["model", "adabn", "adaptation", "fold", "window", "group"]
    per_subset = ["accuracy", "balanced_accuracy", "gesture_accuracy", "rest_false_activation"]
    assert list(tables["subset_accuracy"].columns) == [*leading, "k", "trial", *per_subset, "n", "rest_windows"]
    assert list(tables["subset_exact"].columns) == [*leading, "k", *per_subset, "rest_windows"]
    assert list(tables["voting"].columns) == [
        *leading,
        "window_frames",
        "window_ms",
        "accuracy",
        "balanced_accuracy",
        "n",
    ]
    assert list(tables["metrics"].columns) == [*leading, "level", "metric", "class", "value"]
    assert list(tables["confusion"].columns) == [*leading, "level", "true", "predicted", "count"]
    expected_groups = ["all", "intact", "amputee", "subject:db2/s1", "subject:db2/s2", "subject:db2/s3"]
    for table in tables.values():
        assert list(table["group"].unique()) == expected_groups

    # The whole-payload group equals the stand-alone functions.
    subset = tables["subset_accuracy"].query("group == 'all'").drop(columns=leading).reset_index(drop=True)
    pd.testing.assert_frame_equal(subset, subset_size_accuracy(payload, 5, draw_subsets(6, 4, 0)), check_dtype=False)
    voting = tables["voting"].query("group == 'all'").drop(columns=leading).reset_index(drop=True)
    pd.testing.assert_frame_equal(voting, voting_curve(payload, 5), check_dtype=False)
    # A subject group equals that subject alone.
    alone = evaluate._select(payload, payload["subject"] == 2)
    subject = tables["subset_exact"].query("group == 'subject:db2/s3'").drop(columns=leading).reset_index(drop=True)
    pd.testing.assert_frame_equal(subject, exact_subset_accuracy(alone))

    metrics = tables["metrics"].set_index(["group", "level", "metric", "class"])["value"]
    frame = classification_metrics(payload["logits"].argmax(1), payload["label"], 7)
    assert metrics["all", "frame", "accuracy", ""] == pytest.approx(frame["accuracy"])
    assert metrics["all", "frame", "recall", "B2"] == pytest.approx(float(frame["recall"][2]))
    assert metrics["all", "vote", "accuracy", ""] == pytest.approx(voting["accuracy"].iloc[-1])
    per_subject = [metrics[f"subject:db2/s{s}", "frame", "accuracy", ""] for s in (1, 2, 3)]
    assert metrics["all", "frame", "subject_mean_accuracy", ""] == pytest.approx(sum(per_subject) / 3)
    assert metrics["all", "frame", "subject_std_accuracy", ""] == pytest.approx(float(torch.tensor(per_subject).std()))
    assert math.isnan(metrics["amputee", "frame", "subject_std_accuracy", ""])  # one subject: undefined
    assert ("subject:db2/s1", "frame", "subject_mean_accuracy", "") not in metrics.index

    confusion = tables["confusion"].query("group == 'all' and level == 'frame'")
    assert confusion["count"].sum() == len(payload["label"])
    assert (confusion["count"] > 0).all()


def test_aggregate_concatenates_models_and_folds():
    first = evaluate_payload(
        grid_payload(3, 1, 1, 10, seed=0, model="a"), window_frames=5, trials=2, seed=0, include_rest=True
    )
    second = evaluate_payload(
        grid_payload(3, 1, 1, 10, seed=1, model="b"), window_frames=5, trials=2, seed=0, include_rest=True
    )
    combined = aggregate([first, second])
    assert set(combined) == set(first)
    for name, table in combined.items():
        assert len(table) == len(first[name]) + len(second[name])
        assert list(table["model"].unique()) == ["a", "b"]


def test_vote_window_in_frames_follows_the_logits_frame_rate(tmp_path):
    """250 ms is 25 frames at 100 Hz and 12 (rounded) at 50 Hz: the frame rate is read from logits.pt."""
    from contrastive_prosthetics.evaluation.evaluate import evaluate_logits_file

    for rate, frames in ((100.0, 25), (50.0, 12)):
        payload = grid_payload(3, 1, 1, 60, seed=0, rest_windows=2) | {"frame_rate_hz": rate}
        write_payload(tmp_path / f"{rate}.pt", payload)
        written = read_logits(tmp_path / f"{rate}.pt")
        assert all(torch.equal(written[key], payload[key]) for key in (*PER_FRAME, *PER_REST_WINDOW))
        assert written["frame_rate_hz"] == rate
        options = {"vote_window_ms": 250, "trials": 2, "seed": 0, "include_rest": True}
        tables = evaluate_logits_file(tmp_path / f"{rate}.pt", tmp_path / str(rate), **options)
        voting = tables["voting"][tables["voting"]["group"] == "all"]
        assert voting["window_frames"].max() == frames
        assert voting["window_ms"].tolist() == [f * 1000 / rate for f in range(1, frames + 1)]
        for name, table in tables.items():  # the files hold the tables returned (an empty text reads back as NaN)
            written = read_table(tmp_path / str(rate) / f"{name}.tsv")
            expected = table.reset_index(drop=True).replace("", math.nan)
            pd.testing.assert_frame_equal(written, expected, check_dtype=False)


def test_subset_accuracy_when_every_window_is_certain():
    """A classifier right on every frame leaves no window to work out per subset: every subset scores 1."""
    payload = grid_payload(n_gestures=4, subjects=1, repetitions=1, frames=10, seed=0, boost=100.0)
    table = subset_size_accuracy(payload, 5, draw_subsets(4, 3, seed=0))
    assert (table["accuracy"] == 1.0).all()
    pd.testing.assert_frame_equal(table, straightforward_subset_size_accuracy(payload, 5, draw_subsets(4, 3, seed=0)))
