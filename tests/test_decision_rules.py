"""The hysteresis decision rule (learning/decision_rules.py): hand-worked sequences, and the offline path (many
subsets and stretches at once) against the controller's one frame at a time, bit for bit."""

import math

import numpy as np
import pytest
import torch

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.learning.decision_rules import (
    Hysteresis,
    RuleState,
    decide_rule_subsets,
    exact_exp,
    rule_grid,
)

EVERY = torch.ones((1, 3), dtype=torch.bool)  # rest and two gestures
# Probabilities (rest, gesture 1, gesture 2) frame by frame; with no smoothing they are the smoothed ones.
SEQUENCE = [[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.45, 0.45, 0.1], [0.2, 0.2, 0.6], [0.5, 0.1, 0.4], [0.7, 0.2, 0.1]]
SEQUENCE += [[0.45, 0.45, 0.1]]


def as_logits(rows) -> torch.Tensor:
    return torch.log(torch.tensor(rows, dtype=torch.float64)).float()


def unsmoothed(enter=0.5, leave=0.6, rest_offset=0.0) -> Hysteresis:
    return Hysteresis(smoothing_ms=0.0, enter=enter, leave=leave, frame_ms=10.0, rest_offset=rest_offset)


def test_it_enters_on_strong_evidence_switches_on_a_lead_and_leaves_on_rest_evidence():
    """Enter gesture 1 at 0.6 >= enter; a tie with rest below leave keeps it; gesture 2 leading at 0.6 switches;
    rest at 0.5 < leave keeps gesture 2; rest at 0.7 leaves; at rest 0.45 < enter does not enter."""
    decided = decide_rule_subsets(unsmoothed(), as_logits(SEQUENCE), EVERY, None, rest=0)
    assert decided[0].tolist() == [0, 1, 1, 2, 2, 0, 0]


def test_the_rule_restarts_at_rest_at_every_stretch_start():
    """Frame 2 starts a stretch: from rest, 0.45 is not enough to enter (the stretch before had entered)."""
    decided = decide_rule_subsets(unsmoothed(), as_logits(SEQUENCE), EVERY, torch.tensor([0, 2]), rest=0)
    assert decided[0].tolist() == [0, 1, 0, 2, 2, 0, 0]


def test_smoothing_moves_alpha_of_the_way_from_rest():
    """alpha = 1/2 (smoothing_ms = frame_ms / ln 2): a sure gesture is at 0.5 after one frame, 0.75 after two."""
    rule = Hysteresis(smoothing_ms=10 / math.log(2), enter=0.6, leave=0.6, frame_ms=10.0)
    assert rule.alpha == pytest.approx(0.5)
    logits = torch.tensor([[-60.0, 0.0, -60.0]] * 3)
    assert decide_rule_subsets(rule, logits, EVERY, None, rest=0)[0].tolist() == [0, 1, 1]


def test_the_rest_offset_is_added_to_rests_logit_before_the_softmax():
    """Rest 0.3 against gesture 0.6 enters; rest's logit + ln 3 makes it 0.9 : 0.6 and keeps rest."""
    logits = as_logits(SEQUENCE[1:2])
    assert decide_rule_subsets(unsmoothed(), logits, EVERY, None, rest=0)[0].tolist() == [1]
    assert decide_rule_subsets(unsmoothed(rest_offset=math.log(3)), logits, EVERY, None, rest=0)[0].tolist() == [0]


def test_only_the_allowed_gestures_are_decided_and_rest_alone_is_rest():
    logits = as_logits(SEQUENCE)
    allowed = torch.tensor([[True, False, True], [True, False, False]])
    decided = decide_rule_subsets(unsmoothed(), logits, allowed, None, rest=0)
    assert set(decided[0].tolist()) <= {0, 2} and decided[1].tolist() == [0] * len(SEQUENCE)


@pytest.mark.parametrize("integer", [False, True])
def test_many_subsets_and_stretches_at_once_are_the_controllers_decisions_bit_for_bit(integer):
    """Random logits (integer ones make ties common), subsets of every size, stretches of many lengths (one
    frame long included): decide_rule_subsets equals RuleState fed each stretch frame by frame, reset at each."""
    rng = np.random.default_rng(3)
    n_frames, n_classes = 700, 7
    values = rng.integers(-3, 4, (n_frames, n_classes)) if integer else rng.normal(0, 3, (n_frames, n_classes))
    logits = torch.from_numpy(values.astype(np.float32))
    allowed = torch.from_numpy(rng.random((30, n_classes)) < 0.5)
    allowed[:, 0] = True
    starts = torch.tensor([0, 1, 2, 50, 51, 300, 650, 699])
    for rule in (Hysteresis(30.0, 0.6, 0.5, 10.0, 0.7), Hysteresis(60.0, 0.4, 0.3, 10.0), unsmoothed(0.5, 0.5)):
        decided = decide_rule_subsets(rule, logits, allowed, starts, rest=0)
        ends = [*starts[1:].tolist(), n_frames]
        for row, mask in enumerate(allowed.numpy()):
            state, latest = RuleState(rule, mask, rest=0), []
            for first, end in zip(starts.tolist(), ends, strict=True):
                state.reset()
                latest += [state.push(logits[t].numpy()) for t in range(first, end)]
            assert latest == decided[row].tolist(), (rule, row)
        assert len(set(decided.flatten().tolist())) > 2  # it does enter gestures


def test_exact_exp_is_exp_to_float64_rounding_and_the_same_in_any_layout():
    x = -np.random.default_rng(0).uniform(0, 40, 1001)
    assert np.allclose(exact_exp(x), np.exp(x), rtol=1e-15, atol=0)
    assert np.array_equal(exact_exp(x)[7:9], exact_exp(x[7:9])) and exact_exp(np.array([-1e4]))[0] < 1e-300


@pytest.mark.parametrize(
    ("decision", "message"),
    [
        ({"rule": "majority"}, r"evaluation.decision.rule = 'majority': unknown"),
        ({"rule": "hysteresis", "smoothing_ms": 30, "enter": 1.5, "leave": 0.5}, r"evaluation.decision.enter = 1.5"),
        ({"rule": "hysteresis", "smoothing_ms": 30, "enter": [0.5, 0], "leave": 0.5}, r"decision.enter = 0: must"),
        ({"rule": "hysteresis", "smoothing_ms": -1, "enter": 0.5, "leave": 0.5}, r"decision.smoothing_ms = -1"),
        ({"rule": "hysteresis", "smoothing_ms": 30, "enter": 0.5, "leave": 0}, r"evaluation.decision.leave = 0"),
        ({"rule": "hysteresis", "enter": 0.5}, r"evaluation.decision: the hysteresis rule needs \['smoothing_ms'"),
    ],
)
def test_bad_rule_settings_name_their_key(decision, message):
    with pytest.raises(InputError, match=message):
        rule_grid(decision, 100.0)


def test_the_grid_is_every_combination_and_the_vote_none():
    grid = rule_grid({"rule": "hysteresis", "smoothing_ms": [30, 60], "enter": [0.5, 0.6, 0.7], "leave": 0.5}, 100)
    assert len(grid) == 6 and grid[1] == Hysteresis(30.0, 0.6, 0.5, 10.0)
    assert rule_grid({"rule": "vote"}, 100.0) == [] and rule_grid(None, 100.0) == []
    assert Hysteresis.from_dict(grid[1].with_offset(0.25).as_dict()) == grid[1].with_offset(0.25)
    assert Hysteresis.from_dict(None) is None and Hysteresis.from_dict({"rule": "vote"}) is None


def test_a_sweep_of_rest_shifts_decides_as_the_logits_shifted_one_at_a_time_bit_for_bit():
    """decide_rule_subsets's rest_shifts run every shift in one per-frame loop: the decisions equal those of the
    logits with each shift added to rest's first (in float32), on several subsets and uneven stretches."""
    rng = np.random.default_rng(5)
    logits = torch.from_numpy(rng.normal(0, 3, (900, 6)).astype(np.float32))
    starts = torch.tensor([0, 50, 51, 400, 777])
    allowed = torch.tensor([[1, 1, 0, 1, 0, 1], [1, 0, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    rule = Hysteresis(smoothing_ms=20.0, enter=0.5, leave=0.5, frame_ms=10.0, rest_offset=0.3)
    shifts = np.array([0.0, -2.5, 1.25, 4.0])
    swept = decide_rule_subsets(rule, logits, allowed, starts, 0, rest_shifts=shifts)
    assert swept.shape == (4, 3, 900)
    for shift, decided in zip(shifts, swept, strict=True):
        shifted = logits.clone()
        shifted[:, 0] += float(shift)
        assert torch.equal(decided, decide_rule_subsets(rule, shifted, allowed, starts, 0))
    assert len({tuple(d.flatten().tolist()) for d in swept}) > 1  # the shifts move decisions
