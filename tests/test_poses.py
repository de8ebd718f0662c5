"""Pose prototypes and the zero-shot evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PREPROCESS, emg_for, make_protocol, write_mat
from test_evaluate import brute_force_subset, grid_payload

from contrastive_prosthetics.data.convert import convert_subject
from contrastive_prosthetics.data.ninapro import DB1
from contrastive_prosthetics.evaluation.zero_shot import restricted, zero_shot_tables
from contrastive_prosthetics.learning.dataset import DB23, SubjectInfo
from contrastive_prosthetics.learning.poses import pose_prototypes


def posed_data(n_subjects=3, n_classes=4, n_reps=4) -> DB23:
    emg = torch.zeros(n_subjects, n_classes, n_reps, 2, 3)
    data = DB23(
        emg,
        torch.ones(n_subjects, n_classes, n_reps, dtype=torch.bool),
        torch.ones(n_subjects, 3, dtype=torch.bool),
        None,
        ["rest", "B1", "B2", "B3"][:n_classes],
        [SubjectInfo("db2", s + 1, False) for s in range(n_subjects)],
        torch.device("cpu"),
        frame_rate_hz=100.0,
    )
    generator = torch.Generator().manual_seed(0)
    data.poses = torch.randn(n_subjects, n_classes, n_reps, 22, generator=generator)
    data.poses[:, 0] = 0.0
    data.pose_mask = torch.ones(n_subjects, 22, dtype=torch.bool)
    return data


def test_a_converted_pose_is_the_segments_mean_glove_minus_the_rest_before_its_movement(tmp_path):
    """The hand's pose of each (class, repetition): the mean glove over its segment's frames minus the mean over the
    rest run just before the movement; rest's and invalid cells' are zeros. DB1's frames are its samples."""
    protocol = make_protocol([1, 2, 3], DB1.repetitions, movement_samples=150, rest_samples=130)
    glove = np.random.default_rng(3).normal(0, 10, (len(protocol.stimulus), 22))
    emg = emg_for(protocol, DB1.n_channels, rectified=True)
    path = write_mat(tmp_path / "S1_A1_E1.mat", protocol, emg, glove=glove)
    converted = convert_subject(DB1, 1, {"A": str(path)}, ["A"], PREPROCESS)
    segments, valid = converted["segments"]["onset"], converted["valid"]
    moving = np.flatnonzero(protocol.restimulus[:, 0])
    expected = torch.zeros((*valid.shape, 22))
    for c, r in valid[1:].nonzero().tolist():
        start, first = int(segments["segment_start"][c + 1, r]), int(converted["run_first"][c + 1, r])
        rest_first = moving[moving < first].max(initial=-1) + 1  # the rest run since the movement before (or the start)
        segment = glove[start : start + segments["glove"].shape[2]]
        torch.testing.assert_close(segments["glove"][c + 1, r], torch.tensor(segment, dtype=torch.float32))
        expected[c + 1, r] = torch.tensor(segment.mean(0) - glove[rest_first:first].mean(0))
    assert valid[1:4].all() and not valid[4:].any()  # three movements of ten repetitions were recorded
    torch.testing.assert_close(segments["pose"], expected, rtol=1e-5, atol=1e-5)


def test_prototypes_average_the_training_cells_and_standardise_each_sensor():
    data = posed_data()
    train = data.select(subjects=["db2/s1", "db2/s2"], repetitions=[1, 3])
    prototypes = pose_prototypes(data, train)
    raw = data.poses[:2][:, :, [0, 2]].double().mean((0, 2))
    torch.testing.assert_close(prototypes.double(), raw / raw.std(0), rtol=1e-5, atol=1e-6)
    # Test subjects and test repetitions take no part.
    data.poses[2] += 100.0
    data.poses[:, :, [1, 3]] -= 50.0
    torch.testing.assert_close(pose_prototypes(data, train), prototypes)


def test_a_sensor_a_subject_lacks_is_left_out_of_its_means():
    data = posed_data()
    train = data.select(subjects=["db2/s1", "db2/s2"], repetitions=[1, 2])
    data.pose_mask[0, 5] = False
    data.poses[0, :, :, 5] = 1000.0  # garbage where the glove had no data
    prototypes = pose_prototypes(data, train)
    alone = data.poses[1, :, :2, 5].double().mean(1)
    others = pose_prototypes(data, train)[:, 5]
    torch.testing.assert_close(others.double(), alone / alone.std(), rtol=1e-5, atol=1e-6)
    data.pose_mask[:, 7] = False  # no subject has sensor 7: zero everywhere
    assert (pose_prototypes(data, train)[:, 7] == 0).all() and prototypes.isfinite().all()


def test_restricting_a_payload_keeps_the_classes_frames_and_scores():
    payload = grid_payload(n_gestures=4, subjects=1, repetitions=1, frames=5, seed=0)
    only = restricted(payload, ["rest", "B2", "B4"])
    assert only["classes"] == ["rest", "B2", "B4"] and set(only["label"].tolist()) == {0, 1, 2}
    assert len(only["label"]) == 15 and only["logits"].shape == (15, 3)
    original = payload["logits"][payload["label"] == 2][:, [0, 2, 4]]
    torch.testing.assert_close(only["logits"][only["label"] == 1], original)


def test_zero_shot_tables_compare_each_set_with_its_oracle_and_chance():
    payload = grid_payload(n_gestures=6, subjects=2, repetitions=2, frames=10, seed=1, boost=0.5)
    oracle = grid_payload(n_gestures=6, subjects=2, repetitions=2, frames=10, seed=1, boost=3.0)
    for p in (payload, oracle):
        p.update(unseen=["B2", "B5"], window="onset")
    table, curves = zero_shot_tables(payload, oracle, window_frames=5, trials=4, seed=0)
    table = table.set_index("set")
    assert list(table.index) == ["unseen", "seen", "all"]
    assert table.loc["unseen", "classes"] == 3 and table.loc["unseen", "chance"] == pytest.approx(1 / 3)
    assert table.loc["seen", "gestures"] == "B1 B3 B4 B6" and table.loc["all", "classes"] == 7
    # Each set's accuracy is the vote's among its classes alone (with rest), written out window by window.
    for name, allowed in (("unseen", [0, 2, 5]), ("seen", [0, 1, 3, 4, 6]), ("all", list(range(7)))):
        for scores, column in ((payload, "accuracy"), (oracle, "oracle_accuracy")):
            assert table.loc[name, column] == pytest.approx(brute_force_subset(scores, 5, allowed)[0]), (name, column)
        assert table.loc[name, "balanced_accuracy"] == pytest.approx(brute_force_subset(payload, 5, allowed)[1])
    assert (table["oracle_accuracy"] > table["accuracy"]).all()  # the boosted "oracle" knows better
    # The curve: 4 subsets drawn per k of the 2 unseen gestures, for the model and the oracle; at k = 2 every subset
    # is the unseen set itself.
    assert len(curves) == 2 * 2 * 4 and set(curves["scored_by"]) == {"model", "oracle"}
    whole = curves[curves["k"] == 2].set_index("scored_by")["accuracy"]
    assert (whole["model"] == table.loc["unseen", "accuracy"]).all()
    assert (whole["oracle"] == table.loc["unseen", "oracle_accuracy"]).all()
    without = dict(payload, unseen=[])
    with pytest.raises(ValueError, match="not a zero-shot fold"):
        zero_shot_tables(without, oracle, window_frames=5, trials=4, seed=0)
