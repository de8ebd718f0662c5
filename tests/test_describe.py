"""A gesture given only its pose, end to end: a pose model trained with B3 held out, on raw recordings converted as
the pipeline converts them; the controller given B3's mean pose from the other subjects' gloves decides subject 1's
raw EMG as the stream evaluation decides that subject's stream, and zero_shot_stream.tsv counts those decisions.
Every description the controller cannot take is refused with what to do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PREPROCESS, make_protocol, write_mat
from test_cli import error_line, run
from test_realtime import network_file, tiny_model
from test_train import ARCHITECTURE, TRAINING, settings_of

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.data.convert import convert_subject
from contrastive_prosthetics.data.ninapro import DB2
from contrastive_prosthetics.evaluation.stream import evaluate_stream, scored_test_streams
from contrastive_prosthetics.evaluation.tables import OPTIONAL_COLUMNS, read_table
from contrastive_prosthetics.learning.dataset import DB23, Selection
from contrastive_prosthetics.learning.decisions import allowed_classes, decide
from contrastive_prosthetics.learning.folds import fold_selections
from contrastive_prosthetics.learning.model_file import read_model_file
from contrastive_prosthetics.learning.poses import fold_codes, pose_description
from contrastive_prosthetics.learning.train import train_fold
from contrastive_prosthetics.realtime.controller import Controller
from contrastive_prosthetics.realtime.network import read_descriptions

CHOSEN = ["B1", "B2", "B3", "B4"]  # the gestures the user chooses (the recordings hold all 17 of exercise B)
UNSEEN = "B3"
FOLD = {"scheme": "repetitions", "train": [1, 3, 4], "validation": [6], "test": [2, 5]}
ZERO_SHOT = {**FOLD, "unseen": [UNSEEN], "oracle": "reps", "family": "zs"}
POSE = {"kind": "contrastive", "adabn": False, "class_encoder": "pose"}
SETTINGS = settings_of(
    TRAINING | {"frames": "stream", "guard_ms": 30, "search": TRAINING["search"] | {"trials": 1}},
    rest_false_activation_target=0.1,
    vote_window_ms=50,
    rest_promise="per_user",
)
VOTE = 5  # frames: the stream evaluation's 50 ms vote
HOP = 20  # samples per frame at 2 kHz
pytestmark = pytest.mark.slow  # the module's fixture converts three subjects and trains two pose models


def posed_recording(path, subject: int):
    """A raw DB2 recording of B1-B17 whose EMG follows the hand's pose: each movement's channel gains are a fixed
    function of its glove pose (the same for everyone, plus a little of the subject's own), so that a pose class
    encoder can place a gesture from its pose; the glove holds the pose during the movement, the subject's rest
    posture otherwise."""
    labels = list(range(1, 18))
    protocol = make_protocol(labels, DB2.repetitions, movement_samples=2400, rest_samples=2200, relabel_trim=100)
    poses = np.random.default_rng(11).normal(0.0, 20.0, (18, 22))
    poses += np.random.default_rng(200 + subject).normal(0.0, 2.0, (18, 22))
    poses[0] = 0.0
    mixing = np.random.default_rng(12).normal(0.0, 0.05, (22, DB2.n_channels))
    gains = 0.3 + np.abs(poses @ mixing)
    labels = protocol.restimulus[:, 0].astype(int)
    rng = np.random.default_rng(subject)
    emg = rng.standard_normal((len(labels), DB2.n_channels)) * gains[labels] * 1e-4 + 2e-6
    rest_posture = np.random.default_rng(300 + subject).normal(40.0, 5.0, 22)
    glove = rest_posture + poses[labels] + rng.normal(0.0, 0.5, (len(labels), 22))
    return write_mat(path, protocol, emg, glove=glove), emg


@pytest.fixture(scope="module")
def described_run(tmp_path_factory):
    """Three converted subjects; the pose model trained with B3 held out (``zs``) and its oracle (``reps``)."""
    folder = tmp_path_factory.mktemp("described")
    paths, emg = [], {}
    for subject in (1, 2, 3):
        recording, emg[subject] = posed_recording(folder / f"s{subject}" / f"S{subject}_E1_A1.mat", subject)
        paths.append(folder / f"s{subject}.pt")
        convert_subject(DB2, subject, {"B": str(recording)}, ["B"], PREPROCESS, paths[-1])
    for name, fold in (("zs", ZERO_SHOT), ("reps", FOLD)):
        train_fold(paths, "pose", POSE, ARCHITECTURE, name, fold, SETTINGS, 0, folder / name, "cpu")
    raw = DB23.load(paths, device="cpu", with_streams=True)
    train = fold_selections(raw, ZERO_SHOT, "zs").train
    others = Selection(train.subjects[train.subjects != 0], train.classes, train.repetitions)
    return {
        "folder": folder,
        "paths": paths,
        "emg": emg,
        "raw": raw,
        "description": pose_description(raw, others, UNSEEN),
    }


def stretch_decisions(controller: Controller, emg: np.ndarray, stretches: list[np.ndarray]) -> list[list[str]]:
    """The controller fed the whole recording in order, restarted at the start of every scored stretch (as the stream
    evaluation restarts it): the decisions of each stretch's frames (``stretches`` in recording order)."""
    out, fed = [], 0
    for positions in stretches:
        assert positions[0] * HOP >= fed, "stretches out of recording order"
        if positions[0] * HOP > fed:  # the frames before the stretch, whose decisions the evaluation does not score
            controller.push(emg[fed : positions[0] * HOP])
        controller.restart()
        out.append(controller.push(emg[positions[0] * HOP : (positions[-1] + 1) * HOP]))
        fed = (positions[-1] + 1) * HOP
    return out


def test_the_described_gesture_is_coded_as_the_stream_evaluation_codes_the_subjects_unseen_gesture(described_run):
    """Training's subject prototypes for subject 1: B3 from subjects 2 and 3's gloves, divided by model.pt's spread;
    the stored new-user code (everyone's mean) differs."""
    model = described_run["folder"] / "zs" / "model.pt"
    controller = Controller.from_model_file(model, DB2, CHOSEN, VOTE)
    unseen, raw = controller.classes.index(UNSEEN), described_run["raw"]
    stored = controller.network.model.class_codes[unseen].clone()
    controller.describe(UNSEEN, described_run["description"])
    codes = fold_codes(raw, fold_selections(raw, ZERO_SHOT, "zs").train, [unseen])
    torch.testing.assert_close(controller.network.model.class_codes[unseen], codes.subjects[0, unseen])
    torch.testing.assert_close(read_model_file(model)["pose_spread"], codes.spread)
    assert not torch.allclose(stored, codes.subjects[0, unseen])


def test_the_controller_decides_a_described_gesture_as_the_stream_evaluation(described_run):
    """Subject 1's raw EMG fed to the controller given B3 by description (and its own rest bias) decides every test
    frame as the stream evaluation decides subject 1's stream among B1-B4 + rest; a new name for the same pose decides
    alike where B3's stored code is not chosen. (Among B1-B4 the tiny model may take B3 for a trained gesture; among
    B3 + rest it decides B3 on some of its frames: the zero_shot_stream test.)"""
    model, raw = described_run["folder"] / "zs" / "model.pt", described_run["raw"]
    _, _, scored, _ = scored_test_streams(model, described_run["paths"], "zs", ZERO_SHOT, limit=10000)
    # In recording order: the controller is fed the recording once (the evaluation scores repetition by repetition).
    stretches = sorted(((p, logits) for subject, p, logits in scored if subject == 0), key=lambda s: s[0][0])
    expected = [
        [raw.classes[c] for c in decide(logits, allowed_classes(raw.classes, CHOSEN), VOTE).tolist()]
        for _, logits in stretches
    ]
    controller = Controller.from_model_file(model, DB2, ["B1"], VOTE, subject="db2/s1")
    controller.describe(UNSEEN, described_run["description"])
    controller.choose(CHOSEN)
    decided = stretch_decisions(controller, described_run["emg"][1], [positions for positions, _ in stretches])
    assert decided == expected
    renamed = Controller.from_model_file(model, DB2, ["B1"], VOTE, subject="db2/s1")
    renamed.describe("grip", described_run["description"])
    assert renamed.classes == [*raw.classes, "grip"]
    renamed.choose(["B1", "B2", "grip", "B4"])
    again = stretch_decisions(renamed, described_run["emg"][1], [positions for positions, _ in stretches])
    assert again == [[("grip" if name == UNSEEN else name) for name in part] for part in expected]


def test_the_zero_shot_stream_table_counts_the_controllers_decisions(described_run, tmp_path):
    """zero_shot_stream.tsv of the zero-shot fold: its unseen set's row of subject 1 (50 ms vote) is the controller's
    decisions among B3 + rest on that subject's test frames; every set has the oracle's numbers beside it."""
    model, oracle = (described_run["folder"] / name / "model.pt" for name in ("zs", "reps"))
    settings = dict(subset_sizes=[2], trials=1, subset_trials=2, vote_ms=[0, 50], seed=0, adaptation_limit=10000)
    evaluate_stream(model, described_run["paths"], "zs", ZERO_SHOT, tmp_path, **settings, oracle_path=oracle)
    table = read_table(tmp_path / "zero_shot_stream.tsv")
    assert list(table.columns) == OPTIONAL_COLUMNS["zero_shot_stream"]
    assert set(table["set"]) == {"unseen", "seen", "all"} and set(table["oracle_fold"]) == {"reps"}
    assert set(table["subject"]) == {"all", "db2/s1", "db2/s2", "db2/s3"} and table["oracle_accuracy"].notna().all()
    row = table.query("set == 'unseen' and subject == 'db2/s1' and vote_frames == @VOTE").iloc[0]
    assert row["gestures"] == UNSEEN and row["classes"] == 2 and row["movement_chance"] == 0.5
    raw = described_run["raw"]
    _, _, scored, _ = scored_test_streams(model, described_run["paths"], "zs", ZERO_SHOT, limit=10000)
    stretches = sorted((positions for subject, positions, _ in scored if subject == 0), key=lambda p: p[0])
    controller = Controller.from_model_file(model, DB2, [], VOTE, subject="db2/s1")
    controller.describe(UNSEEN, described_run["description"])
    controller.choose([UNSEEN])
    decided = np.array(
        [name for part in stretch_decisions(controller, described_run["emg"][1], stretches) for name in part]
    )
    truth = np.array([raw.classes[c] for c in raw.streams.classes[np.concatenate(stretches)].tolist()])
    assert row["movement_accuracy"] == pytest.approx((decided[truth == UNSEEN] == UNSEEN).mean(), abs=1e-12)
    assert row["rest_false_activation"] == pytest.approx((decided[truth == "rest"] == UNSEEN).mean(), abs=1e-12)
    assert row["movement_accuracy"] > 0
    # Outside a zero-shot fold the table is its header only.
    evaluate_stream(oracle, described_run["paths"], "reps", FOLD, tmp_path / "reps", **settings)
    assert read_table(tmp_path / "reps" / "zero_shot_stream.tsv").empty


def test_the_exported_model_decides_a_gesture_described_at_export_as_the_controller(described_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from contrastive_prosthetics.realtime.export import export_model, exported_controller

    model, signal = described_run["folder"] / "zs" / "model.pt", described_run["emg"][1][:90000]  # B1-B3
    controller = Controller.from_model_file(model, DB2, ["B1"], VOTE)
    controller.describe("grip", described_run["description"])
    controller.choose(["B1", "grip"])
    decided = controller.push(signal)
    export_model(model, tmp_path / "deploy", descriptions={"grip": described_run["description"]})
    for backend in ("onnx", "torchscript"):
        exported = exported_controller(tmp_path / "deploy", DB2, ["B1", "grip"], VOTE, backend)
        assert exported.push(signal) == decided, backend
        with pytest.raises(InputError, match=r"fixed at export.*export --describe"):
            exported.describe("other", described_run["description"])
    assert "grip" in decided


def test_replay_takes_a_described_gesture_from_a_pose_file(described_run, tmp_path):
    pose = tmp_path / "grip.txt"
    pose.write_text(", ".join(repr(value) for value in described_run["description"].tolist()) + "\n")
    recording = described_run["folder"] / "s1" / "S1_E1_A1.mat"
    model = described_run["folder"] / "zs" / "model.pt"
    common = ["--model", str(model), "--recording", str(recording), "--database", "db2", "--vote-ms", "50"]
    assert (
        run(
            "replay",
            *common,
            "--gestures",
            "B1",
            "grip",
            "--describe",
            f"grip={pose}",
            "--out",
            str(tmp_path / "t.tsv"),
        )
        == 0
    )
    timeline = pd.read_csv(tmp_path / "t.tsv", sep="\t")
    assert set(timeline["decided"]) <= {"rest", "B1", "grip"} and "grip" in set(timeline["decided"])


@pytest.mark.parametrize(
    "name, pose, message",
    [
        ("B1", None, r"'B1' is a class .*model\.pt was trained on.*\(B3\); name it otherwise"),
        ("rest", None, r"'rest' is a class .*trained on"),
        ("", None, r"needs a name"),
        ("grip", np.zeros(21), r"shape \(21,\): give the 22 glove values"),
        ("grip", np.zeros((1, 22)), r"shape \(1, 22\)"),
        ("grip", np.where(np.arange(22) == 4, np.nan, 0.0), r"NaN or infinite at sensors \[4\]"),
    ],
)
def test_a_description_that_cannot_be_taken_is_refused(described_run, name, pose, message):
    model = described_run["folder"] / "zs" / "model.pt"
    controller = Controller.from_model_file(model, DB2, ["B1"], VOTE)
    with pytest.raises(InputError, match=message):
        controller.describe(name, described_run["description"] if pose is None else pose)
    assert controller.classes == described_run["raw"].classes  # nothing changed


def test_a_model_without_a_pose_class_encoder_or_its_spread_is_refused(described_run, tmp_path):
    onehot = network_file(tmp_path / "onehot.pt", *tiny_model(DB2.n_channels))
    with pytest.raises(
        InputError, match=r"onehot\.pt: its classes are not described by hand poses.*class_encoder: pose"
    ):
        Controller.from_model_file(onehot, DB2, ["B1"], VOTE).describe("grip", np.zeros(22))
    older = read_model_file(described_run["folder"] / "zs" / "model.pt")
    torch.save(older | {"pose_spread": None}, tmp_path / "older.pt")  # a file from before the field: by hand
    with pytest.raises(InputError, match=r"older\.pt: no pose_spread.*train it again"):
        Controller.from_model_file(tmp_path / "older.pt", DB2, ["B1"], VOTE).describe("grip", np.zeros(22))


def test_pose_files_that_are_not_descriptions_are_refused_on_the_command_line(described_run, tmp_path, capsys):
    words, twice = tmp_path / "words.txt", tmp_path / "pose.txt"
    words.write_text("open hand\n")
    twice.write_text(" ".join(["1.0"] * 22))
    with pytest.raises(InputError, match=r"words\.txt: not a pose description"):
        read_descriptions([("grip", str(words))])
    with pytest.raises(InputError, match=r"\['grip'\] more than once"):
        read_descriptions([("grip", str(twice)), ("grip", str(twice))])
    with pytest.raises(InputError, match=r"missing\.txt: cannot read"):
        read_descriptions([("grip", str(tmp_path / "missing.txt"))])
    model = described_run["folder"] / "zs" / "model.pt"
    short = tmp_path / "short.txt"
    short.write_text("1 2 3")
    args = ["--model", str(model), "--out-dir", str(tmp_path / "deploy"), "--describe", f"grip={short}"]
    assert run("export", *args) == 2
    assert "shape (3,)" in error_line(capsys, "export") and not (tmp_path / "deploy").exists()
    with pytest.raises(SystemExit):
        run("export", "--model", str(model), "--out-dir", str(tmp_path / "x"), "--describe", "grip")
