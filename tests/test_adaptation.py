"""Where AdaBN statistics come from: never the scored frames, never chosen by label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.data import tensor_file
from contrastive_prosthetics.data.ninapro import class_names
from contrastive_prosthetics.learning import adaptation, dataset, personalise
from contrastive_prosthetics.learning.dataset import DB23
from contrastive_prosthetics.learning.models import ContrastiveModel, ModelConfig

CLASSES = class_names(["A"])[:5]
CONFIG = ModelConfig(kind="contrastive", n_channels=4, n_classes=5, embedding_dim=4, conv_maps=2, width=8, depth=1)


def subject_file(path, subject: int, shuffle_labels: bool = False) -> Path:
    """A converted subject through the tensor file's writer: its segments back to back as its stream."""
    rng = np.random.default_rng(subject)
    emg = rng.lognormal(0, 0.5, (len(CLASSES), 6, 10, 4)).astype(np.float32)
    valid = torch.ones(len(CLASSES), 6, dtype=torch.bool)
    payload = tensor_file.payload_from_segments(
        emg, valid, classes=CLASSES, database="db2", subject=subject, glove_mask=torch.zeros(22, dtype=torch.bool)
    )
    if shuffle_labels:  # labels the adaptation must not read
        payload["stream_class"] = payload["stream_class"][torch.randperm(len(payload["stream_class"]))]
    tensor_file.write_tensor_file(payload, path)
    return path


def load(tmp_path, shuffle_labels=False) -> DB23:
    paths = [subject_file(tmp_path / f"s{s}.pt", s, shuffle_labels) for s in (1, 2)]
    return DB23.load(paths, device="cpu", with_streams=True)


def scored(tmp_path, how: str, shuffle_labels=False):
    data = load(tmp_path, shuffle_labels)
    torch.manual_seed(0)
    model = ContrastiveModel(CONFIG)
    test = data.select(repetitions=[2, 5])
    pool = {0: [2, 5], 1: [2, 5]}
    return adaptation.predict(model, data, test, adabn=True, adaptation=how, pool=pool, batch=64)


def test_no_label_reaches_adaptation(tmp_path):
    plain = scored(tmp_path / "a", "cross_fitted")
    shuffled = scored(tmp_path / "b", "cross_fitted", shuffle_labels=True)
    assert torch.equal(plain[0], shuffled[0]) and torch.equal(plain[1], shuffled[1])


def test_no_scored_frame_is_in_the_adaptation_set(tmp_path, monkeypatch):
    data = load(tmp_path)
    seen = []
    real = data.stream_frames

    def recording(subject, repetitions, context=1, limit=None):
        seen.append((subject, sorted(repetitions)))
        return real(subject, repetitions, context, limit)

    monkeypatch.setattr(data, "stream_frames", recording)
    model = ContrastiveModel(CONFIG)
    test = data.select(repetitions=[2, 5])
    logits, index = adaptation.predict(
        model, data, test, adabn=True, adaptation="cross_fitted", pool={0: [2, 5], 1: [2, 5]}, batch=64
    )
    # Each subject's repetition 2 is adapted on repetition 5 alone, and repetition 5 on repetition 2 alone.
    assert seen == [(0, [5]), (0, [2]), (1, [5]), (1, [2])]
    streams = data.streams
    for subject, repetitions in seen:
        frames = ((streams.subject == subject) & torch.isin(streams.repetition, torch.tensor(repetitions))).nonzero()
        scored_rep = ({2, 5} - set(repetitions)).pop()
        scored_frames = streams.segment_start[subject, :, scored_rep - 1][:, None] + torch.arange(10)
        assert not torch.isin(frames.squeeze(1), scored_frames.reshape(-1)).any()
    assert len(logits) == 2 * 5 * 2 * 10 and (index[:, 2] + 1).unique().tolist() == [2, 5]


def test_scored_frames_protocol_adapts_on_what_it_scores_and_differs(tmp_path):
    cross = scored(tmp_path / "a", "cross_fitted")
    old = scored(tmp_path / "b", "scored_frames")
    assert torch.equal(cross[1], old[1]) and not torch.allclose(cross[0], old[0])


def test_cross_fitting_with_one_scored_repetition_is_a_clear_error(tmp_path):
    data = load(tmp_path)
    model = ContrastiveModel(CONFIG)
    with pytest.raises(InputError, match="needs another repetition"):
        adaptation.predict(
            model, data, data.select(repetitions=[2]), adabn=True, adaptation="cross_fitted", pool={0: [2]}, batch=64
        )


def test_a_frame_limit_takes_evenly_spaced_frames_of_the_same_stretch(tmp_path):
    data = load(tmp_path)
    every = data.stream_frames(0, [5])
    some = data.stream_frames(0, [5], limit=10)
    assert len(every) == 5 * 10 and len(some) == 10
    assert torch.equal(some[0], every[0]) and torch.equal(some[-1], every[-1])
    assert all((row == every).all(1).any() for row in some)  # a subset of the same frames


def test_a_calibration_recording_is_thinned_by_the_same_rule_as_a_subjects_stream(tmp_path):
    """personalise's AdaBN reads at most calibration.adaptation_frames frames of the recording, chosen as
    DB23.stream_frames(limit=) chooses a subject's: one function, not two copies that could drift apart."""
    assert personalise.evenly_spaced is dataset.evenly_spaced
    every = load(tmp_path).stream_frames(0, [5])
    assert torch.equal(dataset.evenly_spaced(every, 10), load(tmp_path).stream_frames(0, [5], limit=10))
    assert dataset.evenly_spaced(every, len(every)) is every and dataset.evenly_spaced(every, None) is every


def test_batch_statistics_score_each_shuffled_batch_with_its_own_statistics(tmp_path):
    data = load(tmp_path)
    torch.manual_seed(0)
    model = ContrastiveModel(CONFIG)
    test = data.select(repetitions=[2, 5])
    options = {"adabn": True, "pool": {}, "batch": 64, "statistics_batch": 20}
    first = adaptation.predict(model, data, test, adaptation="batch_statistics", seed=0, **options)
    again = adaptation.predict(model, data, test, adaptation="batch_statistics", seed=0, **options)
    other = adaptation.predict(model, data, test, adaptation="batch_statistics", seed=1, **options)
    scored = adaptation.predict(model, data, test, adaptation="scored_frames", **options)
    assert torch.equal(first[1], scored[1])  # the same frames, in the same order
    assert torch.equal(first[0], again[0])  # seeded
    assert not torch.allclose(first[0], other[0])  # a frame's scores depend on the batch it fell in
    assert not torch.allclose(first[0], scored[0])
