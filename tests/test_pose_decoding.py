"""Pose decoding: each subject's glove standardised by its own training frames, a head on the EMG encoder trained to
decode it, class descriptions from other people's gloves, and what a zero-shot fold keeps from the head."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_train import ARCHITECTURE, CLASSES, FOLD, digest, settings_of, write_subject

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.data.tensor_file import read_tensor_file
from contrastive_prosthetics.evaluation.pose_decoding import evaluate_pose_decoding
from contrastive_prosthetics.evaluation.zero_shot import pose_matching
from contrastive_prosthetics.learning.dataset import DB23
from contrastive_prosthetics.learning.glove import glove_normalisation, pose_descriptions
from contrastive_prosthetics.learning.logits import read_logits
from contrastive_prosthetics.learning.model_file import load_model_file
from contrastive_prosthetics.learning.train import train_fold

POSE_MODEL = {
    "kind": "contrastive",
    "adabn": True,
    "adaptation": "cross_fitted",
    "class_encoder": "pose",
    "pose_decoder": {"weight": 1.0},
}
MIXING = np.random.default_rng(5).normal(0.0, 1.0, (6, 22))  # the hand's pose follows the muscles' activation


def write_gloved_subject(path, subject: int, unseen_scale: float = 1.0, glove_shift: dict | None = None):
    """test_train's subject with a glove that follows each class's activation pattern, in the subject's own units
    (scale and offset differ between people); ``glove_shift`` {(subject, class, repetition 1-based): degrees} moves
    a cell's."""
    rng = np.random.default_rng(100 + subject)
    patterns = np.random.default_rng(99).uniform(0.0, 3.0, (len(CLASSES), 6))  # test_train's
    pose = patterns @ MIXING  # [class, 22]
    glove = pose[:, None, None, :] * rng.uniform(0.5, 2.0) + rng.normal(0.0, 20.0, 22)
    glove = glove + rng.normal(0.0, 0.5, (len(CLASSES), 6, 20, 22))
    for (who, c, r), shift in (glove_shift or {}).items():
        if who == subject:
            glove[c, r - 1] += shift
    poses = torch.tensor(np.broadcast_to(pose[:, None], (len(CLASSES), 6, 22)) - pose[0], dtype=torch.float32)
    return write_subject(path, subject, unseen_scale=unseen_scale, pose=poses, glove=glove)


def posed_streams(tmp_path, **changes):
    paths = [write_gloved_subject(tmp_path / f"s{s}.pt", s, **changes) for s in (1, 2, 3)]
    return DB23.load(paths, device="cpu", with_streams=True, with_stream_glove=True)


def test_a_tensor_file_without_the_stream_glove_is_refused_by_name(tmp_path):
    path = write_gloved_subject(tmp_path / "s1.pt", 1)
    payload = read_tensor_file(path)
    del payload["stream_glove"]
    torch.save(payload, path)  # as an older version wrote it: by hand, as the writer refuses it
    with pytest.raises(InputError, match=r"s1\.pt.*stream_glove.*convert them again"):
        DB23.load([path], device="cpu", with_streams=True, with_stream_glove=True)
    DB23.load([path], device="cpu", with_streams=True)  # what does not decode pose does not need it


def test_each_subjects_glove_is_standardised_by_its_own_training_repetitions_only(tmp_path):
    data = posed_streams(tmp_path / "a")
    train = data.select(repetitions=FOLD["train"])
    norm = glove_normalisation(data.streams, train, len(data.subjects))
    streams = data.streams
    for s in range(3):
        rows = (streams.subject == s) & torch.isin(streams.repetition, torch.tensor(FOLD["train"]))
        z = norm.apply(streams.glove[rows], streams.subject[rows])
        torch.testing.assert_close(z.mean(0), torch.zeros(22), atol=1e-4, rtol=0)
        torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(22), atol=1e-4, rtol=0)
    # A test repetition's glove (repetition 2) changes no statistic; a training repetition's (1) does.
    moved = glove_normalisation(posed_streams(tmp_path / "b", glove_shift={(1, 3, 2): 50.0}).streams, train, 3)
    assert torch.equal(moved.mean, norm.mean) and torch.equal(moved.std, norm.std)
    trained = glove_normalisation(posed_streams(tmp_path / "c", glove_shift={(1, 3, 1): 50.0}).streams, train, 3)
    assert not torch.equal(trained.mean, norm.mean)


def test_a_sensor_without_readings_or_spread_has_no_target(tmp_path):
    data = posed_streams(tmp_path)
    streams = data.streams
    streams.glove[streams.subject == 1, 4] = torch.nan  # subject 1's file lacks sensor 4
    streams.glove[streams.subject == 2, 7] = 3.0  # subject 2's sensor 7 never moves
    norm = glove_normalisation(streams, data.select(repetitions=FOLD["train"]), 3)
    assert not norm.usable[1, 4] and not norm.usable[2, 7] and norm.usable.sum() == 3 * 22 - 2
    z = norm.apply(streams.glove, streams.subject)
    assert z[streams.subject == 1, 4].isnan().all() and z[streams.subject == 2, 7].isnan().all()
    assert torch.isfinite(z[streams.subject == 0]).all()


def test_a_subjects_descriptions_are_the_other_subjects_standardised_glove(tmp_path):
    data = posed_streams(tmp_path / "a")
    train = data.select(repetitions=FOLD["train"])
    norm = glove_normalisation(data.streams, train, 3)
    described = pose_descriptions(data.streams, norm, train, len(CLASSES))
    streams = data.streams
    z = norm.apply(streams.glove, streams.subject)
    timely = torch.isin(streams.repetition, torch.tensor(FOLD["train"]))
    for s in range(3):
        for c in (0, 5):
            rows = timely & (streams.subject != s) & (streams.classes == c)
            torch.testing.assert_close(described[s, c], z[rows].mean(0), atol=1e-5, rtol=1e-5)
    # Subject 0's own glove of A5, in a training repetition, describes A5 to the others and never to subject 0.
    moved = posed_streams(tmp_path / "b", glove_shift={(1, 5, 1): 30.0})
    norm_moved = glove_normalisation(moved.streams, train, 3)
    norm_moved = type(norm_moved)(norm.mean, norm.std, norm.usable)  # the same statistics: only the cell differs
    again = pose_descriptions(moved.streams, norm_moved, train, len(CLASSES))
    shifted = torch.tensor([0, 1, 2])[(described[:, 5] != again[:, 5]).any(1)].tolist()
    assert 0 not in shifted and shifted  # write_gloved_subject's subject 1 is index 0


def pose_run(tmp_path, name, fold=FOLD, **changes):
    paths = [write_gloved_subject(tmp_path / name / f"s{s}.pt", s, **changes) for s in (1, 2, 3)]
    out = tmp_path / name / "out"
    train_fold(paths, "pose", POSE_MODEL, ARCHITECTURE, "zs", fold, settings_of(), 0, out, "cpu")
    return out


@pytest.mark.slow
def test_a_pose_decoder_learns_the_glove_and_logits_keep_its_poses(tmp_path):
    out = pose_run(tmp_path, "a")
    logits = read_logits(out / "logits.pt")
    pose, glove = logits["pose"], logits["glove"]
    assert pose.shape == glove.shape == (len(logits["label"]), 22)
    correlation = torch.stack([torch.corrcoef(torch.stack((pose[:, k], glove[:, k])))[0, 1] for k in range(22)])
    assert correlation.mean() > 0.5  # the decoded pose follows the glove on held-out repetitions
    assert logits["pose_descriptions"].shape == (3, len(CLASSES), 22)
    saved = load_model_file(out / "model.pt")
    assert saved["model_config"]["pose_weight"] == 1.0 and saved["network"].pose_head is not None
    assert digest(out / "model.pt") == digest(pose_run(tmp_path, "b") / "model.pt")  # CPU reruns: the same bits
    evaluate_pose_decoding(out / "logits.pt", tmp_path / "pose_decoding.tsv")
    table = pd.read_csv(tmp_path / "pose_decoding.tsv", sep="\t")
    assert sorted(set(table["set"])) == ["rest", "seen"] and len(table) == 6  # no unseen gesture in this fold
    assert (table.loc[table["set"] == "seen", "mse"] < table.loc[table["set"] == "seen", "mean_pose_mse"]).all()


@pytest.mark.slow
def test_the_head_never_reads_a_held_out_gestures_emg_or_glove(tmp_path):
    """A zero-shot fold's pose decoder: the held-out gesture's EMG fifty times louder, or its glove moved in a
    training repetition, trains the same weights; its glove there still describes it (to the other subjects)."""
    fold = {**FOLD, "unseen": ["A5"]}
    plain = pose_run(tmp_path, "plain", fold)
    louder = pose_run(tmp_path, "louder", fold, unseen_scale=50.0)
    moved = pose_run(tmp_path, "moved", fold, glove_shift={(1, 5, 1): 30.0})
    assert digest(plain / "model.pt") == digest(louder / "model.pt") == digest(moved / "model.pt")
    payloads = [read_logits(run / "logits.pt") for run in (plain, louder, moved)]
    described = [payload["pose_descriptions"] for payload in payloads]
    assert torch.equal(described[0], described[1])  # no one's EMG describes a class
    assert not torch.equal(described[0][1:, 5], described[2][1:, 5])
    torch.testing.assert_close(described[0][0], described[2][0])  # subject 1's own glove never describes A5 to it
    # So subject 1's frames are decided by its decoded pose the same, whatever its own glove of A5 in training.
    own = [pose_matching(payload)["logits"][payload["subject"] == 0] for payload in (payloads[0], payloads[2])]
    torch.testing.assert_close(own[0], own[1])


def hand_worked_payload() -> dict:
    """Two subjects, rest + A1 (seen) + A2 (unseen), four frames of each per subject: the decoded pose is 2 × the
    glove + 1 on sensor 0 (r = 1), minus the glove on sensor 1 (r = -1); sensor 2 never moves (no r); sensor 3 has
    no target for subject 1."""
    label = torch.tensor([0, 1, 2]).repeat_interleave(4).repeat(2)
    subject = torch.tensor([0, 1]).repeat_interleave(12)
    glove = torch.zeros(24, 22)
    glove[:, :2] = torch.arange(24.0)[:, None] % 4
    glove[:, 4:] = 1.0
    glove[subject == 1, 3] = torch.nan
    pose = glove.nan_to_num().clone()
    pose[:, 0] = 2 * glove[:, 0] + 1
    pose[:, 1] = -glove[:, 1]
    leading = {"model": "m", "adabn": True, "adaptation": "cross_fitted", "fold": "zs", "window": "onset"}
    classes, subjects = ["rest", "A1", "A2"], ["db1/s1", "db1/s2"]
    return leading | {"label": label, "subject": subject, "pose": pose, "glove": glove, "classes": classes,
                      "subjects": subjects, "unseen": ["A2"]}  # fmt: skip


def test_the_pose_table_scores_each_subjects_sets_apart_in_standardised_units():
    from contrastive_prosthetics.evaluation.pose_decoding import pose_decoding_table

    table = pose_decoding_table(hand_worked_payload())
    assert table[["subject", "set"]].values.tolist() == [
        [s, name] for s in ("db1/s1", "db1/s2") for name in ("seen", "unseen", "rest")
    ]
    assert (table["frames"] == 4).all()
    assert (table["correlation_1"] == 1.0).all() and (table["correlation_2"] == -1.0).all()
    assert table["correlation_3"].isna().all() and table["correlation_4"].isna().iloc[3:].all()
    # Errors on sensors 0 and 1 only: (g + 1)² and (2g)² for g = 0..3, over 22 sensors (21 without a target).
    errors = sum((g + 1) ** 2 + (2 * g) ** 2 for g in range(4))
    assert table["mse"].tolist() == pytest.approx([errors / (4 * 22)] * 3 + [errors / (4 * 21)] * 3)
    truths = sum(2 * g**2 for g in range(4)) + 4 * 18  # sensors 0, 1 and the 18 at 1.0
    assert table["mean_pose_mse"].iloc[0] == pytest.approx(truths / (4 * 22))
    assert table["mean_correlation"].tolist() == pytest.approx([0.0] * 6)  # +1 and -1; the rest have no spread


def test_a_logits_file_without_decoded_poses_is_refused_by_name():
    from contrastive_prosthetics.evaluation.pose_decoding import pose_decoding_table

    payload = hand_worked_payload()
    del payload["pose"]
    with pytest.raises(InputError, match=r"m/zs: its logits.pt holds no decoded pose.*pose_decoder"):
        pose_decoding_table(payload)


def test_pose_matching_decides_the_class_whose_description_is_nearest_over_the_sensors_described():
    from contrastive_prosthetics.evaluation.zero_shot import pose_matching

    descriptions = torch.zeros(2, 3, 22)
    descriptions[:, 1, 0], descriptions[:, 2, 0] = 2.0, -2.0
    descriptions[0, :, 5] = torch.nan  # subject 0: nobody described sensor 5, which then takes no part
    descriptions[1, 2] = torch.nan  # subject 1: class 2 has no description, and is never chosen
    pose = torch.zeros(4, 22)
    pose[:, 0] = torch.tensor([1.8, -1.5, 0.1, -1.9])
    pose[0, 5] = 100.0  # far off on the sensor subject 0 lacks: no matter
    payload = {"pose": pose, "subject": torch.tensor([0, 0, 1, 1]), "pose_descriptions": descriptions}
    scores = pose_matching(payload | {"rest_window_logits": torch.zeros(1)})
    assert scores["logits"].argmax(1).tolist() == [1, 2, 0, 0]
    assert "rest_window_logits" not in scores
    torch.testing.assert_close(scores["logits"][0, 1], torch.tensor(-(0.2**2) / 21))


def test_a_pose_decoders_zero_shot_rows_stand_beside_the_class_encoders_on_the_same_windows():
    """test_poses's hand-worked windows: the class encoder decides two of the six unseen gesture windows right and
    two as rest; a decoded pose that is each frame's true class's description decides the four others right, and
    leaves rest where the class encoder decided it (4/6, the same 2/6 as rest)."""
    from test_poses import hand_worked_payload as zero_shot_payload

    from contrastive_prosthetics.evaluation.zero_shot import zero_shot_tables

    def decoded(payload: dict) -> dict:
        descriptions = torch.randn(1, 5, 22, generator=torch.Generator().manual_seed(0))
        pose = descriptions[0, payload["label"]]
        return payload | {"pose": pose, "glove": pose, "pose_descriptions": descriptions}

    tables = zero_shot_tables(decoded(zero_shot_payload()), decoded(zero_shot_payload(True)), 2, trials=2, seed=0)
    table = tables["zero_shot"].query("subject == 'all'").set_index(["set", "decided_by"])  # the pooled rows
    assert table.loc[("unseen", "class_encoder"), "gesture_accuracy"] == pytest.approx(1 / 3)
    assert table.loc[("unseen", "pose_decoder"), "gesture_accuracy"] == pytest.approx(2 / 3)
    as_rest = table.xs("unseen")["gesture_windows_as_rest"]
    assert as_rest["pose_decoder"] == as_rest["class_encoder"] == pytest.approx(1 / 3)
    assert table.loc[("unseen", "pose_decoder"), "oracle_gesture_accuracy"] == 1.0
    assert len(table) == 6 and set(tables["zero_shot_confusion"]["set"]) == {"unseen", "seen", "all"}
    assert len(tables["zero_shot_confusion"]) == len(zero_shot_tables(zero_shot_payload(), zero_shot_payload(True),
                                                                      2, 2, 0)["zero_shot_confusion"])  # fmt: skip


def test_the_pose_decoder_moves_where_the_class_encoder_does_and_picks_the_gesture_by_pose():
    """Frame 0: the class encoder says rest, the pose says gesture 1: rest. Frame 1: the class encoder says gesture
    2, the pose sits on rest's description: the nearest gesture's (1), never rest. Frame 2: both say gesture 2."""
    from contrastive_prosthetics.evaluation.zero_shot import rest_gated

    label = torch.tensor([0, 1, 2])
    pose = {"logits": torch.tensor([[-4.0, -0.1, -9.0], [-0.0, -1.0, -3.0], [-5.0, -2.0, -0.5]]), "label": label,
            "classes": ["rest", "g1", "g2"]}  # fmt: skip
    encoder = {"logits": torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 2.0], [0.0, 0.0, 1.0]]), "label": label,
               "classes": ["rest", "g1", "g2"]}  # fmt: skip
    assert rest_gated(pose, encoder)["logits"].argmax(1).tolist() == [0, 1, 2]
    assert pose["logits"][1, 0] == 0.0  # the pose decoder's own scores are left as they were
    with pytest.raises(AssertionError, match="different frames"):
        rest_gated(pose, encoder | {"label": torch.tensor([0, 0, 2])})
