"""A deployed AdaBN model carries its adaptation: the controller and the exported network adapt on the user's
unlabelled recording exactly as the stream evaluation adapts a test subject, or refuse to decide; batch-norm states
and model.pt weights load strictly; replay and export ask for the recording on the command line."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PREPROCESS, emg_for, make_protocol, write_mat
from test_cli import error_line, run
from test_realtime import CLASSES, db2_recording, network_file, tiny_model

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.data.convert import convert_subject
from contrastive_prosthetics.data.ninapro import DB2
from contrastive_prosthetics.learning.dataset import DB23
from contrastive_prosthetics.learning.decisions import allowed_classes, decide
from contrastive_prosthetics.learning.inference import FrameScorer
from contrastive_prosthetics.learning.model_file import load_model_file, read_model_file
from contrastive_prosthetics.learning.models import adapt_batchnorm, batchnorm_layers
from contrastive_prosthetics.realtime.adabn import batchnorm_state, recording_emg
from contrastive_prosthetics.realtime.controller import Controller

GESTURES = ["B1", "B2", "B3"]
ADAPT_FRAMES = 300  # 3 s of 10 ms frames
HOP = 20  # samples per frame at 2 kHz


def adabn_file(tmp_path, context: int = 1):
    """An AdaBN model's model.pt (its running statistics: those training left), with the model and normalisation."""
    model, normalisation = tiny_model(DB2.n_channels, context)
    return network_file(tmp_path / "model.pt", model, normalisation, adabn=True), model, normalisation


def statistics(model: torch.nn.Module) -> list[torch.Tensor]:
    return [s for layer in batchnorm_layers(model) for s in (layer.running_mean, layer.running_var)]


def test_an_adabn_controller_without_adaptation_refuses_to_decide(tmp_path):
    path, model, normalisation = adabn_file(tmp_path)
    _, emg = db2_recording(tmp_path)
    unadapted = {
        "model.pt": Controller.from_model_file(path, DB2, GESTURES, 5),
        "model.pt, online": Controller.from_model_file(path, DB2, GESTURES, 5, online_adaptation=0.05),
        "torch model": Controller.from_model(model, normalisation, CLASSES, PREPROCESS, DB2, GESTURES, 5, adabn=True),
    }
    for name, controller in unadapted.items():
        with pytest.raises(ValueError, match=r"AdaBN.*Pass adapt_on=.*batchnorm_state=.*--adapt-on") as error:
            controller.push(emg[:2000])
        assert name == "torch model" or str(path) in str(error.value), name
    # Adapted later, it decides.
    controller = unadapted["model.pt"]
    assert controller.adapt(emg[: ADAPT_FRAMES * HOP]) == ADAPT_FRAMES
    assert len(controller.push(emg[:2000])) == 100
    # A model trained without AdaBN decides with its training statistics, as before.
    plain = network_file(tmp_path / "plain.pt", model, normalisation)
    assert len(Controller.from_model_file(plain, DB2, GESTURES, 5).push(emg[:2000])) == 100


@pytest.mark.parametrize("context", [1, 4])
def test_the_controller_adapts_and_decides_as_the_stream_evaluation(tmp_path, context):
    """The stream evaluation's AdaBN (learning/stream_scoring.py::adapted_network): the stored stream normalised by
    DB23, with its context, into adapt_batchnorm; then FrameScorer and decide. The controller given the same stretch
    of raw EMG ends with the same statistics and decides every frame alike."""
    recording, emg = db2_recording(tmp_path)
    convert_subject(DB2, 1, {"B": str(recording)}, ["B"], PREPROCESS, tmp_path / "s1.pt")
    raw = DB23.load([tmp_path / "s1.pt"], device="cpu", with_streams=True)
    model, normalisation = tiny_model(DB2.n_channels, context)
    assert raw.channel_mask.all()  # the controller's default: every channel live
    offline = copy.deepcopy(model)
    adapt_batchnorm(offline, raw.normalised(normalisation).stream_context(torch.arange(ADAPT_FRAMES), context))
    controller = Controller.from_model(
        model, normalisation, CLASSES, PREPROCESS, DB2, GESTURES, 5, adabn=True, adapt_on=emg[: ADAPT_FRAMES * HOP]
    )
    for ours, expected, trained in zip(
        statistics(controller.network.model), statistics(offline), statistics(model), strict=True
    ):
        # Bit-equal here; a vectorised log may round a tensor's last elements apart from the rest, by one ulp.
        torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(ours, trained)  # adapting moved them
    decided = controller.push(emg[:8000])
    scorer = FrameScorer(offline, normalisation, raw.channel_mask[0], len(CLASSES))
    logits = scorer(raw.stream_context(torch.arange(400), context), batch=4096)
    assert decided == [CLASSES[i] for i in decide(logits, allowed_classes(CLASSES, GESTURES), 5).tolist()]


def test_the_exported_adabn_model_carries_its_adaptation(tmp_path):
    """Exported with the user's recording, ONNX and TorchScript decide as the adapted controller of model.pt; and the
    adaptation matters: training's statistics decide otherwise."""
    pytest.importorskip("onnxruntime")
    from contrastive_prosthetics.realtime.export import DEPLOYMENT_NAME, export_model, exported_controller

    path, model, normalisation = adabn_file(tmp_path)
    _, emg = db2_recording(tmp_path)
    calibration, signal = emg[: ADAPT_FRAMES * HOP], emg[:8000]
    adapted = Controller.from_model_file(path, DB2, GESTURES, 5, adapt_on=calibration).push(signal)
    export_model(path, tmp_path / "deploy", adapt_on=calibration, spec=DB2)
    for backend in ("onnx", "torchscript"):
        assert exported_controller(tmp_path / "deploy", DB2, GESTURES, 5, backend).push(signal) == adapted, backend
    description = json.loads((tmp_path / "deploy" / DEPLOYMENT_NAME).read_text())
    assert description["adabn"] is True
    assert description["batchnorm_statistics"] == f"adapted on {ADAPT_FRAMES} frames of the user's recording"
    trained = Controller.from_model(model, normalisation, CLASSES, PREPROCESS, DB2, GESTURES, 5).push(signal)
    assert trained != adapted
    with pytest.raises(InputError, match=r"model\.pt: an AdaBN model .*adapt_on=") as error:
        export_model(path, tmp_path / "refused")
    assert str(path) in str(error.value) and not (tmp_path / "refused").exists()


def test_saved_adapted_statistics_deploy_again_without_the_recording(tmp_path):
    path, _, _ = adabn_file(tmp_path)
    _, emg = db2_recording(tmp_path)
    adapted = Controller.from_model_file(path, DB2, GESTURES, 5, adapt_on=emg[: ADAPT_FRAMES * HOP])
    state = batchnorm_state(adapted.network.model)
    assert state and all(
        key.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked") for key in state
    )
    again = Controller.from_model_file(path, DB2, GESTURES, 5, batchnorm_state=state)
    assert again.push(emg[:8000]) == adapted.push(emg[:8000])


def wrong_key(state: dict) -> dict:
    key = next(iter(state))
    return {("emg_encoder.wrong" if k == key else k): v for k, v in state.items()}


def test_a_model_file_with_a_wrong_key_is_refused_naming_the_file(tmp_path):
    path, _, _ = adabn_file(tmp_path)
    saved = read_model_file(path)
    torch.save(saved | {"state_dict": wrong_key(saved["state_dict"])}, path)  # an edited file: by hand
    for load in (
        lambda: load_model_file(path),
        lambda: Controller.from_model_file(path, DB2, GESTURES, 5),
    ):
        with pytest.raises(InputError, match=r"state_dict does not fit model_config .*emg_encoder\.wrong.*train again"):
            load()
        with pytest.raises(InputError, match=re.escape(str(path))):
            load()


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (wrong_key, r"unexpected key\(s\) \['emg_encoder\.wrong'\]"),
        (lambda state: {k: v for k, v in state.items() if "running_var" not in k}, r"missing \['emg_encoder\..*var"),
        (lambda state: {k: v[:1] if "running_mean" in k else v for k, v in state.items()}, r"wrong shape \['emg"),
        (lambda state: state | {"emg_encoder.layers.0.weight": torch.zeros(1)}, r"unexpected key\(s\)"),
    ],
    ids=["wrong key", "missing", "wrong shape", "a weight"],
)
def test_a_batchnorm_state_that_does_not_fit_is_refused_naming_the_model(tmp_path, spoil, message):
    """Loaded with strict=False, these were silently ignored: the model then ran with training's statistics."""
    pytest.importorskip("onnxruntime")
    from contrastive_prosthetics.realtime.export import export_model

    path, model, _ = adabn_file(tmp_path)
    state = spoil(batchnorm_state(model))
    for load in (
        lambda: Controller.from_model_file(path, DB2, GESTURES, 5, batchnorm_state=state),
        lambda: export_model(path, tmp_path / "deploy", batchnorm_state=state),
    ):
        with pytest.raises(InputError, match=message) as error:
            load()
        assert str(path) in str(error.value) and "batchnorm_state does not fit" in str(error.value)


def test_online_tracking_leaves_the_adaptation_exact_then_tracks(tmp_path):
    """Online tracking hooks every batch-norm layer: while AdaBN carries activations through the layers it has
    estimated, the hooks must stay out of the statistics; once adapted, they track the stream."""
    path, _, _ = adabn_file(tmp_path)
    _, emg = db2_recording(tmp_path)
    calibration = emg[: ADAPT_FRAMES * HOP]
    plain = Controller.from_model_file(path, DB2, GESTURES, 5, adapt_on=calibration)
    for tracking in (
        Controller.from_model_file(path, DB2, GESTURES, 5, adapt_on=calibration, online_adaptation=0.05),
        Controller.from_model_file(path, DB2, GESTURES, 5, online_adaptation=0.05),  # adapted later
    ):
        if tracking.unadapted:
            tracking.adapt(calibration)
        for ours, expected in zip(statistics(tracking.network.model), statistics(plain.network.model), strict=True):
            assert torch.equal(ours, expected)
        tracking.push(emg[:2000])
        assert not torch.equal(statistics(tracking.network.model)[0], statistics(plain.network.model)[0])


def test_bad_adaptation_inputs_are_refused_saying_what_to_give(tmp_path):
    path, model, normalisation = adabn_file(tmp_path)
    plain = network_file(tmp_path / "plain.pt", model, normalisation)
    _, emg = db2_recording(tmp_path)
    cases = {
        "too short": (lambda: Controller.from_model_file(path, DB2, GESTURES, 5, adapt_on=emg[:1000]), "50 frames"),
        "channels": (lambda: Controller.from_model_file(path, DB2, GESTURES, 5, adapt_on=emg[:, :8]), r"\[sample, 12"),
        "not finite": (
            lambda: Controller.from_model_file(path, DB2, GESTURES, 5, adapt_on=np.where(emg > 0, np.nan, emg)),
            "NaN",
        ),
        "not AdaBN": (lambda: Controller.from_model_file(plain, DB2, GESTURES, 5, adapt_on=emg), "without AdaBN"),
        "both": (
            lambda: Controller.from_model_file(
                path, DB2, GESTURES, 5, adapt_on=emg, batchnorm_state=batchnorm_state(model)
            ),
            "not both",
        ),
    }
    for name, (build, message) in cases.items():
        with pytest.raises(InputError, match=message) as error:
            build()
        assert str(path if name != "not AdaBN" else plain) in str(error.value), name


def test_an_exported_network_cannot_adapt_and_an_older_export_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    from contrastive_prosthetics.realtime.export import DEPLOYMENT_NAME, export_model, exported_controller

    path, _, _ = adabn_file(tmp_path)
    _, emg = db2_recording(tmp_path)
    export_model(path, tmp_path / "deploy", adapt_on=emg[: ADAPT_FRAMES * HOP], spec=DB2)
    with pytest.raises(InputError, match=r"fixed at export.*export --adapt-on"):
        exported_controller(tmp_path / "deploy", DB2, GESTURES, 5).adapt(emg)
    with pytest.raises(InputError, match="needs its database: spec="):
        export_model(path, tmp_path / "other", adapt_on=emg)
    description = tmp_path / "deploy" / DEPLOYMENT_NAME
    older = json.loads(description.read_text())
    del older["batchnorm_statistics"], older["adabn"]
    description.write_text(json.dumps(older))
    with pytest.raises(InputError, match=r"older version.*export the model\.pt again") as error:
        exported_controller(tmp_path / "deploy", DB2, GESTURES, 5)
    assert str(description) in str(error.value)


def test_the_adaptation_recording_is_its_first_seconds_and_must_hold_them(tmp_path):
    recording, emg = db2_recording(tmp_path)
    assert np.array_equal(recording_emg(recording, DB2, 3.0), emg[:6000])
    seconds = f"{len(emg) / DB2.sampling_rate_hz:.1f}"
    with pytest.raises(InputError, match=rf"S1_E1_A1\.mat: {seconds} s of EMG, shorter than the 100 s.*--adapt-sec"):
        recording_emg(recording, DB2, 100.0)
    with pytest.raises(InputError, match="--adapt-seconds 0: adapt on a positive number"):
        recording_emg(recording, DB2, 0.0)


def short_recording(tmp_path):
    """A 6 s DB2 recording (one gesture, two repetitions), so that the command line replays it in seconds."""
    protocol = make_protocol([1], 2, movement_samples=2600, rest_samples=2200, relabel_trim=100)
    emg = emg_for(protocol, DB2.n_channels, seed=5) * 1e-4 + 2e-6
    return write_mat(tmp_path / "S1_E1_A1.mat", protocol, emg), emg


def test_replay_and_export_of_an_adabn_model_need_the_users_recording(tmp_path, capsys):
    path, model, normalisation = adabn_file(tmp_path)
    plain = network_file(tmp_path / "plain.pt", model, normalisation)
    recording, emg = short_recording(tmp_path)
    replay = ["replay", "--recording", str(recording), "--database", "db2", "--gestures", *GESTURES, "--vote-ms", "50"]
    replay += ["--out", str(tmp_path / "timeline.tsv")]
    assert run(*replay, "--model", str(path)) == 2
    assert str(path) in error_line(capsys, "replay") and not (tmp_path / "timeline.tsv").exists()
    assert run("export", "--model", str(path), "--out-dir", str(tmp_path / "deploy")) == 2
    assert "--adapt-on RECORDING.mat" in error_line(capsys, "export") and not (tmp_path / "deploy").exists()
    adapt = ["--adapt-on", str(recording), "--adapt-seconds", "3"]
    assert run("export", "--model", str(path), "--out-dir", str(tmp_path / "deploy"), *adapt) == 2
    assert "give the recording's --database" in error_line(capsys, "export")
    assert run(*replay, "--model", str(plain), *adapt) == 2
    assert "without AdaBN" in error_line(capsys, "replay")
    assert run(*replay, "--model", str(path), "--adapt-on", str(recording), "--adapt-seconds", "100") == 2
    assert "shorter than the 100 s" in error_line(capsys, "replay")
    # Given the recording, replay decides as the controller adapted on its first 3 s.
    assert run(*replay, "--model", str(path), *adapt) == 0
    timeline = pd.read_csv(tmp_path / "timeline.tsv", sep="\t")
    controller = Controller.from_model_file(path, DB2, GESTURES, 5, adapt_on=emg[: ADAPT_FRAMES * HOP])
    assert len(timeline) == len(emg) // HOP and timeline["decided"].tolist() == controller.push(emg)


def test_export_adapts_on_the_recording_given_on_the_command_line(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    path, _, _ = adabn_file(tmp_path)
    recording, _ = short_recording(tmp_path)
    deploy = tmp_path / "deploy"
    adapt = ["--adapt-on", str(recording), "--adapt-seconds", "3"]
    assert run("export", "--model", str(path), "--out-dir", str(deploy), "--database", "db2", *adapt) == 0
    description = json.loads((deploy / "deployment.json").read_text())
    assert description["batchnorm_statistics"] == f"adapted on {ADAPT_FRAMES} frames of the user's recording"
    replay = ["replay", "--model", str(deploy), "--recording", str(recording), "--database", "db2"]
    replay += ["--gestures", "B1", "--vote-ms", "0", "--out", str(tmp_path / "t.tsv")]
    assert run(*replay, *adapt) == 2
    assert "export folder carries the batch-norm statistics" in error_line(capsys, "replay")
    assert run(*replay) == 0  # the export carries its adaptation


def test_the_replay_command_draws_the_timeline_it_wrote_when_asked(tmp_path):
    """The figure is the report stage's, drawn by the command line once the real-time stage returned the timeline."""
    _, model, normalisation = adabn_file(tmp_path)
    plain = network_file(tmp_path / "plain.pt", model, normalisation)
    recording, _ = short_recording(tmp_path)
    replay = ["replay", "--model", str(plain), "--recording", str(recording), "--database", "db2", "--gestures", "B1"]
    replay += ["--vote-ms", "0", "--out", str(tmp_path / "t.tsv"), "--figure", str(tmp_path / "figure.svg")]
    assert run(*replay) == 0
    assert (tmp_path / "t.tsv").exists() and (tmp_path / "figure.svg").exists() and (tmp_path / "figure.png").exists()
