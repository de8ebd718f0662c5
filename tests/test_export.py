"""Export (ONNX, TorchScript) with the normalisation baked in, and replay through the controller."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PREPROCESS, check_figure, emg_for, first_window, make_protocol, write_mat
from test_realtime import lda_file, network_file

from contrastive_prosthetics.data.convert import convert_subject
from contrastive_prosthetics.data.ninapro import DB1, class_names
from contrastive_prosthetics.learning.dataset import Normalisation
from contrastive_prosthetics.learning.model_file import load_model_file
from contrastive_prosthetics.learning.models import ModelConfig, build_model
from contrastive_prosthetics.realtime.controller import Controller
from contrastive_prosthetics.realtime.export import (
    DeployedNetwork,
    OnnxNetwork,
    export_model,
    exported_controller,
)
from contrastive_prosthetics.realtime.replay import controller_for, replay_to_file
from contrastive_prosthetics.report.replay_figure import timeline_figure

pytest.importorskip("onnxruntime")
CLASSES = class_names(["A"])


def model_file(path, frames: torch.Tensor, context: int = 1) -> torch.nn.Module:
    """model.pt, through training's writer, of an untrained network with a normalisation fitted on ``frames``."""
    torch.manual_seed(0)
    config = ModelConfig("contrastive", frames.shape[-1], len(CLASSES), 8, 8, 32, 2, 0.0, context)
    model = build_model(config).eval()
    epsilon = 0.01 * frames.median(0).values.clamp(min=1e-6)
    logs = torch.log(frames + epsilon)
    normalisation = Normalisation(logs.mean(0), logs.std(0), True, epsilon)
    network_file(path, model, normalisation, classes=CLASSES)
    return model


def db1_recording(tmp_path):
    protocol = make_protocol([1, 2, 3], DB1.repetitions, movement_samples=150, rest_samples=130)
    return write_mat(tmp_path / "S1_A1_E1.mat", protocol, emg_for(protocol, DB1.n_channels, rectified=True))


def check_exported_network_matches(tmp_path, frames: torch.Tensor, context: int) -> None:
    model_file(tmp_path / "model.pt", frames, context)
    paths = export_model(tmp_path / "model.pt", tmp_path / "deploy")
    saved = load_model_file(tmp_path / "model.pt")
    reference = DeployedNetwork(saved["network"], saved["normalisation_"], torch.ones(10, dtype=torch.bool))
    inputs = (
        frames
        if context == 1
        else frames[torch.arange(len(frames))[:, None] + torch.arange(1 - context, 1).clamp(min=0)]
    )
    with torch.no_grad():
        expected = reference.eval()(inputs)
    onnx = OnnxNetwork(paths["onnx"])(inputs)
    scripted = torch.jit.load(str(paths["torchscript"]))(inputs)
    np.testing.assert_allclose(onnx.numpy(), expected.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(scripted.detach().numpy(), expected.numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("context", [1, 3])
def test_onnx_and_torchscript_equal_pytorch_on_synthetic_frames(tmp_path, context):
    tensors = first_window(convert_subject(DB1, 1, {"A": str(db1_recording(tmp_path))}, ["A"], PREPROCESS))
    check_exported_network_matches(tmp_path, tensors["stream"][:2000], context)


@pytest.mark.realdata
def test_onnx_equals_pytorch_to_1e5_on_real_db1_frames(tmp_path, db1_dir):
    source = db1_dir / "s1" / "S1_A1_E1.mat"
    stream = convert_subject(DB1, 1, {"A": str(source)}, ["A"], PREPROCESS)["stream"]
    check_exported_network_matches(tmp_path, stream[::10], context=1)  # every 10th of 101 k frames


def test_the_controller_runs_on_the_exported_model_with_the_same_decisions(tmp_path):
    recording = db1_recording(tmp_path)
    stream = convert_subject(DB1, 1, {"A": str(recording)}, ["A"], PREPROCESS)["stream"]
    model_file(tmp_path / "model.pt", stream)
    export_model(tmp_path / "model.pt", tmp_path / "deploy")
    emg = emg_for(make_protocol([1, 2, 3], DB1.repetitions, movement_samples=150, rest_samples=130), 10, rectified=True)
    gestures = ["A1", "A3"]
    decisions = {}
    for name, controller in (
        ("torch", Controller.from_model_file(tmp_path / "model.pt", DB1, gestures, 5)),
        ("onnx", exported_controller(tmp_path / "deploy", DB1, gestures, 5, "onnx")),
        ("torchscript", exported_controller(tmp_path / "deploy", DB1, gestures, 5, "torchscript")),
    ):
        decisions[name] = [d for start in range(0, 1500, 1) for d in controller.push(emg[start : start + 1])]
    assert len(decisions["torch"]) == 1500
    for backend in ("onnx", "torchscript"):
        agree = np.mean([a == b for a, b in zip(decisions["torch"], decisions[backend], strict=True)])
        assert agree > 0.999, backend  # scores differ by float rounding (1e-6), which may flip a rare near-tie


def test_replay_writes_a_timeline_and_its_figure(tmp_path):
    recording = db1_recording(tmp_path)
    stream = convert_subject(DB1, 1, {"A": str(recording)}, ["A"], PREPROCESS)["stream"]
    model_file(tmp_path / "model.pt", stream)
    controller = controller_for(tmp_path / "model.pt", DB1, ["A1", "A2"], vote_ms=250, backend="onnx")
    timeline = replay_to_file(controller, recording, DB1, tmp_path / "timeline.tsv")
    timeline_figure(timeline, tmp_path / "timeline", recording.name)
    written = pd.read_csv(tmp_path / "timeline.tsv", sep="\t")
    assert list(written.columns) == ["frame", "time_s", "true", "decided"] and len(written) == len(stream)
    assert set(written["decided"]) <= {"rest", "A1", "A2"} and set(written["true"]) == {"rest", "A1", "A2", "A3"}
    assert written["time_s"].iloc[0] == pytest.approx(0.0) and written["time_s"].diff().iloc[1] == pytest.approx(0.01)
    right = (written["true"] == written["decided"]).mean()  # the title's share, from the timeline written beside it
    check_figure(tmp_path / "timeline", 1, [f": {100 * right:.1f} % of frames decided right", ">A3<", ">rest<"])


def test_a_model_file_with_only_the_running_fields_exports_as_the_full_one(tmp_path):
    """A device or a benchmark may write model.pt by hand with just the fields running a network needs (written by
    hand here too: the writer asks for every field)."""
    from contrastive_prosthetics.learning.model_file import RUNNING_FIELDS, read_model_file

    frames = torch.rand(50, 10) + 0.1
    model_file(tmp_path / "model.pt", frames)
    saved = read_model_file(tmp_path / "model.pt")
    torch.save({key: saved[key] for key in RUNNING_FIELDS}, tmp_path / "running.pt")
    full = export_model(tmp_path / "model.pt", tmp_path / "full")
    running = export_model(tmp_path / "running.pt", tmp_path / "running")
    torch.testing.assert_close(OnnxNetwork(running["onnx"])(frames), OnnxNetwork(full["onnx"])(frames))


def test_an_lda_model_cannot_be_exported(tmp_path):
    from contrastive_prosthetics.core.errors import InputError

    lda_file(tmp_path / "lda.pt", classes=CLASSES)
    with pytest.raises(InputError, match=r"lda\.pt: an LDA model's model\.pt"):
        export_model(tmp_path / "lda.pt", tmp_path / "deploy")
    assert not (tmp_path / "deploy").exists()
