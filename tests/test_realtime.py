"""The real-time controller: frames bit-identical to conversion's stream, decisions independent of chunking and
equal to the offline stream evaluation's."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import PREPROCESS, emg_for, make_protocol, write_mat

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.data.convert import convert_subject
from contrastive_prosthetics.data.ninapro import DB1, DB2, class_names
from contrastive_prosthetics.learning.dataset import Normalisation
from contrastive_prosthetics.learning.decision_rules import Hysteresis
from contrastive_prosthetics.learning.decisions import allowed_classes, decide
from contrastive_prosthetics.learning.inference import FrameScorer
from contrastive_prosthetics.learning.model_file import (
    NETWORK_FIELDS,
    load_model_file,
    read_model_file,
    write_lda_file,
    write_network_file,
)
from contrastive_prosthetics.learning.models import ModelConfig, batchnorm_layers, build_model
from contrastive_prosthetics.realtime.controller import Controller, FrameMaker
from contrastive_prosthetics.realtime.replay import controller_for

CLASSES = class_names(["B"])[:4]  # rest, B1, B2, B3


RULE = Hysteresis(smoothing_ms=30.0, enter=0.6, leave=0.5, frame_ms=10.0, rest_offset=0.2)


def offline_decisions(logits: torch.Tensor, gestures: list[str], votes: int, rule: Hysteresis | None) -> torch.Tensor:
    """The stream evaluation's decisions of one stretch: the vote's, or the rule's (stream_metrics' call)."""
    allowed = allowed_classes(CLASSES, gestures)
    if rule is None:
        return decide(logits, allowed, votes)
    return rule.decide_subsets(logits, allowed[None], [votes], None, CLASSES.index("rest"))[votes][0]


def db2_recording(tmp_path):
    protocol = make_protocol([1, 2, 3], DB2.repetitions, movement_samples=2600, rest_samples=2200, relabel_trim=100)
    emg = emg_for(protocol, DB2.n_channels, seed=5) * 1e-4 + 2e-6
    path = write_mat(tmp_path / "S1_E1_A1.mat", protocol, emg)
    return path, emg


def feed(maker_or_controller, signal: np.ndarray, chunk: int) -> list:
    out = []
    for start in range(0, len(signal), chunk):
        out.append(maker_or_controller.push(signal[start : start + chunk]))
    return out


@pytest.mark.parametrize("chunk", [1, 20, 333])
def test_frames_made_online_are_the_stored_stream_bit_for_bit(tmp_path, chunk):
    path, emg = db2_recording(tmp_path)
    stream = convert_subject(DB2, 1, {"B": str(path)}, ["B"], PREPROCESS)["stream"].numpy()
    maker = FrameMaker(DB2.sampling_rate_hz, PREPROCESS, False, DB2.n_channels)
    online = np.concatenate(feed(maker, emg[:12000], chunk))
    assert online.shape == (600, 12) and np.array_equal(online, stream[:600])


def test_an_empty_chunk_makes_no_frame_and_changes_nothing(tmp_path):
    path, emg = db2_recording(tmp_path)
    stream = convert_subject(DB2, 1, {"B": str(path)}, ["B"], PREPROCESS)["stream"].numpy()
    maker = FrameMaker(DB2.sampling_rate_hz, PREPROCESS, False, DB2.n_channels)
    pieces = []
    for start in range(0, 12000, 500):
        pieces.append(maker.push(emg[start : start + 500]))
        empty = maker.push(emg[:0])
        assert empty.shape == (0, DB2.n_channels)
    assert np.array_equal(np.concatenate(pieces), stream[:600])


def test_db1_envelopes_are_their_own_frames_online(tmp_path):
    protocol = make_protocol([1, 2], DB1.repetitions, movement_samples=150, rest_samples=130)
    emg = emg_for(protocol, DB1.n_channels, rectified=True)
    path = write_mat(tmp_path / "S1_A1_E1.mat", protocol, emg)
    stream = convert_subject(DB1, 1, {"A": str(path)}, ["A"], PREPROCESS)["stream"].numpy()
    maker = FrameMaker(DB1.sampling_rate_hz, PREPROCESS, True, DB1.n_channels)
    assert np.array_equal(np.concatenate(feed(maker, emg, 7)), stream)


def test_a_centred_rms_cannot_run_online():
    with pytest.raises(InputError, match="causal"):
        FrameMaker(2000.0, replace(PREPROCESS, rms_alignment="centred"), False, 12)


def straightforward_decisions(logits: torch.Tensor, allowed: torch.Tensor, vote: int) -> list[int]:
    """The vote's definition, frame by frame in plain Python."""
    n = max(vote, 1)
    predictions = [max((c for c in range(len(row)) if allowed[c]), key=lambda c: (row[c], -c)) for row in logits]
    out = []
    for t in range(len(logits)):
        window = range(max(0, t - n + 1), t + 1)
        counts = {c: sum(predictions[i] == c for i in window) for c in range(logits.shape[1])}
        most = max(counts.values())
        tied = [c for c in counts if counts[c] == most and allowed[c]]
        out.append(max(tied, key=lambda c: (sum(float(logits[i, c]) for i in window), -c)))
    return out


@pytest.mark.parametrize("vote", [0, 1, 3, 6])
def test_decisions_follow_the_votes_definition(vote):
    generator = torch.Generator().manual_seed(vote)
    logits = torch.randint(0, 3, (60, 5), generator=generator).float()  # ties everywhere
    allowed = torch.tensor([True, False, True, True, False])
    assert decide(logits, allowed, vote).tolist() == straightforward_decisions(logits, allowed, vote)


def tiny_model(n_channels: int, context: int = 1) -> tuple:
    torch.manual_seed(0)
    config = ModelConfig("contrastive", n_channels, len(CLASSES), 8, 4, 16, 1, 0.0, context)
    model = build_model(config).eval()
    normalisation = Normalisation(
        torch.full((n_channels,), -9.0), torch.ones(n_channels), True, torch.full((n_channels,), 1e-7)
    )
    return model, normalisation


@pytest.mark.parametrize("rule", [None, RULE], ids=["vote", "hysteresis"])
@pytest.mark.parametrize("context", [1, 4])
def test_controller_decisions_do_not_depend_on_chunking_and_equal_offline(tmp_path, context, rule):
    path, emg = db2_recording(tmp_path)
    signal = emg[:8000]
    model, normalisation = tiny_model(DB2.n_channels, context)
    gestures = ["B1", "B3"]

    def run(chunk):
        controller = Controller.from_model(
            model, normalisation, CLASSES, PREPROCESS, DB2, gestures, vote_frames=5, rule=rule
        )
        return [d for part in feed(controller, signal, chunk) for d in part]

    whole, tens, single = run(len(signal)), run(20), run(1)
    assert len(whole) == 400 and whole == tens == single
    # Offline: the stored stream's frames, scored and voted by the same code.
    stream = torch.from_numpy(convert_subject(DB2, 1, {"B": str(path)}, ["B"], PREPROCESS)["stream"].numpy()[:400])
    positions = torch.arange(400)[:, None] + torch.arange(1 - context, 1)
    frames = stream[positions.clamp(min=0)]
    scorer = FrameScorer(model, normalisation, torch.ones(12, dtype=torch.bool), len(CLASSES))
    logits = scorer(frames if context > 1 else frames[:, 0])
    offline = offline_decisions(logits, gestures, 5, rule)
    assert whole == [CLASSES[i] for i in offline.tolist()]
    # The stream evaluation scores in large batches: the same scores to float rounding, the same decisions here.
    batched = scorer(frames if context > 1 else frames[:, 0], batch=4096)
    torch.testing.assert_close(batched, logits, rtol=0, atol=1e-5)
    assert torch.equal(offline_decisions(batched, gestures, 5, rule), offline)
    assert set(whole) <= {"rest", "B1", "B3"}


def test_choosing_other_gestures_needs_no_retraining(tmp_path):
    _, emg = db2_recording(tmp_path)
    model, normalisation = tiny_model(DB2.n_channels)
    controller = Controller.from_model(model, normalisation, CLASSES, PREPROCESS, DB2, ["B1"], vote_frames=0)
    first = controller.push(emg[:4000])
    controller.choose(["B2", "B3"])
    second = controller.push(emg[4000:8000])
    assert set(first) <= {"rest", "B1"} and set(second) <= {"rest", "B2", "B3"}
    with pytest.raises(InputError, match="unknown gesture"):
        controller.choose(["C7"])


def test_online_adaptation_tracks_the_streams_statistics(tmp_path):
    _, emg = db2_recording(tmp_path)
    model, normalisation = tiny_model(DB2.n_channels)
    before = batchnorm_layers(model)[0].running_mean.clone()
    adapting = Controller.from_model(model, normalisation, CLASSES, PREPROCESS, DB2, ["B1"], 0, online_adaptation=0.05)
    adapting.push(emg[:8000])
    after = batchnorm_layers(adapting.scorer.network)[0].running_mean
    assert not torch.equal(before, after)
    assert torch.equal(batchnorm_layers(model)[0].running_mean, before)  # the trained model is left alone


@pytest.mark.parametrize("vote", [0, 4, 9])
def test_the_controllers_latest_decision_is_decides_last(vote):
    from contrastive_prosthetics.learning.decisions import decide_latest

    generator = torch.Generator().manual_seed(vote + 1)
    logits = torch.randint(0, 3, (40, 6), generator=generator).float() + 0.1 * torch.randn(40, 6, generator=generator)
    logits[::3] = logits[::3].round()  # some exact ties too
    allowed = torch.tensor([True, True, False, True, False, True])
    offline = decide(logits, allowed, vote)
    for t in range(len(logits)):
        assert decide_latest(logits[: t + 1].numpy(), allowed.numpy(), vote) == offline[t], t


def data_described(classes: list[str] = CLASSES) -> SimpleNamespace:
    """What the model.pt writers read from the training data."""
    return SimpleNamespace(
        classes=classes, subject_names=["db2/s1"], frame_rate_hz=100.0, preprocess=PREPROCESS.as_dict(), window="onset"
    )


def network_file(
    path,
    model: torch.nn.Module,
    normalisation: Normalisation,
    rest_bias: float = 0.0,
    adabn: bool = False,
    onset_gate: dict | None = None,
    classes: list[str] = CLASSES,
    calibration_free: dict | None = None,
    decision: dict | None = None,
    calibration: dict | None = None,
):
    """``model.pt`` of ``model`` through training's writer (``adabn``: as an AdaBN model's, cross-fitted)."""
    write_network_file(
        path,
        data_described(classes),
        state_dict=model.state_dict(),
        model_config=model.config.as_dict(),
        hyperparameters={"learning_rate": 1e-3, "weight_decay": 1e-4, "dropout": 0.0},
        normalisation=normalisation.state_dict(),
        model="tiny",
        adabn=adabn,
        adaptation="cross_fitted" if adabn else "none",
        adaptation_protocol="setup" if adabn else "none",
        adaptation_update_s=30.0,
        fold="f",
        fold_spec={},
        unseen=[],
        pose_prototypes=None,
        best_epoch=1,
        history=[],
        seed=0,
        rest_bias=rest_bias,
        calibration=calibration,
        rest_false_activation_target=0.1,
        guard_ms=100.0,
        onset_gate=onset_gate,
        decision=decision,
        calibration_free=calibration_free,
    )
    return path


def lda_file(path, classes: list[str] = CLASSES):
    """An LDA model's ``model.pt`` through LDA's writer."""
    write_lda_file(
        path,
        data_described(classes),
        estimators={},
        feature_names=["mav", "wl", "zc", "ssc"],
        model="lda",
        fold="f",
        fold_spec={},
        frames="stream",
        history=[],
        seed=0,
        rest_bias=0.0,
        calibration=None,
        rest_false_activation_target=None,
        guard_ms=0.0,
        onset_gate=None,
        decision=None,
    )
    return path


def test_the_controller_runs_a_model_file_as_trainings_writer_writes_it(tmp_path):
    emg = np.random.default_rng(0).normal(0, 1e-4, (1000, DB2.n_channels))  # 50 frames
    model, normalisation = tiny_model(DB2.n_channels)
    path = network_file(tmp_path / "model.pt", model, normalisation)
    assert list(read_model_file(path)) == list(NETWORK_FIELDS)  # the writer's fields, in the schema's order
    direct = Controller.from_model(model, normalisation, CLASSES, PREPROCESS, DB2, ["B1"], vote_frames=25)
    from_file = controller_for(path, DB2, ["B1"], vote_ms=250, backend="onnx")  # 250 ms: 25 frames at 100 Hz
    assert from_file.vote_frames == 25 and from_file.push(emg) == direct.push(emg)


def older_network_file(path):
    """A file as an older version wrote it, without preprocess: written by hand, as the writer refuses it."""
    model, normalisation = tiny_model(DB2.n_channels)
    saved = read_model_file(network_file(path, model, normalisation))
    torch.save({key: value for key, value in saved.items() if key != "preprocess"}, path)


# Foreign files (bytes, a logits.pt, a list) are written by hand: no writer makes them.
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: None, "not found; run the train rule"),
        (
            lambda path: path.write_bytes(b"not a torch file"),
            "cannot be read as a model.pt .*delete it and train again",
        ),
        (lambda path: torch.save({"logits": torch.zeros(2, 3)}, path), "not a model.pt .*give the model.pt"),
        (lambda path: torch.save([1, 2], path), "not a model.pt"),
        (lda_file, "an LDA model's model.pt, not a network's.*give a network's model.pt"),
        (older_network_file, r"field\(s\) \['preprocess'\] missing.*train again"),
    ],
    ids=["missing", "not torch", "logits.pt", "not a dict", "LDA", "older"],
)
def test_a_wrong_model_file_names_the_file_and_what_to_do(tmp_path, make, message):
    path = tmp_path / "model.pt"
    make(path)
    for load in (
        lambda: Controller.from_model_file(path, DB2, ["B1"], 0),
        lambda: controller_for(path, DB2, ["B1"], vote_ms=0, backend="onnx"),  # replay's
        lambda: load_model_file(path),
    ):
        with pytest.raises(InputError, match=message) as error:
            load()
        assert str(path) in str(error.value)


def test_a_user_the_model_validated_on_decides_with_their_own_rest_bias_as_the_stream_evaluation(tmp_path):
    """A per-user promise (calibration.per_subject in model.pt): the controller told whose recording it decides uses
    that user's bias, as the stream evaluation does (subject_rest_bias); anyone else, or no one named, the model's."""
    from contrastive_prosthetics.learning.rest_bias import subject_rest_bias
    from contrastive_prosthetics.learning.stream_scoring import class_bias

    emg = np.random.default_rng(1).normal(0, 1e-4, (4000, DB2.n_channels))
    model, normalisation = tiny_model(DB2.n_channels)
    scores = FrameScorer(model, normalisation, torch.ones(DB2.n_channels, dtype=torch.bool), len(CLASSES))
    frames = torch.from_numpy(FrameMaker(DB2.sampling_rate_hz, PREPROCESS, False, DB2.n_channels).push(emg))
    logits = scores(frames, batch=256)
    margin = (logits[:, 1:].amax(1) - logits[:, 0]).median().item()
    calibration = {"bias": margin - 1.0, "per_subject": {"db2/s1": margin + 1e-3}}
    path = network_file(tmp_path / "model.pt", model, normalisation, rest_bias=margin - 1.0, calibration=calibration)
    saved = {"rest_bias": margin - 1.0, "calibration": calibration}
    decided = {}
    for subject in ("db2/s1", "db2/s2", None):
        controller = Controller.from_model_file(path, DB2, ["B1", "B2", "B3"], vote_frames=5, subject=subject)
        decided[subject] = controller.push(emg)
        bias = saved["rest_bias"] if subject is None else subject_rest_bias(saved, subject)
        offline = offline_decisions(logits + class_bias(CLASSES, bias), ["B1", "B2", "B3"], 5, None)
        assert decided[subject] == [CLASSES[i] for i in offline.tolist()]
    assert decided["db2/s2"] == decided[None] and decided["db2/s1"].count("rest") > decided[None].count("rest")


@pytest.mark.parametrize("rule", [None, RULE], ids=["vote", "hysteresis"])
def test_the_rest_bias_of_model_pt_decides_alike_in_the_controller_the_stream_scorer_and_the_exported_model(
    tmp_path, rule
):
    """The calibrated rest bias is part of the model: the controller of the file, the stream evaluation's scorer (the
    same FrameScorer with the file's bias) and the ONNX export all decide with it, and it changes the decisions;
    so is its decision rule (model.pt's decision), which all of them decide with."""
    pytest.importorskip("onnxruntime")
    from contrastive_prosthetics.learning.stream_scoring import class_bias
    from contrastive_prosthetics.realtime.export import export_model, exported_controller

    emg = np.random.default_rng(1).normal(0, 1e-4, (4000, DB2.n_channels))  # 200 frames
    model, normalisation = tiny_model(DB2.n_channels)
    plain = Controller.from_model(model, normalisation, CLASSES, PREPROCESS, DB2, ["B1", "B2", "B3"], vote_frames=5)
    unbiased = plain.push(emg)
    scores = FrameScorer(model, normalisation, torch.ones(DB2.n_channels, dtype=torch.bool), len(CLASSES))
    frames = torch.from_numpy(FrameMaker(DB2.sampling_rate_hz, PREPROCESS, False, DB2.n_channels).push(emg))
    margin = (scores(frames, batch=256)[:, 1:].amax(1) - scores(frames, batch=256)[:, 0]).median().item()
    bias = margin + 1e-3  # about half of the frames change side
    decision = None if rule is None else rule.as_dict()
    path = network_file(tmp_path / "model.pt", model, normalisation, rest_bias=bias, decision=decision)
    from_file = Controller.from_model_file(path, DB2, ["B1", "B2", "B3"], vote_frames=5).push(emg)
    export_model(path, tmp_path / "deploy")
    exported = exported_controller(tmp_path / "deploy", DB2, ["B1", "B2", "B3"], vote_frames=5).push(emg)
    biased = FrameScorer(
        model, normalisation, torch.ones(DB2.n_channels, dtype=torch.bool), len(CLASSES), bias=class_bias(CLASSES, bias)
    )
    offline = offline_decisions(biased(frames, batch=256), ["B1", "B2", "B3"], 5, rule)
    assert from_file == exported == [CLASSES[i] for i in offline.tolist()]
    assert from_file.count("rest") > unbiased.count("rest")
