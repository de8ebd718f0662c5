"""The LDA baseline on what the controller sees: fitted on the stream frames the networks train on, its rest bias
calibrated on validation streams only, and scored on the test streams by the stream evaluation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from test_train import CLASSES, FOLD, TRAINING, settings_of, write_subject

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.data.tensor_file import read_tensor_file
from contrastive_prosthetics.learning import lda
from contrastive_prosthetics.learning.dataset import DB23
from contrastive_prosthetics.learning.folds import fold_selections
from contrastive_prosthetics.learning.model_file import read_model_file
from contrastive_prosthetics.learning.stream_sampling import guard_mask, stream_training_positions

STREAM_TRAINING = settings_of(TRAINING | {"frames": "stream", "guard_ms": 30}, rest_false_activation_target=0.1)


def subjects(tmp_path) -> list:
    return [write_subject(tmp_path / f"s{s}.pt", s) for s in (1, 2, 3)]


def fit(tmp_path, training=STREAM_TRAINING):
    out = tmp_path / "out"
    lda.train_lda_fold(subjects(tmp_path), "lda", "reps-2-5", FOLD, 0, out, training)
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
    out = fit(tmp_path, training=settings_of())
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
    saved = read_model_file(out / "model.pt")
    calibration = saved["calibration"]
    assert calibration["target"] == 0.1 and calibration["bias"] == saved["rest_bias"]
    assert calibration["frames"] == 3 * 20  # rest's validation frames: one repetition of 20 frames per subject
    # The saved bias meets the target on the validation streams (every class allowed, no vote), and is the smallest
    # that does: a little less and more rest frames are decided as gestures than the target allows.
    data = DB23.load(subjects(tmp_path), device="cpu", with_features=True, with_streams=True)
    validation = {subject: [6] for subject in range(3)}

    def false_activation(bias: float) -> float:
        scored, _ = lda.lda_stream_logits(saved | {"rest_bias": bias}, data, validation, timed_frames=0)
        logits = torch.cat([logits for _, _, logits in scored])
        truth = torch.cat([data.streams.classes[torch.from_numpy(positions)] for _, positions, _ in scored])
        rest = CLASSES.index("rest")
        return (logits[truth == rest].argmax(1) != rest).float().mean().item()

    assert false_activation(saved["rest_bias"]) == pytest.approx(calibration["false_activation"])
    assert calibration["false_activation"] <= 0.1
    assert false_activation(saved["rest_bias"] - 1e-3) > 0.1
    assert false_activation(0.0) == pytest.approx(calibration["false_activation_before"])


def test_stream_evaluation_scores_an_lda_model_with_its_rest_bias(tmp_path, monkeypatch):
    from contrastive_prosthetics.evaluation.stream import evaluate_stream

    out = fit(tmp_path)
    saved = read_model_file(out / "model.pt")
    paths = subjects(tmp_path)
    data = DB23.load(paths, device="cpu", with_features=True, with_streams=True)
    test_pool = fold_selections(data, FOLD, "f").test_pool
    calls, ticks = [], iter([0.0, 1.0, 10.0, 12.0, 20.0, 23.0, 30.0, 34.0, 40.0, 45.0])
    real_scores = lda.stream_scores
    monkeypatch.setattr(lda, "stream_scores", lambda *args: calls.append(len(args[2])) or real_scores(*args))
    monkeypatch.setattr(lda, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))  # 1, 2, 3, 4, 5 s
    scored, seconds = lda.lda_stream_logits(saved, data, test_pool, timed_frames=5)
    # The median of five timings of one frame each, then every stretch scored whole.
    assert seconds == 3.0 and calls == [1] * 5 + [len(positions) for _, positions, _ in scored]
    unbiased, _ = lda.lda_stream_logits(saved | {"rest_bias": 0.0}, data, test_pool, timed_frames=0)
    rest = CLASSES.index("rest")
    assert saved["rest_bias"] != 0.0 and len(scored) == len(unbiased) == 3 * 2 * len(CLASSES)  # one per class run
    for (_, positions, logits), (_, same_positions, raw) in zip(scored, unbiased, strict=True):
        assert np.array_equal(positions, same_positions)
        assert torch.allclose(logits[:, rest] - raw[:, rest], torch.tensor(saved["rest_bias"]))
        assert torch.equal(logits[:, 1:], raw[:, 1:])
        assert set(data.streams.repetition[torch.from_numpy(positions)].tolist()) <= {2, 5}
    monkeypatch.undo()
    settings = dict(subset_sizes=[2], trials=3, subset_trials=3, vote_ms=[0, 50], seed=0, adaptation_limit=1000)
    table = evaluate_stream(out / "model.pt", paths, "reps-2-5", FOLD, tmp_path / "eval", **settings)
    assert set(table.model) == {"lda"} and set(table.adaptation) == {"none"}
    pooled = table[(table.subject == "all") & (table.vote_ms == 0)]
    # One row per subset drawn at k = 2; at k = K one: every subset drawn there is the same, every gesture.
    assert pooled.groupby("k").size().to_dict() == {2: 3, len(CLASSES) - 1: 1}
    per_subject = table[table.subject != "all"]
    assert (per_subject.k == len(CLASSES) - 1).all() and (per_subject.trial == 0).all()
    assert len(per_subject) == 3 * 2  # one row per subject and vote
    every = pooled[pooled.k == len(CLASSES) - 1]
    # With every gesture allowed and no vote, each frame's decision is its biased scores' argmax.
    logits = torch.cat([logits for _, _, logits in scored])
    truth = torch.cat([data.streams.classes[torch.from_numpy(positions)] for _, positions, _ in scored])
    decided = logits.argmax(1)
    assert every.accuracy.item() == pytest.approx((decided == truth).float().mean().item())
    rest_decided = decided[truth == rest]
    assert every.rest_false_activation.item() == pytest.approx((rest_decided != rest).float().mean().item())
    assert pd.read_csv(tmp_path / "eval" / "stream_metrics.tsv", sep="\t").shape == table.shape


def test_a_tensor_file_without_stream_features_is_refused_by_name(tmp_path):
    path = write_subject(tmp_path / "s1.pt", 1)
    payload = read_tensor_file(path)
    del payload["stream_features"]
    torch.save(payload, path)  # as an older version wrote it: by hand, as the writer refuses it
    with pytest.raises(InputError, match=r"s1\.pt.*stream_features.*convert them again"):
        DB23.load([path], device="cpu", with_features=True, with_streams=True)
    DB23.load([path], device="cpu", with_streams=True)  # a network's stream evaluation does not need them
