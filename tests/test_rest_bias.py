"""The rest bias: the smallest one that meets the target rest false activation on validation streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastive_prosthetics.learning.rest_bias import calibrate_rest_bias, rest_false_activation, shared_margin

REST = 0


def rest_frames_with_margins(margins) -> tuple[torch.Tensor, np.ndarray]:
    """Rest frames whose best gesture (class 1) beats rest by each margin; class 2 always far behind."""
    logits = torch.zeros((len(margins), 3))
    logits[:, 1] = torch.tensor(margins, dtype=torch.float32)
    logits[:, 2] = -5.0
    return logits, np.zeros(len(margins), dtype=np.int64)


def test_without_a_vote_the_bias_is_the_margin_that_leaves_the_target_share_of_rest_frames_to_gestures():
    """Margins 0.1 .. 1.0: a target of 20 % lets the two largest margins through; a bias equal to the third largest
    ties with it, and a tie goes to the lower class index, rest."""
    stretch = rest_frames_with_margins(np.arange(1, 11) / 10)
    calibration = calibrate_rest_bias([stretch], REST, vote_frames=0, target=0.2)
    assert calibration.bias == pytest.approx(0.8, abs=1e-5)
    assert calibration.false_activation == pytest.approx(0.2) and calibration.false_activation_before == 1.0
    assert calibration.frames == 10
    assert rest_false_activation([stretch], REST, 0, calibration.bias - 1e-3)[0] > 0.2  # the smallest such bias


def test_with_a_vote_the_bias_meets_the_target_and_no_smaller_one_does():
    generator = np.random.default_rng(0)
    stretches = []
    for _ in range(3):
        truth = np.repeat(generator.integers(0, 3, 40) * (generator.random(40) < 0.5), 25)  # runs, half of them rest
        logits = torch.from_numpy(generator.standard_normal((len(truth), 3)).astype(np.float32))
        logits[torch.arange(len(truth)), torch.from_numpy(truth)] += 0.8
        stretches.append((logits, truth))
    calibration = calibrate_rest_bias(stretches, REST, vote_frames=10, target=0.05)
    assert calibration.false_activation <= 0.05 < calibration.false_activation_before
    assert calibration.bias > 0
    assert rest_false_activation(stretches, REST, 10, calibration.bias - 1e-3)[0] > 0.05


def test_a_quiet_model_gives_margin_back_to_movements_with_a_negative_bias():
    """Rest wins every frame by 0.1 .. 1.0: a target of 10 % lets the closest frame (0.1) through, at a bias of
    -0.2, where the next one ties and stays rest."""
    stretch = rest_frames_with_margins(-np.arange(1, 11) / 10)
    calibration = calibrate_rest_bias([stretch], REST, vote_frames=0, target=0.1)
    assert calibration.false_activation_before == 0.0 and calibration.false_activation == pytest.approx(0.1)
    assert calibration.bias == pytest.approx(-0.2, abs=1e-5)


def test_a_tolerance_stops_the_bisection_early_still_meeting_the_target_within_it():
    from contrastive_prosthetics.learning.rest_bias import smallest_meeting

    calls = []

    def rate_at(bias: float) -> float:
        calls.append(bias)
        return 1.0 if bias < 0.3 else 0.0

    exact = smallest_meeting(rate_at, 10.0, 0.5)
    exact_calls = len(calls)
    calls.clear()
    rough = smallest_meeting(rate_at, 10.0, 0.5, tolerance=1e-3)
    assert rate_at(rough) <= 0.5 and 0.3 <= rough < 0.3 + 1e-3
    assert rough >= exact and len(calls) - 1 < exact_calls // 2  # 15 halvings of [-10, 10], not 40


def test_without_rest_frames_nothing_is_calibrated():
    logits = torch.zeros((5, 3))
    calibration = calibrate_rest_bias([(logits, np.ones(5, dtype=np.int64))], REST, vote_frames=0, target=0.1)
    assert calibration.bias == 0.0 and calibration.frames == 0


def test_one_users_shared_margin_is_the_distance_between_their_fitted_and_scored_biases():
    scored = [rest_frames_with_margins(np.arange(1, 11) / 10)]  # meets 20 % at 0.8
    assert shared_margin([(scored, 0.5)], REST, vote_frames=0, target=0.2) == pytest.approx(0.3, abs=1e-5)


def test_the_shared_margin_meets_the_mean_rate_where_the_mean_of_own_margins_does_not():
    """User a's scored rest frames beat rest by 1 .. 10, user b's by 0.1 .. 1.0; both fitted biases 0. Their own
    margins at 20 % are 8.0 and 0.8; the mean of those (4.4) leaves b at 0 % and a at 60 %: a mean rate of 30 %,
    above the target. The shared margin is the smallest one whose mean rate meets it."""
    a = [rest_frames_with_margins(np.arange(1, 11).astype(float))]
    b = [rest_frames_with_margins(np.arange(1, 11) / 10)]
    own = [calibrate_rest_bias(s, REST, 0, 0.2).bias for s in (a, b)]
    mean_rate = lambda m: np.mean([rest_false_activation(s, REST, 0, m)[0] for s in (a, b)])  # noqa: E731
    assert mean_rate(np.mean(own)) > 0.2
    margin = shared_margin([(a, 0.0), (b, 0.0)], REST, vote_frames=0, target=0.2)
    assert mean_rate(margin) <= 0.2 < mean_rate(margin - 1e-3)
    assert margin > np.mean(own)


def test_the_shared_margin_counts_each_users_bias_and_leaves_out_users_without_rest():
    scored = [rest_frames_with_margins(np.arange(1, 11) / 10)]
    moving = [(torch.zeros((5, 3)), np.ones(5, dtype=np.int64))]
    # Fitted at 0.8 already: nothing to add; the user without rest frames changes nothing.
    assert shared_margin([(scored, 0.8), (moving, 3.0)], REST, 0, 0.2) == pytest.approx(0.0, abs=1e-5)
    assert shared_margin([(moving, 3.0)], REST, 0, 0.2) == 0.0 and shared_margin([], REST, 0, 0.2) == 0.0


def test_each_user_gets_their_own_bias_never_below_the_pooled_one():
    """User a's rest frames beat rest by 1 .. 10 (their own bias for 20 %: 8.0), user b's by 0.1 .. 1.0 (0.8); with
    the pooled bias 2.0 as the floor, the restless user gets more and the quiet one keeps the population's."""
    from contrastive_prosthetics.learning.rest_bias import per_user_biases

    a = rest_frames_with_margins(np.arange(1, 11).astype(float))
    b = rest_frames_with_margins(np.arange(1, 11) / 10)
    biases = per_user_biases([a, b, a], ["s1", "s2", "s1"], REST, vote_frames=0, target=0.2, floor=2.0)
    assert biases.keys() == {"s1", "s2"} and biases["s2"] == 2.0
    assert biases["s1"] == pytest.approx(8.0, abs=1e-5)


def test_a_subject_decides_with_their_own_bias_where_the_model_has_one():
    from contrastive_prosthetics.learning.rest_bias import subject_rest_bias

    saved = {"rest_bias": 1.5, "calibration": {"bias": 1.5, "per_subject": {"db1/s1": 3.0}}}
    assert subject_rest_bias(saved, "db1/s1") == 3.0 and subject_rest_bias(saved, "db1/s2") == 1.5
    assert subject_rest_bias({"rest_bias": 0.5, "calibration": None}, "db1/s1") == 0.5  # older files: one bias


@pytest.mark.parametrize("promise", ["average", "per_user"])
def test_the_end_of_training_calibrates_per_user_only_when_asked(promise):
    from test_train import TRAINING, settings_of

    from contrastive_prosthetics.learning.decision_choice import calibrations

    quiet, restless = rest_frames_with_margins(np.arange(1, 11) / 10), rest_frames_with_margins(np.arange(1, 11) * 1.0)
    settings = settings_of(TRAINING, rest_false_activation_target=0.2, rest_promise=promise)
    calibration, rule = calibrations([quiet, restless], ["rest", "a", "b"], settings, 100.0, ["q", "r"])
    assert rule is None and calibration.false_activation <= 0.2
    if promise == "average":
        assert calibration.per_subject == {}
    else:
        assert calibration.per_subject["q"] == calibration.bias < calibration.per_subject["r"]
        assert calibration.as_dict()["per_subject"] == calibration.per_subject  # what model.pt keeps


@pytest.mark.parametrize("adabn", [False, True], ids=["plain", "cross-fitted AdaBN"])
def test_the_calibration_reads_only_the_validation_selections_frames(tmp_path, adabn):
    """Every stream frame the rest calibration scores belongs to a validation subject's validation repetition (the
    adaptation of an AdaBN model may read the pool's other repetitions, never a test one): no test frame reaches it."""
    from test_dataset import decode, fake_subject

    from contrastive_prosthetics.learning.dataset import DB23, Normalisation
    from contrastive_prosthetics.learning.models import ModelConfig, build_model
    from contrastive_prosthetics.learning.rest_bias import validation_streams
    from contrastive_prosthetics.learning.stream_scoring import StreamScoring

    paths = [fake_subject(tmp_path / f"{s}.pt", "db2", s, 6, 12) for s in (1, 2)]
    raw = DB23.load(paths, device="cpu", with_streams=True)
    torch.manual_seed(0)
    model = build_model(ModelConfig("contrastive", 12, len(raw.classes), 8, 4, 16, 1, 0.0, 1)).eval()
    normalisation = Normalisation(torch.zeros(12), torch.full((12,), 1e6), False, torch.full((12,), 1e-7))
    selection = raw.select(subjects=["db2/s2"], repetitions=[6])
    pool = {1: [1, 3, 4, 6]}  # the validation subject may adapt on its training repetitions and its validation one
    scoring = StreamScoring(
        raw=raw,
        normalised=raw,
        normalisation=normalisation,
        adabn=adabn,
        adaptation="cross_fitted",
        adaptation_frames=100,
    )
    streams = validation_streams(model, scoring=scoring, selection=selection, pool=pool)
    positions = np.concatenate([p for p, _, _ in streams])
    subject, _, repetition, _ = decode(raw.streams.frames[torch.from_numpy(positions)])
    assert set(subject.tolist()) == {2} and set(repetition.tolist()) == {6}
    assert (
        sum(len(logits) for _, logits, _ in streams) == len(positions) == int((raw.streams.repetition == 6).sum()) // 2
    )


def test_one_rest_calibration_for_every_model_reads_the_target_and_the_vote_from_the_settings():
    """rest_calibration (networks and LDA alike): None without a target; else the bisection's bias at the vote
    evaluation.vote_window_ms gives at the frame rate (30 ms at 100 Hz: 3 frames)."""
    from test_train import TRAINING, settings_of

    from contrastive_prosthetics.learning.rest_bias import rest_calibration

    rng = np.random.default_rng(0)
    stretches = [(torch.tensor(rng.normal(0, 1, (40, 3)), dtype=torch.float32), np.zeros(40, dtype=np.int64))]
    classes = ["rest", "A1", "A2"]
    assert rest_calibration(stretches, classes, settings_of(TRAINING), 100.0) is None
    settings = settings_of(TRAINING, rest_false_activation_target=0.25, vote_window_ms=30)
    calibration = rest_calibration(stretches, classes, settings, 100.0)
    assert calibration == calibrate_rest_bias(stretches, REST, vote_frames=3, target=0.25)
    assert calibration != calibrate_rest_bias(stretches, REST, vote_frames=0, target=0.25)


def movement_stretches(seed: int = 0, n: int = 12) -> list:
    """Stretches of rest, then a movement of class 1 or 2 whose evidence grows over a few frames, then rest; noisy
    logits over rest and two gestures."""
    rng = np.random.default_rng(seed)
    stretches = []
    for index in range(n):
        gesture = 1 + index % 2
        truth = np.array([0] * 60 + [gesture] * 80 + [0] * 60)
        logits = rng.normal(0, 1.0, (len(truth), 3)).astype(np.float32)
        logits[truth == 0, 0] += 2.0
        logits[truth == gesture, gesture] += np.minimum(np.arange(80) / 4, 3.0).astype(np.float32)
        stretches.append((torch.from_numpy(logits), truth))
    return stretches


def test_the_decision_choice_keeps_the_fastest_setting_each_at_the_target_on_the_validation_streams():
    """Every setting of the grid gets its own rest offset for the target; the one with the shortest median onset
    delay is kept, and on the same streams it meets the target."""
    from test_train import TRAINING, settings_of

    from contrastive_prosthetics.learning.decision_choice import _scores, choose_decision
    from contrastive_prosthetics.learning.decision_rules import decide_rule_subsets, rule_grid
    from contrastive_prosthetics.learning.rest_bias import _LaidEndToEnd

    stretches, classes = movement_stretches(), ["rest", "a", "b"]
    grid = {"rule": "hysteresis", "smoothing_ms": [0, 40], "enter": [0.5, 0.8], "leave": 0.6}
    settings = settings_of(TRAINING, rest_false_activation_target=0.05, vote_window_ms=250, decision=grid)
    chosen = choose_decision(stretches, classes, settings, 100.0, rest_bias=0.0)
    laid, every = _LaidEndToEnd.of(stretches), torch.ones((1, 3), dtype=torch.bool)
    delays = {}
    for rule in rule_grid(grid, 100.0):
        rule = rule.with_offset(calibrate_rest_bias(stretches, REST, 0, 0.05, rule).bias)
        scores = _scores(decide_rule_subsets(rule, laid.logits, every, laid.starts, REST)[0], laid, REST, 10, 10.0)
        assert scores["rest_false_activation"] <= 0.05
        delays[rule] = scores["onset_delay_p50_ms"]
    assert chosen in delays and delays[chosen] == min(delays.values())
    vote = settings_of(TRAINING, rest_false_activation_target=0.05, vote_window_ms=250, decision={"rule": "vote"})
    assert choose_decision(stretches, classes, vote, 100.0, rest_bias=0.0) is None


def test_the_rule_is_chosen_on_the_validation_streams_alone(monkeypatch):
    """setting_calibrations scores the validation streams once (the rest bias and the rule both read them) and
    nothing else: a setting whose test scores raise still calibrates."""
    from types import SimpleNamespace

    from test_train import TRAINING, settings_of

    from contrastive_prosthetics.learning.decision_choice import setting_calibrations

    grid = {"rule": "hysteresis", "smoothing_ms": 30, "enter": [0.6, 0.7], "leave": 0.6}
    calls = []

    def validation_streams(model, gate, memo):
        calls.append(model)
        return [(np.arange(len(t)), logits, t) for logits, t in movement_stretches(1, 4)]

    def never(*_):
        raise AssertionError("a test frame was read")

    setting = SimpleNamespace(
        settings=settings_of(TRAINING, rest_false_activation_target=0.1, vote_window_ms=250, decision=grid),
        data=SimpleNamespace(frame_rate_hz=100.0, classes=["rest", "a", "b"]),
        validation_streams=validation_streams,
        scores=never,
    )
    calibration, rule = setting_calibrations(setting, "model", None)
    assert calls == ["model"] and calibration.false_activation <= 0.1 and rule.enter in (0.6, 0.7)
