"""The stream evaluation of a zero-shot fold scores each test subject as its segment logits were scored: an unseen
gesture's code from the other training subjects' gloves (learning/poses.py), not the new user's prototypes that
model.pt carries; and it counts the guard band training leaves out on its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train import ARCHITECTURE, CLASSES, TRAINING, settings_of, write_subject

from contrastive_prosthetics.evaluation.stream import evaluate_stream, scored_test_streams, stream_guard, stream_logits
from contrastive_prosthetics.learning.dataset import DB23
from contrastive_prosthetics.learning.folds import fold_selections
from contrastive_prosthetics.learning.logits import read_logits
from contrastive_prosthetics.learning.model_file import read_model_file
from contrastive_prosthetics.learning.stream_sampling import guard_width, stream_training_positions
from contrastive_prosthetics.learning.train import train_fold

UNSEEN = "A5"
# Test repetitions 1 and 6: each class's six repetitions are one run of the stream (test_train's subjects: segments
# of 20 frames back to back in (class, repetition) order), so the test frames hold both ends of every run.
FOLD = {"scheme": "repetitions", "train": [2, 3, 5], "validation": [4], "test": [1, 6]}
ZERO_SHOT = {**FOLD, "unseen": [UNSEEN]}
POSE = {"kind": "contrastive", "adabn": False, "class_encoder": "pose"}
GUARD_MS = 30.0
pytestmark = pytest.mark.slow  # every test reads the pose model the module's fixture trains


def write_own_posed_subject(path, subject: int):
    """test_train's subject with hand poses of its own: each subject's glove differs, so that the prototype others'
    gloves give an unseen gesture is not every training subject's mean."""
    shared = np.random.default_rng(7).normal(0, 10, (len(CLASSES), 1, 22))
    own = np.random.default_rng(100 + subject).normal(0, 10, (len(CLASSES), 1, 22))
    pose = torch.tensor(shared + own, dtype=torch.float32).expand(len(CLASSES), 6, 22).clone()
    pose[0] = 0.0
    return write_subject(path, subject, pose=pose)


@pytest.fixture(scope="module")
def zero_shot_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zero-shot")
    paths = [write_own_posed_subject(folder / f"s{s}.pt", s) for s in (1, 2, 3)]
    settings = settings_of(TRAINING | {"guard_ms": GUARD_MS})  # segments: the guard band only counts in evaluation
    train_fold(paths, "pose", POSE, ARCHITECTURE, "zs", ZERO_SHOT, settings, 0, folder / "out", "cpu")
    return folder / "out", paths


def test_zero_shot_stream_scores_are_the_segment_logits_at_the_segments_frames(zero_shot_model):
    """Each test segment is a slice of the stream (test_train's subjects): the stream evaluation's scores of those
    frames are logits.pt's, unseen gesture included; the codes model.pt carries would score the unseen gesture
    otherwise."""
    out, paths = zero_shot_model
    saved, raw, scored, _ = scored_test_streams(out / "model.pt", paths, "zs", ZERO_SHOT, limit=1000)
    assert saved["rest_bias"] == 0.0 and saved["onset_gate"] is None  # the stream's scores are the network's own
    at = {int(p): row for _, positions, logits in scored for p, row in zip(positions, logits, strict=True)}
    segments = read_logits(out / "logits.pt")
    start = raw.streams.segment_start[segments["subject"], segments["label"], segments["repetition"] - 1]
    positions = (start + segments["frame"]).tolist()
    stream = torch.stack([at[p] for p in positions])
    torch.testing.assert_close(stream, segments["logits"], rtol=1e-4, atol=1e-4)
    # The stored codes (a new user's prototypes) score the unseen gesture differently: what the stream used to do.
    unseen = CLASSES.index(UNSEEN)
    selections = fold_selections(raw, ZERO_SHOT, "zs")
    stored, _ = stream_logits(saved, raw, raw.normalised(saved["normalisation_"]), selections.test_pool, 1000)
    stored_at = {int(p): row for _, positions, logits in stored for p, row in zip(positions, logits, strict=True)}
    new_user = torch.stack([stored_at[p] for p in positions])
    assert not torch.allclose(new_user[:, unseen], segments["logits"][:, unseen], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(new_user[:, :unseen], segments["logits"][:, :unseen], rtol=1e-4, atol=1e-4)


def test_the_stored_codes_must_be_the_training_cells_prototypes(zero_shot_model, tmp_path):
    from contrastive_prosthetics.core.errors import InputError

    out, paths = zero_shot_model
    edited = read_model_file(out / "model.pt")
    edited["pose_prototypes"] = edited["pose_prototypes"] + 1.0
    torch.save(edited, tmp_path / "model.pt")  # an edited file: by hand
    with pytest.raises(InputError, match=r"model\.pt: its pose prototypes differ.*train again"):
        scored_test_streams(tmp_path / "model.pt", paths, "zs", ZERO_SHOT, limit=1000)


def test_the_guard_band_counted_apart_is_what_training_leaves_out(zero_shot_model, tmp_path):
    """stream_metrics.tsv: of each row's frames, guard_frames lie in training's guard band (its stream positions:
    every test frame stream_training_positions would leave out for the guard alone); per subject they add up to the
    pooled count, and accuracy is their weighted mean with settled_accuracy."""
    out, paths = zero_shot_model
    guard_ms = GUARD_MS  # the model's, from model.pt
    settings = dict(subset_sizes=[2], trials=2, subset_trials=2, vote_ms=[0, 50], seed=0, adaptation_limit=1000)
    table = evaluate_stream(out / "model.pt", paths, "zs", ZERO_SHOT, tmp_path, **settings)
    raw = DB23.load(paths, device="cpu", with_streams=True)
    streams = raw.streams
    test = torch.isin(streams.repetition, torch.tensor(FOLD["test"]))
    every = fold_selections(raw, FOLD, "f").test
    width = guard_width(guard_ms, raw.frame_rate_hz)
    kept = torch.zeros(len(test), dtype=torch.bool)
    kept[stream_training_positions(raw, every, width)] = True
    left_out = test & ~kept
    assert torch.equal(torch.from_numpy(stream_guard(raw, guard_ms))[test], left_out[test])
    assert left_out.sum() == 3 * len(CLASSES) * 2 * width  # per subject and class: rep 1's start, rep 6's end
    full = table[(table.k == len(CLASSES) - 1) & (table.trial == 0) & (table.vote_ms == 0)]
    pooled, subjects = full[full.subject == "all"], full[full.subject != "all"]
    assert (pooled.guard_frames == int(left_out.sum())).all() and (table.guard_ms == guard_ms).all()
    assert subjects.guard_frames.sum() == pooled.guard_frames.iloc[0]
    weighted = table.guard_accuracy * table.guard_frames + table.settled_accuracy * (table.frames - table.guard_frames)
    np.testing.assert_allclose(weighted / table.frames, table.accuracy)
    assert list(table.columns[-4:]) == ["guard_ms", "guard_frames", "guard_accuracy", "settled_accuracy"]


def test_without_its_oracle_the_zero_shot_stream_table_leaves_the_oracle_columns_empty(zero_shot_model, tmp_path):
    """Outside the pipeline a zero-shot model's stream evaluation runs without its oracle: zero_shot_stream.tsv has
    every set's rows, pooled and per test subject, and empty oracle columns."""
    from contrastive_prosthetics.evaluation.tables import read_table

    out, paths = zero_shot_model
    settings = dict(subset_sizes=[2], trials=1, subset_trials=2, vote_ms=[0, 50], seed=0, adaptation_limit=1000)
    evaluate_stream(out / "model.pt", paths, "zs", ZERO_SHOT, tmp_path, **settings)
    table = read_table(tmp_path / "zero_shot_stream.tsv")
    assert len(table) == 3 * (1 + 3) * 2 and set(table.query("set == 'unseen'")["gestures"]) == {UNSEEN}
    assert table["movement_accuracy"].notna().all() and table["oracle_movement_accuracy"].isna().all()
