"""Pose prototypes and the zero-shot evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PREPROCESS, emg_for, make_protocol, write_mat
from test_evaluate import brute_force_subset, grid_payload, make_payload

from contrastive_prosthetics.data.convert import convert_subject
from contrastive_prosthetics.data.ninapro import DB1
from contrastive_prosthetics.evaluation import zero_shot
from contrastive_prosthetics.evaluation.artefacts import ZERO_SHOT_TABLES
from contrastive_prosthetics.evaluation.stream_metrics import POOLED
from contrastive_prosthetics.evaluation.tables import OPTIONAL_COLUMNS, read_table
from contrastive_prosthetics.evaluation.zero_shot import of_subject, restricted, voted_metrics, zero_shot_tables
from contrastive_prosthetics.learning.dataset import DB23, SubjectInfo
from contrastive_prosthetics.learning.poses import pose_prototypes


def posed_data(n_subjects=3, n_classes=4, n_reps=4) -> DB23:
    emg = torch.zeros(n_subjects, n_classes, n_reps, 2, 3)
    data = DB23(
        emg,
        torch.ones(n_subjects, n_classes, n_reps, dtype=torch.bool),
        torch.ones(n_subjects, 3, dtype=torch.bool),
        None,
        ["rest", "B1", "B2", "B3"][:n_classes],
        [SubjectInfo("db2", s + 1, False) for s in range(n_subjects)],
        torch.device("cpu"),
        frame_rate_hz=100.0,
    )
    generator = torch.Generator().manual_seed(0)
    data.poses = torch.randn(n_subjects, n_classes, n_reps, 22, generator=generator)
    data.poses[:, 0] = 0.0
    data.pose_mask = torch.ones(n_subjects, 22, dtype=torch.bool)
    return data


def test_a_converted_pose_is_the_segments_mean_glove_minus_the_rest_before_its_movement(tmp_path):
    """The hand's pose of each (class, repetition): the mean glove over its segment's frames minus the mean over the
    rest run just before the movement; rest's and invalid cells' are zeros. DB1's frames are its samples."""
    protocol = make_protocol([1, 2, 3], DB1.repetitions, movement_samples=150, rest_samples=130)
    glove = np.random.default_rng(3).normal(0, 10, (len(protocol.stimulus), 22))
    emg = emg_for(protocol, DB1.n_channels, rectified=True)
    path = write_mat(tmp_path / "S1_A1_E1.mat", protocol, emg, glove=glove)
    converted = convert_subject(DB1, 1, {"A": str(path)}, ["A"], PREPROCESS)
    segments, valid = converted["segments"]["onset"], converted["valid"]
    moving = np.flatnonzero(protocol.restimulus[:, 0])
    expected = torch.zeros((*valid.shape, 22))
    for c, r in valid[1:].nonzero().tolist():
        start, first = int(segments["segment_start"][c + 1, r]), int(converted["run_first"][c + 1, r])
        rest_first = moving[moving < first].max(initial=-1) + 1  # the rest run since the movement before (or the start)
        segment = glove[start : start + segments["glove"].shape[2]]
        torch.testing.assert_close(segments["glove"][c + 1, r], torch.tensor(segment, dtype=torch.float32))
        expected[c + 1, r] = torch.tensor(segment.mean(0) - glove[rest_first:first].mean(0))
    assert valid[1:4].all() and not valid[4:].any()  # three movements of ten repetitions were recorded
    torch.testing.assert_close(segments["pose"], expected, rtol=1e-5, atol=1e-5)


def test_prototypes_average_the_training_cells_and_standardise_each_sensor():
    data = posed_data()
    train = data.select(subjects=["db2/s1", "db2/s2"], repetitions=[1, 3])
    prototypes = pose_prototypes(data, train)
    raw = data.poses[:2][:, :, [0, 2]].double().mean((0, 2))
    torch.testing.assert_close(prototypes.double(), raw / raw.std(0), rtol=1e-5, atol=1e-6)
    # Test subjects and test repetitions take no part.
    data.poses[2] += 100.0
    data.poses[:, :, [1, 3]] -= 50.0
    torch.testing.assert_close(pose_prototypes(data, train), prototypes)


def test_a_sensor_a_subject_lacks_is_left_out_of_its_means():
    data = posed_data()
    train = data.select(subjects=["db2/s1", "db2/s2"], repetitions=[1, 2])
    data.pose_mask[0, 5] = False
    data.poses[0, :, :, 5] = 1000.0  # garbage where the glove had no data
    prototypes = pose_prototypes(data, train)
    alone = data.poses[1, :, :2, 5].double().mean(1)
    others = pose_prototypes(data, train)[:, 5]
    torch.testing.assert_close(others.double(), alone / alone.std(), rtol=1e-5, atol=1e-6)
    data.pose_mask[:, 7] = False  # no subject has sensor 7: zero everywhere
    assert (pose_prototypes(data, train)[:, 7] == 0).all() and prototypes.isfinite().all()


def test_restricting_a_payload_keeps_the_classes_frames_and_scores():
    payload = grid_payload(n_gestures=4, subjects=1, repetitions=1, frames=5, seed=0)
    only = restricted(payload, ["rest", "B2", "B4"])
    assert only["classes"] == ["rest", "B2", "B4"] and set(only["label"].tolist()) == {0, 1, 2}
    assert len(only["label"]) == 15 and only["logits"].shape == (15, 3)
    original = payload["logits"][payload["label"] == 2][:, [0, 2, 4]]
    torch.testing.assert_close(only["logits"][only["label"] == 1], original)


def test_zero_shot_tables_compare_each_set_with_its_oracle_and_chance():
    payload = grid_payload(n_gestures=6, subjects=2, repetitions=2, frames=10, seed=1, boost=0.5)
    oracle = grid_payload(n_gestures=6, subjects=2, repetitions=2, frames=10, seed=1, boost=3.0)
    for p in (payload, oracle):
        p.update(unseen=["B2", "B5"], window="onset")
    tables = zero_shot_tables(payload, oracle, window_frames=5, trials=4, seed=0)
    table, curves = pooled_rows(tables["zero_shot"]), tables["zero_shot_subsets"]
    assert list(table.index) == ["unseen", "seen", "all"]
    assert table.loc["unseen", "classes"] == 3 and table.loc["unseen", "chance"] == pytest.approx(1 / 3)
    assert table.loc["seen", "gestures"] == "B1 B3 B4 B6" and table.loc["all", "classes"] == 7
    # Each set's accuracy is the vote's among its classes alone (with rest), written out window by window.
    for name, allowed in (("unseen", [0, 2, 5]), ("seen", [0, 1, 3, 4, 6]), ("all", list(range(7)))):
        for scores, column in ((payload, "accuracy"), (oracle, "oracle_accuracy")):
            assert table.loc[name, column] == pytest.approx(brute_force_subset(scores, 5, allowed)[0]), (name, column)
        assert table.loc[name, "balanced_accuracy"] == pytest.approx(brute_force_subset(payload, 5, allowed)[1])
    assert (table["oracle_accuracy"] > table["accuracy"]).all()  # the boosted "oracle" knows better
    # The curve: 4 subsets drawn per k of the 2 unseen gestures, for the model and the oracle; at k = 2 every subset
    # is the unseen set itself.
    assert len(curves) == 2 * 2 * 4 and set(curves["scored_by"]) == {"model", "oracle"}
    whole = curves[curves["k"] == 2].set_index("scored_by")["accuracy"]
    assert (whole["model"] == table.loc["unseen", "accuracy"]).all()
    assert (whole["oracle"] == table.loc["unseen", "oracle_accuracy"]).all()
    gesture_curve = curves[curves["k"] == 2].set_index("scored_by")["gesture_accuracy"]
    assert (gesture_curve["model"] == table.loc["unseen", "gesture_accuracy"]).all()
    without = dict(payload, unseen=[])
    with pytest.raises(ValueError, match="not a zero-shot fold"):
        zero_shot_tables(without, oracle, window_frames=5, trials=4, seed=0)


def pooled_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of every test subject's windows pooled (subject all), by set."""
    return table[table["subject"] == POOLED].set_index("set")


# Hand-worked windows for the zero-shot numbers: (true class, {class: logit}; the others 0), each window two frames
# alike. Classes rest, B1..B4; B2 and B4 unseen. The decision among a set's classes is the argmax over its columns.
HAND_WORKED = [
    ("B2", {"B2": 2}),  # unseen: B2, right     all: B2, right
    ("B2", {"rest": 2}),  # unseen: rest          all: rest
    ("B2", {"B4": 2}),  # unseen: B4            all: B4
    ("B2", {"rest": 2, "B3": 3}),  # unseen: rest   all: B3 (a seen gesture)
    ("B4", {"B4": 2, "B1": 3}),  # unseen: B4, right  all: B1 (a seen gesture)
    ("B4", {"B2": 2}),  # unseen: B2            all: B2
    ("rest", {"rest": 2}),  # rest, right in every set
    ("rest", {"rest": 2}),
    ("B1", {"B1": 2}),  # seen: B1, right       all: B1, right
    ("B3", {"rest": 2}),  # seen: rest           all: rest
]


def hand_worked_payload(perfect: bool = False, windows: list | None = None) -> dict:
    """:data:`HAND_WORKED` as a payload (``perfect``: every window's true class far ahead, an oracle that knows);
    ``windows``: other windows (subject code, true class, scores) instead, of one subject or several."""
    classes = ["rest", "B1", "B2", "B3", "B4"]
    windows = [(0, *window) for window in HAND_WORKED] if windows is None else windows
    logits, label, subject, repetition = [], [], [], []
    for w, (who, true, scores) in enumerate(windows):
        row = torch.zeros(len(classes))
        for name, value in ({true: 10.0} if perfect else scores).items():
            row[classes.index(name)] = value
        logits += [row, row]
        label += [classes.index(true)] * 2
        subject += [who] * 2
        repetition += [w + 1] * 2  # each window its own segment
    frames = len(label)
    payload = make_payload(
        torch.stack(logits),
        torch.tensor(label),
        torch.tensor(subject),
        torch.tensor(repetition),
        torch.tensor([0, 1] * (frames // 2)),
        n_gestures=4,
    )
    return payload | {"unseen": ["B2", "B4"], "fold": "zs"}


def test_the_zero_shot_table_leads_with_the_unseen_gestures_own_windows():
    """Among rest, B2 and B4 (unseen), the six gesture windows are decided B2, rest, B4, rest, B4, B2: two right,
    gesture accuracy 2/6 = 1/3, at its chance 1/3 (three classes); two decided as rest, 2/6. The balanced accuracy
    is the mean of the recalls: rest 2/2, B2 1/4, B4 1/2, so 7/12 = 0.583, well above chance: rest carries it;
    accuracy (2 + 2)/8 = 1/2. Among rest, B1 and B3 (seen): B1 right, B3 as rest: 1/2, 1/2; balanced (1 + 1 + 0)/3;
    accuracy 3/4. Among all five: right are B2's first and B1's window, 2 of 8; rest decided for B2's second and
    B3's, 2/8; balanced (1 + 1 + 1/4 + 0 + 0)/5 = 0.45; accuracy 4/10; chance 1/5. The oracle decides all right."""
    tables = zero_shot_tables(hand_worked_payload(), hand_worked_payload(perfect=True), 2, trials=2, seed=0)
    table = tables["zero_shot"]
    assert list(table.columns) == OPTIONAL_COLUMNS["zero_shot"]
    assert list(table.columns[5:14]) == [
        "set",
        "subject",
        "decided_by",
        "gesture_accuracy",
        "gesture_chance",
        "gesture_windows_as_rest",
        "balanced_accuracy",
        "accuracy",
        "chance",
    ]
    # One test subject: its own rows are the pooled ones.
    assert table["subject"].tolist() == [POOLED, "db2/s1"] * 3
    own = table[table["subject"] == "db2/s1"].set_index("set").drop(columns="subject")
    pd.testing.assert_frame_equal(own, pooled_rows(table).drop(columns="subject"))
    table = pooled_rows(table)
    expected = {
        "unseen": (1 / 3, 1 / 3, 1 / 3, 7 / 12, 1 / 2, 6),
        "seen": (1 / 2, 1 / 3, 1 / 2, 2 / 3, 3 / 4, 2),
        "all": (2 / 8, 1 / 5, 2 / 8, 9 / 20, 4 / 10, 8),
    }
    columns = ["gesture_accuracy", "gesture_chance", "gesture_windows_as_rest", "balanced_accuracy", "accuracy"]
    for name, (*numbers, gesture_windows) in expected.items():
        assert table.loc[name, columns].tolist() == pytest.approx(numbers), name
        assert table.loc[name, "gesture_windows"] == gesture_windows
        assert table.loc[name, "chance"] == table.loc[name, "gesture_chance"] == 1 / table.loc[name, "classes"]
    oracle = [
        "oracle_gesture_accuracy",
        "oracle_gesture_windows_as_rest",
        "oracle_balanced_accuracy",
        "oracle_accuracy",
    ]
    assert table[oracle].to_numpy().tolist() == [[1.0, 0.0, 1.0, 1.0]] * 3
    # The subset curve at k = 2 (both unseen gestures) is the unseen row again.
    curve = tables["zero_shot_subsets"].query("k == 2 and scored_by == 'model'")
    assert curve["gesture_accuracy"].tolist() == pytest.approx([1 / 3] * len(curve))


# A second subject's hand-worked windows, decided otherwise (same classes; B2 and B4 unseen), and its oracle's: right
# but for B4's second window, which it takes for B2.
SECOND_SUBJECT = [
    ("B2", {"B2": 2}),  # unseen: B2, right
    ("B2", {"B2": 2}),  # unseen: B2, right
    ("B4", {"B4": 2}),  # unseen: B4, right
    ("B4", {"rest": 2}),  # unseen: rest
    ("rest", {"B2": 2}),  # unseen: B2, a false activation
    ("rest", {"rest": 2}),  # rest, right
]
SECOND_ORACLE = [(true, {"B2": 2} if w == 3 else {true: 2}) for w, (true, _) in enumerate(SECOND_SUBJECT)]


def test_each_test_subject_has_its_own_zero_shot_rows_beside_the_pooled_ones():
    """Subject db2/s1 has :data:`HAND_WORKED`'s windows, db2/s2 :data:`SECOND_SUBJECT`'s. Among rest, B2 and B4:

        db2/s1  (test_the_zero_shot_table_leads_...) gesture accuracy 2/6 = 1/3, as rest 2/6 = 1/3, balanced
                (rest 2/2 + B2 1/4 + B4 1/2)/3 = 7/12, accuracy 4/8 = 1/2; oracle (right everywhere) 1, 0, 1, 1
        db2/s2  gesture accuracy 3/4 (B2 twice, B4 once), as rest 1/4, balanced (rest 1/2 + B2 2/2 + B4 1/2)/3 =
                2/3, accuracy (3 + 1)/6 = 2/3; oracle: B4's second window as B2, so 3/4, 0, (1 + 1 + 1/2)/3 = 5/6,
                5/6
        all     the windows pooled: gesture accuracy 5/10 = 1/2, as rest 3/10, balanced (rest 3/4 + B2 3/6 +
                B4 2/4)/3 = 7/12 (not the subjects' mean, 5/8), accuracy 8/14 = 4/7; oracle 9/10, 0,
                (1 + 1 + 3/4)/3 = 11/12, 13/14

    Every set's pooled row is the vote over all the windows, each subject's over its own: the counts add up."""
    model = hand_worked_payload(windows=[(0, *w) for w in HAND_WORKED] + [(1, *w) for w in SECOND_SUBJECT])
    oracle_windows = [(0, true, {true: 10.0}) for true, _ in HAND_WORKED] + [(1, *w) for w in SECOND_ORACLE]
    oracle = hand_worked_payload(windows=oracle_windows)
    tables = zero_shot_tables(model, oracle, 2, trials=2, seed=0)
    table = tables["zero_shot"]
    assert table[["set", "subject"]].values.tolist() == [
        [name, subject] for name in ("unseen", "seen", "all") for subject in (POOLED, "db2/s1", "db2/s2")
    ]
    numbers = ["gesture_accuracy", "gesture_windows_as_rest", "balanced_accuracy", "accuracy"]
    oracle_numbers = [f"oracle_{name}" for name in numbers]
    unseen = table[table["set"] == "unseen"].set_index("subject")
    expected = {
        "db2/s1": ((1 / 3, 1 / 3, 7 / 12, 1 / 2), (1, 0, 1, 1), 6),
        "db2/s2": ((3 / 4, 1 / 4, 2 / 3, 2 / 3), (3 / 4, 0, 5 / 6, 5 / 6), 4),
        POOLED: ((1 / 2, 3 / 10, 7 / 12, 4 / 7), (9 / 10, 0, 11 / 12, 13 / 14), 10),
    }
    for subject, (own, oracles, gesture_windows) in expected.items():
        assert unseen.loc[subject, numbers].tolist() == pytest.approx(own), subject
        assert unseen.loc[subject, oracle_numbers].tolist() == pytest.approx(oracles), subject
        assert unseen.loc[subject, "gesture_windows"] == gesture_windows
    for name, part in table.groupby("set"):
        names = ["rest", *part["gestures"].iloc[0].split()]
        rows = part.set_index("subject")
        pooled, _ = voted_metrics(restricted(model, names), 2)
        best, _ = voted_metrics(restricted(oracle, names), 2)
        assert rows.loc[POOLED, numbers].tolist() == list(pooled.values()), name  # exactly the pooled vote
        assert rows.loc[POOLED, oracle_numbers].tolist() == list(best.values()), name
        assert rows.loc[POOLED, "gesture_windows"] == rows.loc[["db2/s1", "db2/s2"], "gesture_windows"].sum()
    # The confusion counts stay pooled.
    confusion = tables["zero_shot_confusion"]
    assert confusion.query("set == 'unseen' and scored_by == 'model'")["windows"].sum() == 14


def test_a_subjects_payload_keeps_its_frames_and_its_rest_windows():
    payload = grid_payload(n_gestures=2, subjects=3, repetitions=2, frames=4, seed=0, rest_windows=2)
    payload |= {"pose": torch.randn(len(payload["label"]), 22), "glove": torch.zeros(len(payload["label"]), 22)}
    second = of_subject(payload, "db2/s2")
    assert (second["subject"] == 1).all() and len(second["label"]) == 3 * 2 * 4
    torch.testing.assert_close(second["pose"], payload["pose"][payload["subject"] == 1])
    assert (second["rest_window_subject"] == 1).all() and second["rest_window_logits"].shape == (2 * 2, 4, 3)
    torch.testing.assert_close(
        second["rest_window_start"], payload["rest_window_start"][payload["rest_window_subject"] == 1]
    )
    assert second["subjects"] == payload["subjects"] and second["classes"] == payload["classes"]
    with pytest.raises(ValueError, match="no subject db2/s9"):
        of_subject(payload, "db2/s9")


def test_the_zero_shot_confusion_counts_each_sets_windows_by_true_and_decided_class():
    """The counts of :func:`test_the_zero_shot_table_leads_with_the_unseen_gestures_own_windows`'s decisions, zero
    counts omitted: among the unseen gestures B2 is decided B2 once, rest twice and B4 once; B4 is decided B4 once
    and B2 once; rest is rest twice. Among all, B2's fourth window and B4's first go to the seen B3 and B1."""
    tables = zero_shot_tables(hand_worked_payload(), hand_worked_payload(perfect=True), 2, trials=2, seed=0)
    confusion = tables["zero_shot_confusion"]
    assert list(confusion.columns) == OPTIONAL_COLUMNS["zero_shot_confusion"]
    assert (confusion["fold"] == "zs").all() and (confusion["window"] == "onset").all()

    def counts(name: str, who: str = "model") -> dict:
        part = confusion[(confusion["set"] == name) & (confusion["scored_by"] == who)]
        return {(row.true, row.decided): row.windows for row in part.itertuples()}

    assert counts("unseen") == {
        ("rest", "rest"): 2,
        ("B2", "rest"): 2,
        ("B2", "B2"): 1,
        ("B2", "B4"): 1,
        ("B4", "B2"): 1,
        ("B4", "B4"): 1,
    }
    assert counts("seen") == {("rest", "rest"): 2, ("B1", "B1"): 1, ("B3", "rest"): 1}
    assert counts("all") == {
        ("rest", "rest"): 2,
        ("B1", "B1"): 1,
        ("B2", "rest"): 1,
        ("B2", "B2"): 1,
        ("B2", "B3"): 1,
        ("B2", "B4"): 1,
        ("B3", "rest"): 1,
        ("B4", "B1"): 1,
        ("B4", "B2"): 1,
    }
    assert counts("unseen", "oracle") == {("rest", "rest"): 2, ("B2", "B2"): 4, ("B4", "B4"): 2}
    # The table's shares are these counts': B2 and B4's windows decided as rest, of theirs.
    unseen = pd.Series(counts("unseen"))
    gestures = unseen.drop("rest", level=0)
    assert gestures.xs("rest", level=1).sum() / gestures.sum() == pytest.approx(
        pooled_rows(tables["zero_shot"]).loc["unseen", "gesture_windows_as_rest"]
    )


def test_evaluate_zero_shot_writes_its_three_tables(tmp_path, monkeypatch):
    """One file per table of ZERO_SHOT_TABLES, as the rule zero_shot names them, read back as written."""
    payloads = {"model.pt": hand_worked_payload(), "oracle.pt": hand_worked_payload(perfect=True)}
    monkeypatch.setattr(zero_shot, "read_logits", lambda path: payloads[str(path)])
    zero_shot.evaluate_zero_shot(  # a 20 ms vote at 100 Hz: the two frames of each window
        Path("model.pt"), Path("oracle.pt"), tmp_path, vote_window_ms=20, trials=2, seed=0
    )
    written = {name: read_table(tmp_path / f"{name}.tsv") for name in ZERO_SHOT_TABLES}
    assert list(written["zero_shot"].columns) == OPTIONAL_COLUMNS["zero_shot"]
    assert written["zero_shot"]["subject"].tolist() == [POOLED, "db2/s1"] * 3  # read back as names
    assert pooled_rows(written["zero_shot"])["gesture_accuracy"].tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 4])
    assert written["zero_shot_confusion"]["windows"].sum() == 2 * (8 + 4 + 10)  # model and oracle, every set
