"""Configuration checks: a wrong config stops with the key's name before anything runs."""

import copy
import dataclasses

import pytest
import yaml
from conftest import REPO

from contrastive_prosthetics.config import ConfigError, check_schema, load_config, validate_config
from contrastive_prosthetics.data import ninapro

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def edited(change):
    config = copy.deepcopy(DEFAULT)
    change(config)
    return config


def add_fold_over_a_subject_outside_the_data(config):
    config["folds"]["loso"] = {
        "scheme": "subjects",
        "subjects": ["db2/s1", "db2/s9"],
        "test_subject": "db2/s1",
        "train": [1, 2],
        "validation": [6],
    }


@pytest.mark.parametrize(
    "change, message",
    [
        pytest.param(
            lambda c: c["synthetic"].update(movment_s=2.0),
            r"synthetic: Additional properties are not allowed \('movment_s'",
            id="misspelt key",
        ),
        pytest.param(
            lambda c: c["preprocess"]["windows"]["onset"].update(length_ms="long"),
            r"preprocess.windows.onset.length_ms: 'long' is not of type 'number'",
            id="wrong type",
        ),
        pytest.param(
            lambda c: c["data"]["databases"].update(db9=[1]),
            r"data.databases: Additional properties are not allowed \('db9'",
            id="unknown database",
        ),
        pytest.param(
            lambda c: c["data"]["databases"].update(db3=[1, 12]),
            r"data.databases.db3: db3 has subjects 1-11, not \[12\]",
            id="subject a database does not have",
        ),
        pytest.param(
            lambda c: c["data"].update(exercises=["A"]),
            r"data.exercises: db2 has no exercise A",
            id="exercise a database lacks",
        ),
        pytest.param(
            lambda c: c["data"].update(source="local"),
            r"data.local.db2: set the folder",
            id="local source without a folder",
        ),
        pytest.param(
            add_fold_over_a_subject_outside_the_data,
            r"folds.loso.subjects: db2/s9 is not in data.databases",
            id="fold subject outside the data",
        ),
        pytest.param(
            lambda c: c["folds"]["reps-2-5"].update(test=[2, 7]),
            r"folds.reps-2-5.test: repetitions \[7\] do not exist",
            id="fold repetition that does not exist",
        ),
        pytest.param(
            lambda c: c["folds"]["reps-2-5"].update(train=[1, 2, 3]),
            r"folds.reps-2-5: repetitions \[2\] are in both train and test",
            id="train and test repetitions overlap",
        ),
        pytest.param(
            lambda c: c["folds"]["reps-2-5"].update(validation=[4]),
            r"folds.reps-2-5: repetitions \[4\] are in both train and validation",
            id="train and validation repetitions overlap",
        ),
        pytest.param(
            lambda c: c["folds"].update(
                loso={
                    "scheme": "subjects",
                    "subjects": ["db2/s1", "db2/s2"],
                    "test_subject": "db2/s3",
                    "train": [1, 2],
                    "validation": [6],
                }
            ),
            r"folds.loso.test_subject: db2/s3 is not in folds.loso.subjects",
            id="test subject outside its group",
        ),
        pytest.param(
            lambda c: c["folds"].update(
                loso={
                    "scheme": "subjects",
                    "subjects": ["db2/s1", "db2/s2"],
                    "test_subject": "db2/s1",
                    "train": [1, 2],
                    "validation_subjects": 1,
                }
            ),
            r"folds.loso.validation_subjects: 1 leaves no training subject",
            id="no training subject left",
        ),
        pytest.param(
            lambda c: c["folds"]["reps-2-5"].update(test=[2]),
            r"folds.reps-2-5.test: cross-fitted adaptation .* needs at least two test repetitions",
            id="cross-fitted adaptation with one test repetition",
        ),
        pytest.param(
            lambda c: c["models"]["contrastive_adabn"].pop("adaptation"),
            r"models.contrastive_adabn: 'adaptation' is a required property",
            id="AdaBN model without its adaptation source",
        ),
        pytest.param(
            lambda c: (
                c["data"].update(source="local"),
                c["data"]["local"].update(db2="/data/ninapro", db3="/data/ninapro/db3"),
            ),
            r"data.local.db2 \(/data/ninapro\) and data.local.db3 \(/data/ninapro/db3\) overlap",
            id="overlapping local folders",
        ),
        pytest.param(
            lambda c: c["evaluation"].update(vote_window_ms=1500),
            r"evaluation.vote_window_ms = 1500 is longer than the segment window\(s\) \{'onset': 1000\}",
            id="vote window longer than the segments",
        ),
        pytest.param(
            lambda c: c["preprocess"].update(frame_rate_hz=300),
            r"preprocess.frame_rate_hz = 300 must divide the sampling rate of db2",
            id="frame rate that does not divide the sampling rate",
        ),
        pytest.param(
            lambda c: (c["preprocess"].update(frame_rate_hz=50), c["evaluation"].update(vote_window_ms=10)),
            r"evaluation.vote_window_ms = 10 is shorter than one frame \(20 ms",
            id="vote window shorter than a frame",
        ),
        pytest.param(
            lambda c: c["evaluation"].update(onset_gate={"on_ratio": 2, "off_ratio": 3, "dwell_ms": 30, "rest_s": 2}),
            r"evaluation.onset_gate.off_ratio = 3 is above on_ratio = 2",
            id="onset gate closing above its opening level",
        ),
        pytest.param(
            lambda c: c["evaluation"].update(
                decision={"rule": "hysteresis", "smoothing_ms": 30, "enter": 0, "leave": 1}
            ),
            r"evaluation.decision.enter = 0: must be a number in \(0, 1\]",
            id="decision rule entering at 0",
        ),
        pytest.param(
            lambda c: c["evaluation"].update(
                decision={"rule": "hysteresis", "smoothing_ms": -5, "enter": 1, "leave": 1}
            ),
            r"evaluation.decision.smoothing_ms = -5: must be a number at least 0",
            id="negative smoothing",
        ),
        pytest.param(
            lambda c: c["evaluation"].update(decision={"rule": "plurality"}),
            r"evaluation.decision.rule = 'plurality': unknown; use one of \['vote', 'hysteresis'\]",
            id="unknown decision rule",
        ),
        pytest.param(
            lambda c: c["evaluation"].update(decision={"rule": "vote", "enter": "high"}),
            r"evaluation.decision.enter: 'high' is not valid",
            id="decision setting not a number",
        ),
        pytest.param(
            lambda c: c["evaluation"].update(onset_gate={"on_ratio": 2, "off_ratio": 1.5}),
            r"evaluation.onset_gate: 'dwell_ms' is a required property",
            id="onset gate without its dwell",
        ),
        pytest.param(
            lambda c: c["models"].update(lda={"kind": "lda", "adabn": False, "pose_decoder": {"weight": 1.0}}),
            r"models.lda.pose_decoder: LDA has no EMG encoder to decode pose",
            id="pose decoder on LDA",
        ),
        pytest.param(
            lambda c: c["models"]["contrastive_pose"].update(pose_decoder={"weight": 0}),
            r"models.contrastive_pose.pose_decoder.weight: 0 is less than or equal to the minimum of 0",
            id="pose decoder without weight",
        ),
    ],
)
def test_bad_config_is_rejected_with_the_key_named(change, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(edited(change))


def test_a_subject_name_is_one_of_a_known_database(monkeypatch):
    """Fold subjects are checked against data/ninapro.py's databases: a database added there is named in folds
    without a second edit of the schema; a name of no database is refused with its key."""

    def fold_over(*subjects):
        def change(config):
            config["folds"]["new"] = {
                "scheme": "leave_one_subject_out",
                "subjects": list(subjects),
                "train": [1, 2],
                "validation": [6],
            }

        return edited(change)

    with pytest.raises(ConfigError, match=r"folds.new: .*'db4/s1'.* is not valid"):
        check_schema(fold_over("db4/s1", "db4/s2"), "config")
    monkeypatch.setitem(ninapro.DATABASES, "db4", dataclasses.replace(ninapro.DB3, name="db4"))
    check_schema(fold_over("db4/s1", "db4/s2"), "config")
    check_schema(fold_over("db1/s1", "db3/s11"), "config")
    with pytest.raises(ConfigError, match=r"folds.new: .*'db5/s2'.* is not valid"):
        check_schema(fold_over("db4/s1", "db5/s2"), "config")


def test_default_config_is_valid():
    assert load_config(REPO / "config.yaml")["data"]["source"] == "synthetic"


def test_unreadable_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: cannot be read as YAML"):
        load_config(path)


def test_full_scale_config_is_valid():
    config = load_config(REPO / "config" / "ninapro.yaml")
    assert len(config["data"]["databases"]["db2"]) == 40 and len(config["data"]["databases"]["db3"]) == 11
    # The standard fold, eleven leave-one-amputee-out folds, two zero-shot sets and eleven new-user folds.
    assert len(config["folds"]) == 25 and config["training"]["search"]["trials"] == 150
