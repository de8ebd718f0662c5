"""A model personalised to one user in the controller (Controller.calibrate) and by the calibrate command: the same
decisions, a model.pt that says how it was made, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_realtime import CLASSES, db2_recording, feed, network_file, tiny_model

from contrastive_prosthetics.cli import main
from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.data.ninapro import DB2
from contrastive_prosthetics.learning.decisions import allowed_classes, decide
from contrastive_prosthetics.learning.inference import FrameScorer
from contrastive_prosthetics.learning.model_file import load_model_file
from contrastive_prosthetics.learning.personalise import CalibrationRecording, CalibrationSettings, personalise
from contrastive_prosthetics.learning.stream_sampling import guard_mask
from contrastive_prosthetics.learning.stream_scoring import class_bias
from contrastive_prosthetics.realtime.adabn import user_frames
from contrastive_prosthetics.realtime.controller import Controller
from contrastive_prosthetics.realtime.personalised import calibrate_model_file, labelled_recording

SECONDS = 40  # the first repetitions of B1 (then B2, B3): NinaPro repeats each movement in turn
GESTURES = ["B1", "B2", "B3"]


@pytest.fixture
def recording(tmp_path):
    path, emg = db2_recording(tmp_path)
    return path, emg


@pytest.mark.parametrize("method", ["adabn", "prototypes", pytest.param("fine_tune", marks=pytest.mark.slow)])
def test_the_controller_decides_as_the_pipelines_calibration_of_the_same_frames(recording, method):
    from conftest import PREPROCESS

    path, emg = recording
    model, normalisation = tiny_model(DB2.n_channels)
    controller = Controller.from_model(
        model, normalisation, CLASSES, PREPROCESS, DB2, GESTURES, vote_frames=5, rest_target=0.1, guard_ms=100
    )
    calibration_emg, names = labelled_recording(path, DB2, SECONDS)
    result = controller.calibrate([(calibration_emg, names)], method)
    assert result is not None and result.false_activation <= 0.1
    decided = [d for part in feed(controller, emg[80000:100000], 200) for d in part]
    # The same frames through learning.personalise and the offline scorer and vote.
    frames = user_frames(calibration_emg, DB2, PREPROCESS, 1)
    labels = torch.tensor([CLASSES.index(n) for n in names[(np.arange(len(frames)) + 1) * 20 - 1]])
    fit = (~guard_mask(labels, torch.zeros_like(labels), 10)).numpy()
    live = torch.ones(DB2.n_channels, dtype=torch.bool)
    calibrated = CalibrationRecording([(frames, labels.numpy())], [fit], live)
    personal = personalise(model, normalisation, calibrated, method, CalibrationSettings())
    scorer = FrameScorer(personal, normalisation, live, len(CLASSES), bias=class_bias(CLASSES, result.bias))
    test_frames = user_frames(emg[80000:100000], DB2, PREPROCESS, 1)  # a controller started there
    offline = decide(scorer(test_frames, batch=4096), allowed_classes(CLASSES, GESTURES), 5)
    assert decided == [CLASSES[i] for i in offline.tolist()]


def test_the_calibrate_command_writes_a_personalised_model_the_controller_runs_alike(recording, tmp_path):
    from conftest import PREPROCESS

    path, emg = recording
    model, normalisation = tiny_model(DB2.n_channels)
    trained = network_file(tmp_path / "model.pt", model, normalisation, rest_bias=0.5, adabn=True)
    out = tmp_path / "personal" / "model.pt"
    argv = ["calibrate", "--model", str(trained), "--recording", str(path), "--database", "db2"]
    assert main([*argv, "--method", "prototypes", "--seconds", str(SECONDS), "--out", str(out)]) == 0
    saved = load_model_file(out)
    assert saved["adabn"] is False and saved["personalisation"]["method"] == "prototypes"
    assert saved["personalisation"]["frames"] == SECONDS * 100 and saved["rest_bias"] != 0.5
    assert saved["model_config"]["class_encoder"] == "onehot"
    # The written model decides as the controller calibrated in memory (an AdaBN model needs nothing more).
    in_memory = Controller.from_model(
        model, normalisation, CLASSES, PREPROCESS, DB2, GESTURES, 25, adabn=True, rest_bias=0.5, rest_target=0.1
    )
    in_memory.guard_ms = 100.0  # the model file's (tests/test_realtime.py network_file)
    in_memory.calibrate([labelled_recording(path, DB2, SECONDS)], "prototypes")
    from_file = Controller.from_model_file(out, DB2, GESTURES, vote_frames=25)
    assert from_file.push(emg[80000:100000]) == in_memory.push(emg[80000:100000])


def test_calibration_labels_must_be_the_models_classes(recording):
    from conftest import PREPROCESS

    path, _ = recording
    model, normalisation = tiny_model(DB2.n_channels)
    controller = Controller.from_model(
        model, normalisation, CLASSES, PREPROCESS, DB2, GESTURES, vote_frames=0, guard_ms=100
    )
    emg, names = labelled_recording(path, DB2, SECONDS)
    with pytest.raises(InputError, match=r"calibration labels \['C7'\] are not classes"):
        controller.calibrate([(emg, np.where(names == "B1", "C7", names))], "adabn")


def test_calibrating_on_more_seconds_than_recorded_is_refused_and_writes_nothing(recording, tmp_path):
    path, _ = recording
    model, normalisation = tiny_model(DB2.n_channels)
    trained = network_file(tmp_path / "model.pt", model, normalisation)
    out = tmp_path / "personal.pt"
    with pytest.raises(InputError, match="--seconds 9999 must be positive and at most the recording's"):
        calibrate_model_file(trained, [path], DB2, out, seconds=9999)
    assert not out.exists()


def test_calibrate_uses_the_models_guard_band_and_target_and_records_what_overrides_them(recording, tmp_path):
    """model.pt carries training.guard_ms and the rest target; --guard-ms and --rest-target override them, and the
    personalised model.pt records the values it was calibrated with."""
    path, _ = recording
    model, normalisation = tiny_model(DB2.n_channels)
    trained = network_file(tmp_path / "model.pt", model, normalisation)  # guard 100 ms, target 10 %
    argv = ["calibrate", "--model", str(trained), "--recording", str(path), "--database", "db2", "--seconds"]
    argv += [str(SECONDS), "--method", "adabn"]
    assert main([*argv, "--out", str(tmp_path / "own.pt")]) == 0
    own = load_model_file(tmp_path / "own.pt")
    assert own["guard_ms"] == 100.0 and own["personalisation"]["guard_ms"] == 100.0
    assert own["rest_false_activation_target"] == 0.1 and own["calibration"]["target"] == 0.1
    assert main([*argv, "--guard-ms", "30", "--rest-target", "0.05", "--out", str(tmp_path / "other.pt")]) == 0
    other = load_model_file(tmp_path / "other.pt")
    assert other["guard_ms"] == 30.0 and other["rest_false_activation_target"] == 0.05
    assert other["calibration"]["target"] == 0.05 and other["personalisation"]["guard_ms"] == 30.0
    assert main([*argv, "--rest-target", "-1", "--out", str(tmp_path / "kept.pt")]) == 0
    kept = load_model_file(tmp_path / "kept.pt")
    assert kept["calibration"] is None and kept["rest_bias"] == 0.0 and kept["rest_false_activation_target"] == 0.1


def test_a_model_without_its_guard_band_is_calibrated_only_with_one_given(recording, tmp_path, capsys):
    path, _ = recording
    model, normalisation = tiny_model(DB2.n_channels)
    trained = network_file(tmp_path / "model.pt", model, normalisation)
    saved = torch.load(trained, weights_only=False)
    del saved["guard_ms"]  # a model.pt written before models recorded training.guard_ms
    torch.save(saved, trained)
    argv = ["calibrate", "--model", str(trained), "--recording", str(path), "--database", "db2", "--seconds"]
    argv += [str(SECONDS), "--method", "adabn", "--out", str(tmp_path / "own.pt")]
    assert main(argv) == 2
    assert "guard_ms" in capsys.readouterr().err and not (tmp_path / "own.pt").exists()
    assert main([*argv, "--guard-ms", "100"]) == 0
    assert load_model_file(tmp_path / "own.pt")["guard_ms"] == 100.0
