"""A gesture described to the model.pt the calibrate command wrote: a pose model calibrated by prototypes keeps its
trained pose class encoder in the file (``pose_encoder``), so Controller.from_model_file then describe gives the
embedding the controller that calibrated gives, the calibrated rows unchanged; export --describe of the file too. A
calibrated file written before the field existed still loads and decides, and describing to it is refused with what to
do (a model trained without a pose class encoder is refused as before). The tiny pose model and synthetic recording of
test_describe_calibrate.py: no training."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from test_cli import error_line
from test_describe_calibrate import CODING, REPETITIONS, class_embeddings, pose_model
from test_realtime import CLASSES, db2_recording, network_file, tiny_model

from contrastive_prosthetics.cli import main
from contrastive_prosthetics.core.atomic import atomic_torch_save
from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.data.ninapro import DB2
from contrastive_prosthetics.learning.model_file import read_model_file
from contrastive_prosthetics.realtime.controller import Controller
from contrastive_prosthetics.realtime.personalised import calibrate_model_file, labelled_recording

VOTE = 25  # frames: the calibrate command's default 250 ms at 100 Hz
POSE = np.random.default_rng(3).normal(0.0, 10.0, 22)  # a gesture's mean pose, in raw glove units
TEST = slice(80000, 100000)  # samples the controllers decide


def pose_model_file(path):
    """model.pt of the tiny pose model (B3 held out), as training writes one: its pose prototypes and spread."""
    model, normalisation = pose_model()
    network_file(path, model, normalisation)
    fields = {"pose_prototypes": model.class_codes.clone(), "pose_spread": CODING.spread, "unseen": list(CODING.unseen)}
    atomic_torch_save(read_model_file(path) | fields, path)
    return path


def calibrate_to(trained, recording, out, method: str) -> Controller:
    """Write ``trained`` calibrated by ``method`` to ``out`` as the calibrate command does; the controller that
    calibrated the same in memory (no gesture described yet)."""
    calibrate_model_file(trained, [recording], DB2, out, method, repetitions=REPETITIONS)
    controller = Controller.from_model_file(trained, DB2, [], VOTE)
    controller.calibrate([labelled_recording(recording, DB2, None)], method, repetitions=REPETITIONS)
    return controller


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The trained pose model.pt, the user's recording, the model.pt calibrated by prototypes and the controller
    that calibrated in memory."""
    folder = tmp_path_factory.mktemp("calibrated")
    trained = pose_model_file(folder / "model.pt")
    recording, emg = db2_recording(folder)
    out = folder / "personal" / "model.pt"
    controller = calibrate_to(trained, recording, out, "prototypes")
    return {"trained": trained, "recording": recording, "emg": emg, "calibrated": out, "in_memory": controller}


def test_the_calibrated_file_keeps_the_trained_pose_class_encoder_and_what_coding_needs(files):
    saved, trained = read_model_file(files["calibrated"]), read_model_file(files["trained"])
    assert saved["model_config"]["class_encoder"] == "onehot" and saved["personalisation"]["method"] == "prototypes"
    state = trained["state_dict"]
    encoder = {key.removeprefix("class_encoder."): value for key, value in state.items() if "class_encoder." in key}
    assert saved["pose_encoder"].keys() == encoder.keys()
    for key, value in encoder.items():
        assert torch.equal(saved["pose_encoder"][key], value), key
    torch.testing.assert_close(saved["pose_spread"], trained["pose_spread"], rtol=0, atol=0)
    assert saved["unseen"] == trained["unseen"] == ["B3"]


# A new gesture (a new last row), and the unseen one (its row replaced).
@pytest.mark.parametrize("method, name", [("prototypes", "grip"), ("prototypes", "B3"), ("fine_tune", "grip")])
def test_describing_to_the_calibrated_file_gives_what_the_controller_that_calibrated_gives(
    files, method, name, tmp_path
):
    path, in_memory = files["calibrated"], files["in_memory"]
    if method != "prototypes":
        path = tmp_path / "personal.pt"
        in_memory = calibrate_to(files["trained"], files["recording"], path, method)
    network = in_memory.network  # described to in a copy: the fixture's controller stays undescribed
    options = {"pose_coding": network.coding, "pose_encoder": network.pose_encoder}
    reference = Controller.from_model(
        network.model, network.normalisation, CLASSES, in_memory.params, DB2, [], VOTE, **options
    )
    calibrated = class_embeddings(reference)
    reference.describe(name, POSE)
    loaded = Controller.from_model_file(path, DB2, [], VOTE)
    before = class_embeddings(loaded)
    torch.testing.assert_close(before, calibrated, rtol=0, atol=1e-6)
    loaded.describe(name, POSE)
    after, expected = class_embeddings(loaded), class_embeddings(reference)
    assert loaded.classes == reference.classes == (CLASSES if name == "B3" else [*CLASSES, name])
    index = loaded.classes.index(name)
    torch.testing.assert_close(after[index], expected[index], rtol=0, atol=1e-6)
    others = [row for row in range(len(CLASSES)) if row != index]
    torch.testing.assert_close(after[others], before[others], rtol=0, atol=1e-6)  # the calibrated rows unchanged


def test_the_calibrated_file_decides_a_described_gesture_as_the_controller_that_calibrated(files):
    in_memory = Controller.from_model_file(files["trained"], DB2, [], VOTE)
    in_memory.calibrate([labelled_recording(files["recording"], DB2, None)], "prototypes", repetitions=REPETITIONS)
    loaded = Controller.from_model_file(files["calibrated"], DB2, [], VOTE)
    for controller in (in_memory, loaded):
        controller.describe("grip", POSE)
        controller.choose(["B1", "grip"])
    assert loaded.push(files["emg"][TEST]) == in_memory.push(files["emg"][TEST])


def test_export_describes_a_gesture_to_the_calibrated_file_as_its_controller(files, tmp_path):
    pytest.importorskip("onnxruntime")
    from contrastive_prosthetics.realtime.export import exported_controller

    out, pose = tmp_path / "personal.pt", tmp_path / "grip.txt"
    pose.write_text(" ".join(repr(value) for value in POSE.tolist()))
    calibrate = ["calibrate", "--model", str(files["trained"]), "--recording", str(files["recording"])]
    calibrate += ["--database", "db2", "--method", "prototypes", "--repetitions", str(REPETITIONS), "--out", str(out)]
    assert main(calibrate) == 0
    deploy = tmp_path / "deploy"
    assert main(["export", "--model", str(out), "--out-dir", str(deploy), "--describe", f"grip={pose}"]) == 0
    assert json.loads((deploy / "deployment.json").read_text())["classes"] == [*CLASSES, "grip"]
    controller = Controller.from_model_file(out, DB2, [], VOTE)
    controller.describe("grip", POSE)
    controller.choose(["B1", "grip"])
    exported = exported_controller(deploy, DB2, ["B1", "grip"], VOTE, "torchscript")
    assert exported.push(files["emg"][TEST]) == controller.push(files["emg"][TEST])


def test_a_calibrated_file_from_before_the_field_loads_and_describing_to_it_is_refused_with_what_to_do(
    files, tmp_path, capsys
):
    old = tmp_path / "old.pt"
    saved = read_model_file(files["calibrated"])
    del saved["pose_encoder"]  # as the calibrate command wrote it before model.pt kept the encoder
    atomic_torch_save(saved, old)
    controller = Controller.from_model_file(old, DB2, ["B1"], VOTE)  # backward compatible: it loads and decides
    torch.testing.assert_close(class_embeddings(controller), class_embeddings(files["in_memory"]), rtol=0, atol=1e-6)
    assert controller.network.pose_encoder is None and len(controller.push(files["emg"][TEST])) > 0
    message = (
        r"old\.pt: calibrated to its user from a model with a pose class encoder by an older version.*describe it "
        r"before calibrating.*calibrate .*model\.pt again with this version"
    )
    with pytest.raises(InputError, match=message):
        controller.describe("grip", POSE)
    assert controller.classes == CLASSES  # nothing changed
    deploy = tmp_path / "deploy"
    pose = tmp_path / "grip.txt"
    pose.write_text(" ".join(["1.0"] * 22))
    assert main(["export", "--model", str(old), "--out-dir", str(deploy), "--describe", f"grip={pose}"]) == 2
    assert re.search(message, error_line(capsys, "export")) and not deploy.exists()


def test_a_calibrated_model_trained_without_a_pose_class_encoder_is_refused_as_before(files, tmp_path):
    onehot = network_file(tmp_path / "onehot.pt", *tiny_model(DB2.n_channels))
    out = tmp_path / "personal.pt"
    calibrate_model_file(onehot, [files["recording"]], DB2, out, "prototypes", repetitions=REPETITIONS)
    assert read_model_file(out)["pose_encoder"] is None
    with pytest.raises(
        InputError, match=r"personal\.pt: its classes are not described by hand poses.*class_encoder: pose"
    ):
        Controller.from_model_file(out, DB2, ["B1"], VOTE).describe("grip", POSE)


def test_a_pose_encoder_that_does_not_fit_the_model_is_refused_naming_the_file_and_the_field(files, tmp_path):
    edited = tmp_path / "edited.pt"
    saved = read_model_file(files["calibrated"])
    saved["pose_encoder"] = {key: value[:1] for key, value in saved["pose_encoder"].items()}  # shapes cut down
    atomic_torch_save(saved, edited)
    with pytest.raises(InputError, match=r"edited\.pt: pose_encoder does not fit model_config .*calibrate the trained"):
        Controller.from_model_file(edited, DB2, ["B1"], VOTE)


def test_a_pose_model_calibrated_by_adabn_keeps_its_pose_class_encoder_in_the_model_and_none_beside_it(files, tmp_path):
    out = tmp_path / "adabn.pt"
    calibrate_model_file(files["trained"], [files["recording"]], DB2, out, "adabn", repetitions=REPETITIONS)
    saved = read_model_file(out)
    assert saved["model_config"]["class_encoder"] == "pose" and saved["pose_encoder"] is None
    controller = Controller.from_model_file(out, DB2, ["B1"], VOTE)
    controller.describe("grip", POSE)  # coded by the model's own pose class encoder
    assert controller.classes == [*CLASSES, "grip"]
