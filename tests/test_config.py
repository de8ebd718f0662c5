"""Configuration checks: a wrong config stops with the key's name before anything runs."""

import copy

import pytest
import yaml
from conftest import REPO

from contrastive_prosthetics.config import ConfigError, load_config, validate_config

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def edited(change):
    config = copy.deepcopy(DEFAULT)
    change(config)
    return config


def test_default_config_is_valid():
    assert load_config(REPO / "config.yaml")["data"]["source"] == "synthetic"


def test_misspelt_key_is_named():
    config = edited(lambda c: c["synthetic"].update(movment_s=2.0))
    with pytest.raises(ConfigError, match=r"synthetic: Additional properties are not allowed \('movment_s'"):
        validate_config(config)


def test_wrong_type_is_named():
    config = edited(lambda c: c["preprocess"].update(window_length_ms="long"))
    with pytest.raises(ConfigError, match=r"preprocess.window_length_ms: 'long' is not of type 'number'"):
        validate_config(config)


def test_unknown_database_is_named():
    config = edited(lambda c: c["data"]["databases"].update(db9=[1]))
    with pytest.raises(ConfigError, match=r"data.databases: Additional properties are not allowed \('db9'"):
        validate_config(config)


def test_subject_a_database_does_not_have_is_named():
    config = edited(lambda c: c["data"]["databases"].update(db3=[1, 12]))
    with pytest.raises(ConfigError, match=r"data.databases.db3: db3 has subjects 1-11, not \[12\]"):
        validate_config(config)


def test_exercise_a_database_lacks_is_named():
    config = edited(lambda c: c["data"].update(exercises=["A"]))
    with pytest.raises(ConfigError, match=r"data.exercises: db2 has no exercise A"):
        validate_config(config)


def test_local_source_needs_a_folder():
    config = edited(lambda c: c["data"].update(source="local"))
    with pytest.raises(ConfigError, match=r"data.local.db2: set the folder"):
        validate_config(config)


def test_unreadable_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: cannot be read as YAML"):
        load_config(path)


def test_full_scale_config_is_valid():
    config = load_config(REPO / "config" / "ninapro.yaml")
    assert len(config["data"]["databases"]["db2"]) == 40 and len(config["data"]["databases"]["db3"]) == 11
    assert len(config["folds"]) == 12 and config["training"]["search"]["trials"] == 150


def test_fold_subject_outside_the_data_is_named():
    def change(config):
        config["folds"]["loso"] = {
            "scheme": "subjects",
            "subjects": ["db2/s1", "db2/s9"],
            "test_subject": "db2/s1",
            "train": [1, 2],
            "validation": [6],
        }

    with pytest.raises(ConfigError, match=r"folds.loso.subjects: db2/s9 is not in data.databases"):
        validate_config(edited(change))


def test_fold_repetition_that_does_not_exist_is_named():
    config = edited(lambda c: c["folds"]["reps-2-5"].update(test=[2, 7]))
    with pytest.raises(ConfigError, match=r"folds.reps-2-5.test: repetitions \[7\] do not exist"):
        validate_config(config)
