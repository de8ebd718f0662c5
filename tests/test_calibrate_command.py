"""A model personalised to one user in the controller (Controller.calibrate) and by the calibrate command: the same
decisions, a model.pt that says how it was made, and clear refusals."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import emg_for, make_protocol, write_mat
from test_realtime import CLASSES, db2_recording, feed, network_file, tiny_model

from contrastive_prosthetics.cli import main
from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.data.ninapro import DB2
from contrastive_prosthetics.learning.decisions import allowed_classes, decide
from contrastive_prosthetics.learning.inference import FrameScorer
from contrastive_prosthetics.learning.model_file import load_model_file
from contrastive_prosthetics.learning.personalise import (
    CalibrationRecording,
    CalibrationSettings,
    first_repetitions,
    personalise,
)
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
    calibration_emg, names, _ = labelled_recording(path, DB2, SECONDS)
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
    emg, names, _ = labelled_recording(path, DB2, SECONDS)
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


def first_repetitions_reference(names: np.ndarray, repetition: np.ndarray, count: int) -> np.ndarray:
    """A sample by sample loop: movement samples of repetition 1..count, and rest samples whose next movement sample
    is of one (the trailing rest: whose last movement sample was)."""
    chosen = np.zeros(len(names), bool)
    following = None
    for sample in range(len(names) - 1, -1, -1):
        if names[sample] != "rest":
            following = repetition[sample]
        chosen[sample] = following is not None and 1 <= following <= count
    if following is None:
        return chosen
    last = max(i for i in range(len(names)) if names[i] != "rest")
    chosen[last + 1 :] = 1 <= repetition[last] <= count
    return chosen


@pytest.mark.parametrize("count", [1, 2])
def test_repetitions_select_exactly_the_first_c_of_every_gesture_with_the_rest_before_each(recording, count):
    from conftest import PREPROCESS

    path, emg = recording
    _, names, repetition = labelled_recording(path, DB2, None)
    chosen = first_repetitions(names, "rest", repetition, count)
    assert np.array_equal(chosen, first_repetitions_reference(names, repetition, count))
    for gesture in GESTURES:  # every gesture's movement samples of repetitions 1..count, and none other
        moving = names == gesture
        assert np.array_equal(chosen[moving], repetition[moving] <= count) and chosen[moving].any()
    # The controller calibrates on those frames, made of the whole recording, one stretch per gesture in time order.
    model, normalisation = tiny_model(DB2.n_channels)
    controller = Controller.from_model(model, normalisation, CLASSES, PREPROCESS, DB2, GESTURES, 5, guard_ms=100)
    stretches = controller.labelled_stretches((emg, names, repetition), count)
    frames = user_frames(emg, DB2, PREPROCESS, 1)
    ends = (np.arange(len(frames)) + 1) * 20 - 1
    expected = np.flatnonzero(chosen[ends])
    assert len(stretches) == len(GESTURES)
    assert torch.equal(torch.cat([part for part, _ in stretches]), frames[expected])
    labels = np.concatenate([labels for _, labels in stretches])
    assert [CLASSES[i] for i in labels] == names[ends][expected].tolist()
    assert [CLASSES[labels[-1]] for _, labels in stretches] == GESTURES  # each ends with its gesture's last movement


def calibrate_argv(trained, path, out) -> list[str]:
    return ["calibrate", "--model", str(trained), "--recording", str(path), "--database", "db2", "--out", str(out)]


def test_calibrate_prints_the_frames_fitted_on_for_every_class(recording, tmp_path, capsys):
    path, _ = recording
    model, normalisation = tiny_model(DB2.n_channels)
    trained = network_file(tmp_path / "model.pt", model, normalisation)
    out = tmp_path / "personal.pt"
    assert main([*calibrate_argv(trained, path, out), "--method", "prototypes", "--repetitions", "1"]) == 0
    fit_frames = load_model_file(out)["personalisation"]["fit_frames"]
    assert list(fit_frames) == CLASSES and all(count > 0 for count in fit_frames.values())
    printed = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(printed) if line.startswith("class"))
    rows = {line.split()[0]: int(line.split()[1]) for line in printed[header + 1 :]}
    assert rows == fit_frames
    assert load_model_file(out)["personalisation"]["repetitions"] == 1


def test_a_gesture_without_calibration_frames_is_refused_by_name_and_nothing_is_written(recording, tmp_path, capsys):
    path, _ = recording
    model, normalisation = tiny_model(DB2.n_channels)
    trained = network_file(tmp_path / "model.pt", model, normalisation)
    out = tmp_path / "personal" / "model.pt"
    assert main([*calibrate_argv(trained, path, out), "--method", "prototypes", "--seconds", "10"]) == 2  # B1 only
    error = capsys.readouterr().err
    assert "['B2', 'B3']" in error and str(path) in error
    assert "--repetitions" in error and "--keep-trained-gestures" in error
    assert not out.parent.exists()  # refused before anything was written


@pytest.mark.parametrize("method", ["prototypes", "fine_tune"])
def test_kept_trained_gestures_keep_their_trained_embeddings(recording, tmp_path, method):
    path, _ = recording
    model, normalisation = tiny_model(DB2.n_channels)
    trained = network_file(tmp_path / "model.pt", model, normalisation)
    out = tmp_path / "personal.pt"
    calibrated = calibrate_model_file(trained, [path], DB2, out, method, seconds=10, keep_trained_gestures=True)
    assert calibrated.fit_frames["B2"] == calibrated.fit_frames["B3"] == 0 < calibrated.fit_frames["B1"]
    saved = load_model_file(out)
    assert saved["personalisation"]["kept_trained"] == ["B2", "B3"]
    personal = Controller.from_model_file(out, DB2, GESTURES, 5).network.model
    with torch.no_grad():
        before, after = model.encode_classes(), personal.encode_classes()
    torch.testing.assert_close(after[2:], before[2:])  # B2, B3: as trained
    assert not torch.allclose(after[1], before[1], atol=1e-3)  # B1: the user's


def test_seconds_and_repetitions_together_are_refused_by_argparse(recording, tmp_path, capsys):
    path, _ = recording
    argv = calibrate_argv(tmp_path / "model.pt", path, tmp_path / "personal.pt")
    with pytest.raises(SystemExit) as exit:
        main([*argv, "--method", "adabn", "--seconds", "10", "--repetitions", "1"])
    assert exit.value.code == 2
    assert "argument --repetitions: not allowed with argument --seconds" in capsys.readouterr().err


def batchnorm_statistics(state: dict) -> dict:
    return {key: value for key, value in state.items() if key.endswith(("running_mean", "running_var"))}


def test_unlabelled_calibration_adapts_the_batch_norms_keeps_the_rest_bias_and_reads_no_label(tmp_path):
    protocol = make_protocol([1, 2, 3], DB2.repetitions, movement_samples=2600, rest_samples=2200, relabel_trim=100)
    emg = emg_for(protocol, DB2.n_channels, seed=5) * 1e-4 + 2e-6
    model, normalisation = tiny_model(DB2.n_channels)
    trained = network_file(tmp_path / "model.pt", model, normalisation, rest_bias=0.5, adabn=True)
    shuffled = np.random.default_rng(0).permutation(len(emg))
    files = {
        "labelled": write_mat(tmp_path / "a" / "S1_E1_A1.mat", protocol, emg),
        "shuffled": write_mat(
            tmp_path / "b" / "S1_E1_A1.mat",
            protocol,
            emg,
            restimulus=protocol.restimulus[shuffled],
            rerepetition=protocol.rerepetition[shuffled],
        ),
        "rest": write_mat(tmp_path / "c" / "S1_E1_A1.mat", protocol, emg, restimulus=0 * protocol.restimulus),
        "none": write_mat(
            tmp_path / "d" / "S1_E1_A1.mat",
            protocol,
            emg,
            stimulus=None,
            restimulus=None,
            repetition=None,
            rerepetition=None,
        ),
    }
    states = {}
    for name, path in files.items():
        out = tmp_path / f"{name}.pt"
        assert main([*calibrate_argv(trained, path, out), "--unlabelled", "--seconds", "40"]) == 0
        saved = load_model_file(out)
        assert saved["rest_bias"] == 0.5 and saved["calibration"] is None and saved["adabn"] is False
        assert saved["personalisation"]["unlabelled"] is True and saved["personalisation"]["method"] == "adabn"
        states[name] = batchnorm_statistics(saved["state_dict"])
    for name in ("shuffled", "rest", "none"):
        assert all(torch.equal(states[name][key], value) for key, value in states["labelled"].items())
    trained_statistics = batchnorm_statistics(model.state_dict())
    assert trained_statistics and all(
        not torch.equal(states["labelled"][key], value) for key, value in trained_statistics.items()
    )
    # The controller's own: the same statistics, the trained bias.
    controller = Controller.from_model_file(trained, DB2, GESTURES, 5)
    controller.calibrate_unlabelled([emg[:80000]])
    state = batchnorm_statistics(controller.network.model.state_dict())
    assert all(torch.equal(state[key], value) for key, value in states["labelled"].items())
    assert controller.network.bias[CLASSES.index("rest")] == 0.5


def test_unlabelled_calibration_refuses_label_options_and_a_model_trained_without_adabn(recording, tmp_path, capsys):
    path, _ = recording
    model, normalisation = tiny_model(DB2.n_channels)
    adabn = network_file(tmp_path / "adabn.pt", model, normalisation, adabn=True)
    out = tmp_path / "personal.pt"
    assert main([*calibrate_argv(adabn, path, out), "--unlabelled", "--repetitions", "1"]) == 2
    assert "--repetitions cannot apply" in capsys.readouterr().err and not out.exists()
    plain = network_file(tmp_path / "plain.pt", model, normalisation)
    assert main([*calibrate_argv(plain, path, out), "--unlabelled"]) == 2
    assert "trained without AdaBN" in capsys.readouterr().err and not out.exists()


def pooled_start(model: torch.nn.Module, rest_bias: float) -> dict:
    """A calibration_free field as training writes it: statistics of some frames, a rest bias."""
    from contrastive_prosthetics.learning.models import adapt_batchnorm, batchnorm_statistics

    pooled = copy.deepcopy(model)
    adapt_batchnorm(pooled, torch.randn(500, DB2.n_channels, generator=torch.Generator().manual_seed(3)) + 2.0)
    return {"batchnorm": batchnorm_statistics(pooled), "rest_bias": rest_bias, "calibration": None}


def test_the_calibration_free_start_reads_nothing_of_the_user_and_decides_with_pooled_statistics(recording, tmp_path):
    from contrastive_prosthetics.learning.models import batchnorm_statistics

    _, emg = recording
    model, normalisation = tiny_model(DB2.n_channels)
    free = pooled_start(model, 0.7)
    trained = network_file(
        tmp_path / "model.pt", model, normalisation, rest_bias=0.5, adabn=True, calibration_free=free
    )
    out = tmp_path / "free" / "model.pt"
    assert (
        main(["calibrate", "--model", str(trained), "--database", "db2", "--calibration-free", "--out", str(out)]) == 0
    )
    saved = load_model_file(out)
    assert saved["adabn"] is False and saved["rest_bias"] == 0.7 and saved["personalisation"]["method"] == "none"
    for (mean, var, _), (expected_mean, expected_var, _) in zip(
        batchnorm_statistics(saved["network"]), free["batchnorm"], strict=True
    ):
        assert torch.equal(mean, expected_mean) and torch.equal(var, expected_var)
    # The controller's calibration-free start decides at once (no adaptation asked for), as the written file does.
    started = Controller.from_model_file(trained, DB2, GESTURES, 5, calibration_free=True)
    written = Controller.from_model_file(out, DB2, GESTURES, 5)
    assert feed(started, emg[80000:90000], 200) == feed(written, emg[80000:90000], 200)
    with pytest.raises(
        InputError, match="adapt it to its user first"
    ):  # without it, the AdaBN model waits for the user's statistics
        feed(Controller.from_model_file(trained, DB2, GESTURES, 5), emg[80000:81000], 200)


def test_a_calibration_free_start_is_refused_without_the_field_or_with_a_recording(recording, tmp_path, capsys):
    path, _ = recording
    model, normalisation = tiny_model(DB2.n_channels)
    old = network_file(tmp_path / "old.pt", model, normalisation, adabn=True)
    out = tmp_path / "free" / "model.pt"
    argv = ["calibrate", "--model", str(old), "--database", "db2", "--calibration-free", "--out", str(out)]
    assert main(argv) == 2
    assert "field calibration_free is missing" in capsys.readouterr().err and not out.exists()
    trained = network_file(
        tmp_path / "model.pt", model, normalisation, adabn=True, calibration_free=pooled_start(model, 0.2)
    )
    assert main([*argv[:2], str(trained), *argv[3:], "--recording", str(path)]) == 2
    assert "--calibration-free reads nothing of the user, so --recording" in capsys.readouterr().err
    assert not out.exists()
