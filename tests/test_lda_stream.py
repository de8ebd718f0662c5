"""The LDA baseline on what the controller sees: fitted on the stream frames the networks train on, its rest bias
calibrated on validation streams only, and scored on the test streams by the stream evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train import CLASSES, FOLD, write_subject

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.learning import lda
from contrastive_prosthetics.learning.dataset import DB23
from contrastive_prosthetics.learning.folds import fold_selections
from contrastive_prosthetics.learning.model_file import read_model_file
from contrastive_prosthetics.learning.stream_sampling import guard_mask, stream_training_positions

STREAM_TRAINING = {"frames": "stream", "guard_ms": 30, "rest_false_activation_target": 0.1, "calibration_vote_ms": 0}


def subjects(tmp_path) -> list:
    return [write_subject(tmp_path / f"s{s}.pt", s) for s in (1, 2, 3)]


def fit(tmp_path, training=STREAM_TRAINING):
    out = tmp_path / "out"
    lda.train_lda_fold(subjects(tmp_path), "lda", "reps-2-5", FOLD, 0, out, training=training)
    return out


def test_lda_fits_the_training_repetitions_stream_frames_outside_the_guard_band(tmp_path, monkeypatch):
    fitted = []
    real_fit = lda.fit_lda
    monkeypatch.setattr(lda, "fit_lda", lambda x, labels: fitted.append(len(x)) or real_fit(x, labels))
    out = fit(tmp_path)
    data = DB23.load(subjects(tmp_path), device="cpu", with_features=True, with_streams=True)
    positions = stream_training_positions(data, fold_selections(data, FOLD, "f").train, guard_frames=3)
    streams = data.streams
    assert set(streams.repetition[positions].tolist()) == {1, 3, 4}  # FOLD's training repetitions only
    assert not guard_mask(streams.classes, streams.subject, 3)[positions].any()
    assert 0 < len(positions) < int(torch.isin(streams.repetition, torch.tensor([1, 3, 4])).sum())
    assert sum(fitted) == len(positions)  # one LDA per subject, on exactly those frames
    assert read_model_file(out / "model.pt")["frames"] == "stream"


def test_segment_training_still_fits_the_clean_segments(tmp_path, monkeypatch):
    fitted = []
    real_fit = lda.fit_lda
    monkeypatch.setattr(lda, "fit_lda", lambda x, labels: fitted.append(len(x)) or real_fit(x, labels))
    out = fit(tmp_path, training={"frames": "segments"})
    assert sum(fitted) == 3 * len(CLASSES) * 3 * 20  # subjects x classes x training repetitions x frames
    saved = read_model_file(out / "model.pt")
    assert saved["frames"] == "segments" and saved["rest_bias"] == 0.0 and saved["calibration"] is None


def test_the_rest_bias_is_calibrated_on_validation_streams_only(tmp_path, monkeypatch):
    scored = []
    real_scores = lda.stream_scores
    monkeypatch.setattr(
        lda,
        "stream_scores",
        lambda model, data, positions: scored.append(positions) or real_scores(model, data, positions),
    )
    out = fit(tmp_path)
    data = DB23.load(subjects(tmp_path), device="cpu", with_streams=True)
    repetitions = data.streams.repetition[torch.from_numpy(np.concatenate(scored))]
    assert set(repetitions.tolist()) == {6}  # FOLD's validation repetition: no test frame reaches the calibration
    calibration = read_model_file(out / "model.pt")["calibration"]
    assert calibration["target"] == 0.1 and calibration["false_activation"] <= 0.1
    assert calibration["frames"] == 3 * 20  # rest's validation frames: one repetition of 20 frames per subject


def test_stream_evaluation_scores_an_lda_model_with_its_rest_bias(tmp_path):
    from contrastive_prosthetics.evaluation.stream import evaluate_stream

    out = fit(tmp_path)
    saved = read_model_file(out / "model.pt")
    paths = subjects(tmp_path)
    data = DB23.load(paths, device="cpu", with_features=True, with_streams=True)
    test_pool = fold_selections(data, FOLD, "f").test_pool
    scored, seconds = lda.lda_stream_logits(saved, data, test_pool, timed_frames=5)
    rest = CLASSES.index("rest")
    for subject, positions, logits in scored:
        model = saved["estimators"][data.subject_names[subject]]
        raw = lda.stream_scores(model, data, positions)
        assert torch.allclose(logits[:, rest] - raw[:, rest], torch.tensor(saved["rest_bias"]))
        assert torch.equal(logits[:, 1:], raw[:, 1:])
        assert set(data.streams.repetition[torch.from_numpy(positions)].tolist()) <= {2, 5}
    assert seconds > 0
    settings = dict(subset_sizes=[2], trials=3, subset_trials=3, vote_ms=[0, 50], seed=0, adaptation_limit=1000)
    table = evaluate_stream(out / "model.pt", paths, "reps-2-5", FOLD, tmp_path / "eval", **settings)
    assert set(table.model) == {"lda"} and set(table.adaptation) == {"none"}
    pooled = table[(table.subject == "all") & (table.k == len(CLASSES) - 1) & (table.vote_ms == 0)]
    assert len(pooled) == 3 and pooled.rest_false_activation.between(0.0, 1.0).all()  # one row per subset drawn
    assert (tmp_path / "eval" / "stream_metrics.tsv").exists()


def test_a_tensor_file_without_stream_features_is_refused_by_name(tmp_path):
    path = write_subject(tmp_path / "s1.pt", 1)
    payload = torch.load(path, weights_only=False)
    del payload["stream_features"]
    torch.save(payload, path)
    with pytest.raises(InputError, match=r"s1\.pt.*stream_features.*convert them again"):
        DB23.load([path], device="cpu", with_features=True, with_streams=True)
    DB23.load([path], device="cpu", with_streams=True)  # a network's stream evaluation does not need them
