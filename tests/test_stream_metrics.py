"""Stream metrics: the vectorised path equals the straightforward per-subset loop metric by metric, and its
decisions are realtime.decide's (the controller's) bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from contrastive_prosthetics.data.ninapro import class_names
from contrastive_prosthetics.evaluation.stream_metrics import allowed_masks, stream_metrics
from contrastive_prosthetics.evaluation.stream_metrics_reference import straightforward_stream_metrics
from contrastive_prosthetics.evaluation.subsets import draw_subsets
from contrastive_prosthetics.learning.batched_decisions import decide_subsets
from contrastive_prosthetics.learning.decisions import decide

CLASSES = class_names(["A"])  # rest + 12 gestures
FRAME_MS = 10.0


def random_truth(generator: np.random.Generator, n_runs: int) -> np.ndarray:
    """Rest and movement runs of every length from 1 frame (shorter than the stable and steady spans) to 250."""
    truth = []
    for run in range(n_runs):
        value = 0 if run % 2 == 0 else int(generator.integers(1, len(CLASSES)))
        truth += [value] * int(generator.choice([1, 3, 9, 10, 11, 60, 101, 102, 250]))
    return np.array(truth)


def random_stretch(generator: np.random.Generator, n_runs: int, quantised: bool) -> tuple:
    """(subject, positions, logits, truth): logits that lean towards the truth, correlated in time; quantised
    logits and a duplicated class column make exact ties in the argmax and in the vote's score sums."""
    truth = random_truth(generator, n_runs)
    noise = generator.standard_normal((len(truth) + 8, len(CLASSES))).cumsum(0)
    logits = (noise[8:] - noise[:-8]) / 3 + 1.5 * np.eye(len(CLASSES))[truth]
    if quantised:
        logits = np.round(logits * 2) / 2
        logits[:, 5] = logits[:, 4]
    logits = torch.from_numpy(logits.astype(np.float32))
    return 0, np.arange(len(truth)), logits, truth


def random_scored(seed: int, quantised: bool = False) -> list:
    generator = np.random.default_rng(seed)
    return [random_stretch(generator, int(generator.integers(1, 12)), quantised) for _ in range(4)]


@pytest.mark.parametrize("quantised", [False, True], ids=["continuous", "with exact ties"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_stream_metrics_equal_the_straightforward_loop_metric_by_metric(seed, quantised):
    scored = random_scored(seed, quantised)
    drawn = draw_subsets(len(CLASSES) - 1, 5, seed)
    subsets = {k: drawn[k] for k in (1, 3, 12)}
    votes = [0, 1, 5, 25]
    fast = stream_metrics(scored, CLASSES, subsets, votes, FRAME_MS)
    reference = straightforward_stream_metrics(scored, CLASSES, subsets, votes, FRAME_MS)
    assert len(fast) == sum(len(chosen) for chosen in subsets.values()) * len(votes) and list(fast) == list(reference)
    for column in reference:  # one column at a time, so that a failure names the metric
        pd.testing.assert_series_equal(fast[column], reference[column], check_exact=True, check_dtype=False)
    assert fast["onsets_missed"].between(0, 1).all() and fast["onset_delay_p50_ms"].notna().any()


def test_decisions_of_many_subsets_are_the_controllers_bit_for_bit():
    _, _, logits, _ = random_stretch(np.random.default_rng(3), 15, quantised=True)
    _, allowed = allowed_masks(CLASSES, draw_subsets(len(CLASSES) - 1, 3, 0))
    votes = [0, 1, 2, 25, len(logits) + 5]  # a vote longer than the stretch counts every frame so far
    together = decide_subsets(logits, allowed, votes)
    for vote in votes:
        one_by_one = torch.stack([decide(logits, mask, vote) for mask in allowed])
        assert torch.equal(together[vote], one_by_one), vote


def test_decisions_are_the_same_in_memory_bounded_chunks(monkeypatch):
    import contrastive_prosthetics.learning.batched_decisions as module

    _, _, logits, _ = random_stretch(np.random.default_rng(4), 9, quantised=False)
    _, allowed = allowed_masks(CLASSES, draw_subsets(len(CLASSES) - 1, 4, 1))
    whole = decide_subsets(logits, allowed, [10])[10]
    monkeypatch.setattr(module, "CHUNK_ELEMENTS", 1)  # one subset per chunk
    assert torch.equal(decide_subsets(logits, allowed, [10])[10], whole)


def test_a_movement_never_stably_recognised_counts_as_missed_and_has_no_delay():
    truth = np.array([0] * 20 + [3] * 30 + [0] * 20)
    logits = torch.zeros((len(truth), len(CLASSES)))
    logits[:, 0] = 1.0  # always rest
    logits[30:35, 3] = 2.0  # right for 5 frames only: less than the 10 frames (100 ms) that count as reached
    subsets = {1: torch.tensor([[False, False, True] + [False] * 9])}  # the user chose gesture 3
    table = stream_metrics([(0, np.arange(len(truth)), logits, truth)], CLASSES, subsets, [0], FRAME_MS)
    row = table.iloc[0]
    assert row["onsets_missed"] == 1.0 and np.isnan(row["onset_delay_p50_ms"])
    assert row["rest_false_activation"] == 0.0 and row["movement_accuracy"] == pytest.approx(5 / 30)
    logits[35:50, 3] = 2.0  # now right from frame 30 to the end of the movement
    row = stream_metrics([(0, np.arange(len(truth)), logits, truth)], CLASSES, subsets, [0], FRAME_MS).iloc[0]
    assert row["onsets_missed"] == 0.0 and row["onset_delay_p50_ms"] == 100.0  # frame 30 is 10 frames after onset


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_stream_scored_nan_or_infinite_is_refused_with_the_subject_and_frames(bad):
    scored = random_scored(5)
    _, positions, logits, truth = scored[1]
    logits = logits.clone()
    logits[len(logits) // 2, 2] = bad
    scored[1] = (7, positions + 100, logits, truth)
    drawn = draw_subsets(len(CLASSES) - 1, 2, 0)
    with pytest.raises(ValueError, match=r"subject 7 \(frames 100-.*NaN or infinity.*retrain"):
        stream_metrics(scored, CLASSES, {3: drawn[3]}, [0, 5], FRAME_MS)


@pytest.mark.parametrize("group_frames", [1, 300, 2**16], ids=["each alone", "a few together", "all together"])
def test_many_short_stretches_decided_together_restart_the_vote_at_each_one(monkeypatch, group_frames):
    """Real recordings cut a job's stream into a stretch per repetition of each movement; deciding them laid end to
    end must give every metric of deciding them one by one (votes never reach back into the previous stretch)."""
    import contrastive_prosthetics.evaluation.stream_metrics as module

    generator = np.random.default_rng(6)
    scored = [random_stretch(generator, int(generator.integers(1, 4)), quantised=True) for _ in range(25)]
    drawn = draw_subsets(len(CLASSES) - 1, 3, 2)
    subsets = {k: drawn[k] for k in (1, 6, 12)}
    monkeypatch.setattr(module, "GROUP_FRAMES", group_frames)
    fast = stream_metrics(scored, CLASSES, subsets, [0, 5, 25], FRAME_MS)
    reference = straightforward_stream_metrics(scored, CLASSES, subsets, [0, 5, 25], FRAME_MS)
    for column in reference:
        pd.testing.assert_series_equal(fast[column], reference[column], check_exact=True, check_dtype=False)


def test_quiet_and_transition_rest_and_false_activations_per_minute_are_told_apart():
    """Rest 1 s, a movement 0.3 s, rest 1 s: the 500 ms before the onset and after the release are transition rest,
    the rest quiet. Three frames decided as a gesture in quiet rest and three after the release: two activations."""
    truth = np.array([0] * 100 + [3] * 30 + [0] * 100)
    logits = torch.zeros((len(truth), len(CLASSES)))
    logits[:, 0] = 1.0
    logits[100:130, 3] = 2.0  # the movement recognised
    logits[10:13, 3] = 2.0  # quiet rest
    logits[131:134, 3] = 2.0  # the release
    subsets = {1: torch.tensor([[False, False, True] + [False] * 9])}
    scored = [(0, np.arange(len(truth)), logits, truth)]
    for table in (
        stream_metrics(scored, CLASSES, subsets, [0], FRAME_MS),
        straightforward_stream_metrics(scored, CLASSES, subsets, [0], FRAME_MS),
    ):
        row = table.iloc[0]
        assert row["quiet_rest_false_activation"] == pytest.approx(3 / 100)
        assert row["transition_rest_false_activation"] == pytest.approx(3 / 100)
        assert row["rest_false_activation"] == pytest.approx(6 / 200)
        assert row["false_activations_per_min"] == pytest.approx(2 / (200 * FRAME_MS / 60000))


TRADEOFF_CLASSES = ["rest", "A1", "A2", "A3"]


def tradeoff_stream() -> list:
    """One stretch of rest and three gestures in turn, logits leaning towards the truth."""
    rng = np.random.default_rng(3)
    truth = np.repeat([0, 1, 0, 2, 0, 3, 0], 40)
    logits = torch.from_numpy(rng.normal(0, 1, (len(truth), 4))).float()
    logits[torch.arange(len(truth)), torch.from_numpy(truth)] += 1.0
    return [(0, np.arange(len(truth)), logits, truth)]


def test_the_tradeoff_spans_quiet_to_busy_rest_and_holds_the_calibrated_point():
    """Biases placed at quantiles of the rest frames' margin take rest false activation from near 1 to near 0, more
    bias never more false activation, and the row at offset 0 is the stream evaluation's own k = K figure."""
    from contrastive_prosthetics.evaluation.stream_tradeoff import MARGIN_QUANTILES, tradeoff_table

    classes, scored = TRADEOFF_CLASSES, tradeoff_stream()
    every = torch.ones((1, 3), dtype=torch.bool)
    table = tradeoff_table(scored, classes, every, [0, 5], 10.0)
    frame = table[table["vote_ms"] == 0].sort_values("bias_offset")
    assert len(frame) == len(MARGIN_QUANTILES) + 1
    assert frame["rest_false_activation"].is_monotonic_decreasing
    assert frame["rest_false_activation"].iloc[0] > 0.9 and frame["rest_false_activation"].iloc[-1] < 0.1
    calibrated = table[table["calibrated"]].set_index("vote_ms")
    own = stream_metrics(scored, classes, {3: every}, [0, 5], 10.0).set_index("vote_ms")
    for column in ("accuracy", "movement_accuracy", "rest_false_activation", "onset_delay_p50_ms"):
        assert np.allclose(calibrated[column], own.loc[calibrated.index, column], equal_nan=True), column


def test_the_rules_tradeoff_table_is_each_offsets_stream_metrics():
    """tradeoff_table with a rule scores every offset in one pass; each row equals stream_metrics on the logits
    shifted by its offset, and offset 0 is the calibrated row."""
    from contrastive_prosthetics.evaluation.stream_tradeoff import tradeoff_table
    from contrastive_prosthetics.learning.decision_rules import Hysteresis

    classes, scored = TRADEOFF_CLASSES, tradeoff_stream()
    (_, positions, logits, truth) = scored[0]
    every = torch.ones((1, 3), dtype=torch.bool)
    rule = Hysteresis(smoothing_ms=20.0, enter=0.5, leave=0.5, frame_ms=10.0)
    table = tradeoff_table(scored, classes, every, [0], 10.0, rule)
    assert (table["trial"] == 0).all() and table["calibrated"].sum() == 1
    assert table.loc[table["calibrated"], "bias_offset"].item() == 0.0
    for _, row in table.iterrows():
        shift = torch.zeros(4)
        shift[0] = float(row["bias_offset"])
        alone = stream_metrics([(0, positions, logits + shift, truth)], classes, {3: every}, [0], 10.0, rule=rule)
        for column in ("accuracy", "movement_accuracy", "rest_false_activation", "onset_delay_p50_ms"):
            assert row[column] == alone[column].item() or (np.isnan(row[column]) and np.isnan(alone[column].item()))


def test_the_guard_band_is_reported_on_its_own():
    """Rest 0.5 s, gesture 3 for 0.5 s, rest 0.5 s, at 10 ms frames, with a 30 ms guard band (training's guard_mask:
    the first and the last 3 frames of every run of one label, the stream's own ends included): 18 guard frames.
    Every decision is wrong inside the band and right outside it."""
    from contrastive_prosthetics.learning.stream_sampling import guard_mask, guard_width

    truth = np.array([0] * 50 + [3] * 50 + [0] * 50)
    guard = guard_mask(torch.from_numpy(truth), torch.zeros(len(truth), dtype=torch.long), guard_width(30.0, 100.0))
    expected = np.zeros(len(truth), dtype=bool)
    for edge in (0, 50, 100, 150):  # every change of label, and the stream's start and end
        expected[max(edge - 3, 0) : edge + 3] = True
    assert np.array_equal(guard.numpy(), expected) and expected.sum() == 18
    logits = torch.zeros((len(truth), len(CLASSES)))
    logits[torch.arange(len(truth)), torch.from_numpy(truth)] = 1.0
    wrong = torch.from_numpy(expected)
    logits[wrong] = 0.0
    logits[wrong, 5] = 1.0  # gesture 5, chosen but never true: wrong on rest and gesture frames alike
    subsets = {2: torch.tensor([[False, False, True, False, True] + [False] * 7])}  # gestures 3 and 5
    scored = [(0, np.arange(len(truth)), logits, truth)]
    for metrics in (stream_metrics, straightforward_stream_metrics):
        row = metrics(scored, CLASSES, subsets, [0], FRAME_MS, guard=guard.numpy()).iloc[0]
        assert row["guard_frames"] == 18 and row["frames"] == 150
        assert row["guard_accuracy"] == 0.0 and row["settled_accuracy"] == 1.0
        assert row["accuracy"] == pytest.approx(132 / 150)
        plain = metrics(scored, CLASSES, subsets, [0], FRAME_MS).iloc[0]  # no guard band: every frame settled
        assert plain["guard_frames"] == 0 and np.isnan(plain["guard_accuracy"])
        assert plain["settled_accuracy"] == plain["accuracy"] == row["accuracy"]


def test_guard_metrics_of_many_stretches_equal_the_straightforward_loop():
    """Stretches at their own positions of one stream, the guard band training's over the whole stream, votes that
    carry wrong decisions out of the band: every column of the vectorised path equals the reference's."""
    from contrastive_prosthetics.learning.stream_sampling import guard_mask

    generator = np.random.default_rng(8)
    scored, start = [], 0
    for _ in range(6):
        _, positions, logits, truth = random_stretch(generator, int(generator.integers(1, 8)), quantised=True)
        scored.append((0, positions + start, logits, truth))
        start += len(truth) + 7  # a gap between stretches, as between test repetitions
    stream = np.zeros(start, dtype=np.int64)
    for _, positions, _, truth in scored:
        stream[positions] = truth
    guard = guard_mask(torch.from_numpy(stream), torch.zeros(start, dtype=torch.long), 4).numpy()
    drawn = draw_subsets(len(CLASSES) - 1, 3, 4)
    subsets = {k: drawn[k] for k in (2, 12)}
    fast = stream_metrics(scored, CLASSES, subsets, [0, 5, 25], FRAME_MS, guard)
    reference = straightforward_stream_metrics(scored, CLASSES, subsets, [0, 5, 25], FRAME_MS, guard)
    assert list(fast) == list(reference) and (fast["guard_frames"] > 0).all()
    for column in reference:
        pd.testing.assert_series_equal(fast[column], reference[column], check_exact=True, check_dtype=False)
    assert (fast["guard_accuracy"] != fast["settled_accuracy"]).any()
