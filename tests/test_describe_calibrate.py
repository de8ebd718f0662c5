"""A gesture described by its pose and a calibration to the user, in either order, as on a user's first day
(Controller.describe, Controller.calibrate): a recording without the described gesture is refused, naming it, unless
the trained (and described) class embeddings are kept; kept, the described class keeps the embedding its pose gave
while the recorded classes' are the user's, and the controller decides it; described after calibrating, it is coded
by the trained pose class encoder beside the user's embeddings. A tiny pose model and synthetic EMG: no training."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PREPROCESS
from test_realtime import CLASSES, db2_recording

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.data.ninapro import DB2
from contrastive_prosthetics.learning.dataset import Normalisation
from contrastive_prosthetics.learning.inference import normalised_frames
from contrastive_prosthetics.learning.models import ModelConfig, batchnorm_layers, build_model
from contrastive_prosthetics.learning.personalise import embeddings
from contrastive_prosthetics.realtime.adabn import user_frames
from contrastive_prosthetics.realtime.controller import Controller
from contrastive_prosthetics.realtime.network import PoseCoding
from contrastive_prosthetics.realtime.personalised import labelled_recording

METHODS = ["adabn", "prototypes", "fine_tune"]
REPETITIONS = 2  # the user records the first two repetitions of B1-B3; the test frames are B2's last two
CODING = PoseCoding(torch.full((22,), 2.0), unseen=("B3",))  # B3: a gesture the model holds but was not trained on
LIVE = torch.ones(DB2.n_channels, dtype=torch.bool)


def pose_model() -> tuple:
    """A tiny contrastive model whose class encoder reads poses, each trained class given a pose code."""
    torch.manual_seed(0)
    config = ModelConfig("contrastive", DB2.n_channels, len(CLASSES), 8, 4, 16, 1, 0.0, 1, class_encoder="pose")
    model = build_model(config).eval()
    with torch.no_grad():
        model.class_codes.copy_(torch.randn(len(CLASSES), 22))
    normalisation = Normalisation(
        torch.full((DB2.n_channels,), -9.0), torch.ones(DB2.n_channels), True, torch.full((DB2.n_channels,), 1e-7)
    )
    return model, normalisation


def controller_of(model, normalisation) -> Controller:
    return Controller.from_model(
        model, normalisation, CLASSES, PREPROCESS, DB2, ["B1"], 5, rest_target=0.1, guard_ms=100, pose_coding=CODING
    )


def class_embeddings(controller: Controller) -> torch.Tensor:
    with torch.no_grad():
        return controller.network.model.encode_classes().clone()


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """The model, the user's labelled recording (raw EMG, names, repetitions) and the test stretch: B2's last two
    repetitions with the rest before each."""
    path, _ = db2_recording(tmp_path_factory.mktemp("user"))
    emg, names, repetition = labelled_recording(path, DB2, None)
    late = np.flatnonzero((names == "B2") & (repetition >= 5))
    start, stop = late[0] - 2200, late[-1] + 1  # from the rest before B2's fifth repetition
    frame_names = names[start:stop][np.arange(20 - 1, stop - start, 20)]  # each 10 ms frame's label
    return {
        "model": pose_model(),
        "recording": (emg, names, repetition),
        "test": (emg[start:stop], frame_names),
        "aimed": {},  # per method, the pose aimed at B2's frames
        "calibrated": {},  # per method, the class embeddings of the model calibrated without a description
    }


def calibrate(controller: Controller, user, method: str, keep: bool = False) -> None:
    controller.calibrate([user["recording"]], method, repetitions=REPETITIONS, keep_trained_gestures=keep)


def aimed_pose(user, method: str) -> np.ndarray:
    """A description whose code the trained pose class encoder embeds where the model calibrated by ``method`` embeds
    B2's test frames: a gesture the controller should decide on them where B2 is not chosen (a code built to match
    the frames; the user's encoder after calibration is the same with or without the described gesture)."""
    if method in user["aimed"]:
        return user["aimed"][method]
    model, normalisation = user["model"]
    reference = controller_of(model, normalisation)
    calibrate(reference, user, method)
    user["calibrated"][method] = class_embeddings(reference)
    emg, frame_names = user["test"]
    frames = user_frames(emg, DB2, PREPROCESS, 1)[frame_names == "B2"]
    calibrated = reference.network.model
    target = F.normalize(embeddings(calibrated, normalised_frames(frames, normalisation, LIVE)).mean(0), dim=0)
    encoder = copy.deepcopy(model.class_encoder).requires_grad_(False)  # the trained pose class encoder, left alone
    code = torch.zeros(22, requires_grad=True)
    optimiser = torch.optim.Adam([code], lr=0.05)
    for _ in range(300):
        loss = -F.cosine_similarity(encoder(code), target, dim=0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert -loss.item() > 0.95, "the aimed code does not reach B2's frames"
    user["aimed"][method] = (code.detach() * CODING.spread).double().numpy()  # raw glove units: describe divides
    return user["aimed"][method]


def decided_on_b2(controller: Controller, user) -> np.ndarray:
    """The controller's decisions on B2's frames of the test stretch, only the described gesture (and rest) chosen."""
    emg, frame_names = user["test"]
    decisions = np.array(controller.push(emg))
    assert len(decisions) == len(frame_names) and set(decisions) <= {"rest", "grip"}
    return decisions[frame_names == "B2"]


@pytest.mark.parametrize("method", METHODS)
def test_calibrating_without_the_described_gesture_is_refused_naming_it(user, method):
    controller = controller_of(*user["model"])
    controller.describe("grip", np.ones(22))
    before, model = class_embeddings(controller), controller.network.model
    with pytest.raises(
        InputError, match=r"no calibration frame of \['grip'\].*or described\) class embeddings.*keep_trained_gestures"
    ):
        calibrate(controller, user, method)
    assert controller.fit_frames["grip"] == 0 and min(controller.fit_frames[name] for name in CLASSES) > 0
    assert controller.network.model is model and torch.equal(class_embeddings(controller), before)  # unchanged
    assert controller.classes == [*CLASSES, "grip"]


@pytest.mark.parametrize("method", METHODS)
def test_a_described_gesture_kept_through_calibration_keeps_its_pose_embedding_and_is_decided(user, method):
    controller = controller_of(*user["model"])
    controller.describe("grip", aimed_pose(user, method))
    before = class_embeddings(controller)
    statistics = batchnorm_layers(controller.network.model)[0].running_mean.clone()
    calibrate(controller, user, method, keep=True)
    after = class_embeddings(controller)
    assert controller.classes == [*CLASSES, "grip"] and after.shape == before.shape
    assert controller.fit_frames["grip"] == 0 and min(controller.fit_frames[name] for name in CLASSES) > 0
    torch.testing.assert_close(after[-1], before[-1], rtol=0, atol=1e-6)  # the pose's embedding, kept
    if method == "adabn":  # the batch norms adapted, no class embedding touched
        torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
        assert not torch.equal(batchnorm_layers(controller.network.model)[0].running_mean, statistics)
    else:  # every recorded class's embedding is the user's
        for index, name in enumerate(CLASSES):
            assert (after[index] - before[index]).abs().max() > 1e-3, name
    if method != "fine_tune":  # the recorded classes calibrated as without the description (fine-tuning sees it)
        torch.testing.assert_close(after[:-1], user["calibrated"][method], rtol=0, atol=1e-6)
    controller.choose(["grip"])
    assert (decided_on_b2(controller, user) == "grip").mean() > 0.8
    controller.describe("point", np.ones(22))  # and another gesture described after calibrating
    assert controller.classes == [*CLASSES, "grip", "point"]
    torch.testing.assert_close(class_embeddings(controller)[:-1], after, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_a_gesture_described_after_calibrating_is_coded_by_the_trained_pose_encoder(user, method):
    pose = aimed_pose(user, method)
    uncalibrated = controller_of(*user["model"])
    uncalibrated.describe("grip", pose)
    controller = controller_of(*user["model"])
    calibrate(controller, user, method)
    calibrated = class_embeddings(controller)
    controller.describe("grip", pose)
    after = class_embeddings(controller)
    assert controller.classes == [*CLASSES, "grip"] and len(after) == len(CLASSES) + 1
    torch.testing.assert_close(after[:-1], calibrated, rtol=0, atol=1e-6)  # the user's embeddings stay
    torch.testing.assert_close(after[-1], class_embeddings(uncalibrated)[-1], rtol=0, atol=1e-6)  # the pose's
    controller.choose(["grip"])
    assert (decided_on_b2(controller, user) == "grip").mean() > 0.8


def test_describing_an_unseen_gesture_after_calibrating_replaces_its_embedding_only(user):
    controller = controller_of(*user["model"])
    calibrate(controller, user, "prototypes")
    calibrated = class_embeddings(controller)
    reference = controller_of(*user["model"])
    reference.describe("B3", np.ones(22))  # B3 is unseen: its code replaced
    controller.describe("B3", np.ones(22))
    after = class_embeddings(controller)
    assert controller.classes == CLASSES
    b3 = CLASSES.index("B3")
    torch.testing.assert_close(after[b3], class_embeddings(reference)[b3], rtol=0, atol=1e-6)
    keep = [index for index in range(len(CLASSES)) if index != b3]
    torch.testing.assert_close(after[keep], calibrated[keep], rtol=0, atol=1e-6)
    with pytest.raises(InputError, match=r"'B1' is a class the model was trained on"):
        controller.describe("B1", np.ones(22))
