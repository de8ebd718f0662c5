"""The onset gate: an amplitude threshold with hysteresis and a dwell, set from the user's rest, in front of the
classifier; the controller, the exported model and the stream evaluation's arithmetic decide alike with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PREPROCESS
from test_realtime import CLASSES, network_file, tiny_model

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.data.ninapro import DB2
from contrastive_prosthetics.learning.decisions import allowed_classes, decide
from contrastive_prosthetics.learning.inference import FrameScorer
from contrastive_prosthetics.learning.onset_gate import (
    GATE_MARGIN,
    OnsetGate,
    frame_amplitude,
    gate_states,
    gated,
    rest_level,
)
from contrastive_prosthetics.learning.stream_scoring import class_bias
from contrastive_prosthetics.realtime.controller import Controller, FrameMaker

GATE = {"on_ratio": 3.0, "off_ratio": 2.0, "dwell_ms": 30, "rest_s": 0.5}


def test_the_gate_opens_after_the_dwell_above_on_and_closes_after_the_dwell_below_off():
    gate = OnsetGate(on_ratio=3.0, off_ratio=2.0, dwell_frames=2, rest_frames=1)
    ratio = np.array([1, 4, 1, 4, 4, 2.5, 1.5, 2.5, 1.5, 1.5, 5, 5])
    states = gate_states(ratio, gate, level=1.0, starts=np.array([0]))
    # a single frame above on does not open it; two do; between off and on it stays open (hysteresis); two
    # frames below off close it.
    assert states.tolist() == [False, False, False, False, True, True, True, True, True, False, False, True]
    restarted = gate_states(ratio, gate, level=1.0, starts=np.array([0, 5]))
    assert restarted[5:].tolist() == [False, False, False, False, False, False, True]  # closed again at a restart


def test_a_closed_gate_decides_rest_and_an_open_one_leaves_the_scores_alone():
    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0]])
    out = gated(logits, np.array([False, True]), rest=0)
    assert out.argmax(1).tolist() == [0, 1] and torch.equal(out[1], logits[1])
    assert out[0, 1].item() == pytest.approx(5.0 - GATE_MARGIN)


def test_the_rest_level_comes_from_the_first_frames_and_a_silent_or_short_rest_is_refused():
    gate = OnsetGate(3.0, 2.0, 1, rest_frames=4)
    frames = torch.tensor([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [9.0, 9.0], [100.0, 100.0]])
    live = torch.tensor([True, True])
    assert rest_level(frames, live, gate, "s") == pytest.approx(2.0)  # median of 2, 2, 2, 9
    assert frame_amplitude(frames, torch.tensor([True, False])).tolist() == [1.0, 2.0, 3.0, 9.0, 100.0]
    with pytest.raises(InputError, match=r"rec: 2 frames of rest, the onset gate needs 4"):
        rest_level(frames[:2], live, gate, "rec")
    with pytest.raises(InputError, match=r"rec: the rest amplitude is 0.0.*onset_gate: null"):
        rest_level(torch.zeros(5, 2), live, gate, "rec")


def bursts(seed: int) -> np.ndarray:
    """2 kHz EMG: 0.5 s of rest, then bursts of activity between quiet stretches (4 s in all)."""
    rng = np.random.default_rng(seed)
    scale = np.full(8000, 1e-5)
    for start in (2000, 4400, 6400):
        scale[start : start + 1000] = 2e-4
    return rng.normal(0, 1, (8000, DB2.n_channels)) * scale[:, None]


def test_the_controller_the_export_and_the_offline_arithmetic_decide_alike_with_the_gate(tmp_path):
    pytest.importorskip("onnxruntime")
    from contrastive_prosthetics.realtime.export import export_model, exported_controller

    emg = bursts(0)
    model, normalisation = tiny_model(DB2.n_channels)
    gestures = ["B1", "B2", "B3"]
    gate = OnsetGate.from_config(GATE, 100.0)
    path = network_file(tmp_path / "model.pt", model, normalisation, rest_bias=0.3, onset_gate=gate.as_dict())
    from_file = Controller.from_model_file(path, DB2, gestures, vote_frames=5, gate_rest=emg).push(emg)
    self_set = Controller.from_model_file(path, DB2, gestures, vote_frames=5).push(emg)  # rest from its first frames
    export_model(path, tmp_path / "deploy")
    exported = exported_controller(tmp_path / "deploy", DB2, gestures, vote_frames=5, gate_rest=emg).push(emg)

    live = torch.ones(DB2.n_channels, dtype=torch.bool)
    frames = torch.from_numpy(FrameMaker(DB2.sampling_rate_hz, PREPROCESS, False, DB2.n_channels).push(emg))
    scores = FrameScorer(model, normalisation, live, len(CLASSES), bias=class_bias(CLASSES, 0.3))(frames, batch=256)
    level = rest_level(frames, live, gate, "emg")
    states = gate_states(frame_amplitude(frames, live), gate, level, np.array([0]))
    offline = decide(gated(scores, states, 0), allowed_classes(CLASSES, gestures), 5)
    assert from_file == exported == self_set == [CLASSES[i] for i in offline.tolist()]
    assert 0 < states.sum() < len(states)  # the bursts open it, the quiet stretches close it
    closed = ~torch.from_numpy(states)
    each_frame = decide(gated(scores, states, 0), allowed_classes(CLASSES, gestures), 0)  # before the vote
    assert (each_frame[closed] == 0).all()  # closed: rest, whatever the classifier says ...
    assert (decide(scores, allowed_classes(CLASSES, gestures), 0)[closed] != 0).any()  # ... which it did not always


def test_the_stream_evaluation_gates_each_stretch_from_the_subjects_rest(tmp_path):
    """with_gate, used by the stream evaluation and the calibration, is the same arithmetic on the stored stream."""
    from types import SimpleNamespace

    from contrastive_prosthetics.learning.stream_scoring import with_gate
    from contrastive_prosthetics.learning.streams import Streams

    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.uniform(0.5, 1.5, (300, 2))).float()
    frames[120:160] *= 10  # one contraction
    streams = Streams(
        frames=frames,
        subject=torch.zeros(300, dtype=torch.long),
        repetition=torch.ones(300, dtype=torch.long),
        classes=torch.zeros(300, dtype=torch.long),
        offset=torch.zeros(1, dtype=torch.long),
        segment_start=torch.full((1, 2, 1), -1),
    )
    data = SimpleNamespace(
        streams=streams, channel_mask=torch.ones(1, 2, dtype=torch.bool), subject_names=["s1"], classes=["rest", "A1"]
    )
    gate = OnsetGate(on_ratio=3.0, off_ratio=2.0, dwell_frames=3, rest_frames=50)
    positions = np.arange(100, 200)
    logits = torch.tensor([[0.0, 1.0]]).repeat(100, 1)
    out = with_gate(logits, data, 0, positions, gate)
    decided = out.argmax(1)
    assert (decided[:22] == 0).all() and (decided[22:60] == 1).all() and (decided[-20:] == 0).all()
    assert torch.equal(with_gate(logits, data, 0, positions, None), logits)
