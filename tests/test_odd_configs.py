"""Odd but plausible configurations: each ends in valid outputs or one clear message that names the key. A
configuration the checks refuse is checked in process (the checks the Snakefile runs at parse time;
test_workflow.py proves once that such a refusal reaches the user through snakemake); one that plans is dry-run
through snakemake, and one whose trouble would only show while running runs there at a tiny budget."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from snakemake_runs import DEFAULT, snakemake
from tiny_config import tiny

from contrastive_prosthetics.config import ConfigError, prepare_config
from contrastive_prosthetics.data.ninapro import DB2, DB3
from contrastive_prosthetics.data.synthetic import SyntheticParams, write_subject
from contrastive_prosthetics.evaluation.tables import read_table
from contrastive_prosthetics.learning.logits import read_logits

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory) -> Path:
    """Synthetic NinaPro files of DB2 subjects 1-2 and DB3 subjects 1 and 6, made once for every case."""
    folder = tmp_path_factory.mktemp("raw")
    params = SyntheticParams(**{**DEFAULT["synthetic"], "movement_s": 1.6, "rest_s": 0.8})
    for spec, subjects in ((DB2, (1, 2)), (DB3, (1, 6))):
        for subject in subjects:
            write_subject(spec, subject, ["B", "C"], folder / spec.name, params, seed=0)
    return folder


def base(raw: Path) -> dict:
    """A small run on the shared files: two subjects, exercise B, LDA and one network, one short window."""
    config = copy.deepcopy(DEFAULT)
    tiny(config)
    config["data"].update(source="local", databases={"db2": [1], "db3": [6]})
    config["data"]["local"].update(db2=str(raw / "db2"), db3=str(raw / "db3"))
    config["models"] = {"lda": {"kind": "lda", "adabn": False}, "classifier": {"kind": "classifier", "adabn": False}}
    config["folds"] = {"reps-2-5": config["folds"]["reps-2-5"]}
    config["preprocess"]["windows"] = {"onset": {"offset_ms": 0, "length_ms": 500}}
    return config


LDA_EVALUATION = "results/eval/lda/reps-2-5/onset/metrics.tsv"  # its evaluate job (subset_accuracy is temporary)


def only_lda(config):
    config["models"] = {"lda": {"kind": "lda", "adabn": False}}


def loso_db3_s1(config):
    config["data"].update(databases={"db3": [1, 6]}, exercises=["C"])  # subject 1 lacks grasps C13-C23
    loso = {"scheme": "leave_one_subject_out", "subjects": "all", "train": [1, 2, 3, 4, 5], "validation": [6]}
    config["folds"] = {"loso": loso}
    only_lda(config)


CASES = {
    # name: (change, how: dry | run target, expected: None for valid outputs, else text the output must hold)
    "one subject": (lambda c: c["data"].update(databases={"db2": [1]}), "dry", None),
    "one gesture trained on": (
        lambda c: c["folds"].update(
            zs={"scheme": "zero_shot", "base": "reps-2-5", "gestures": ["B1", "B2"], "size": 1, "sets": 1}
        ),
        "dry",
        None,
    ),
    "test repetitions a database lacks": (
        lambda c: c["folds"]["reps-2-5"].update(test=[2, 8]),
        "dry",
        "folds.reps-2-5.test: repetitions [8] do not exist",
    ),
    "vote longer than the segment": (
        lambda c: c["evaluation"].update(vote_window_ms=600),
        "dry",
        "evaluation.vote_window_ms = 600 is longer than the segment window",
    ),
    "vote shorter than a frame": (
        lambda c: c["evaluation"].update(vote_window_ms=5),
        "dry",
        "evaluation.vote_window_ms: 5 is less than the minimum of 10",
    ),
    "one subset per k": (lambda c: (only_lda(c), c["evaluation"].update(subset_trials=1)), LDA_EVALUATION, None),
    "rest not added": (lambda c: (only_lda(c), c["evaluation"].update(include_rest=False)), LDA_EVALUATION, None),
    "no models": (lambda c: c.update(models={}), "dry", "models: {} should be non-empty"),
    "a model name with a dot": (
        lambda c: c["models"].update({"lda.v2": {"kind": "lda", "adabn": False}}),
        "dry",
        "models: 'lda.v2' does not match",
    ),
    "a window of one frame": (
        lambda c: (
            only_lda(c),
            c["preprocess"].update(windows={"onset": {"offset_ms": 0, "length_ms": 10}}),
            c["evaluation"].update(vote_window_ms=10),
        ),
        LDA_EVALUATION,
        None,
    ),
    "DB3 subject 1 alone": (
        lambda c: (
            c["data"].update(databases={"db3": [1]}),
            c["folds"].update(
                loso={
                    "scheme": "subjects",
                    "subjects": ["db3/s1"],
                    "test_subject": "db3/s1",
                    "train": [1],
                    "validation_subjects": 1,
                }
            ),
        ),
        "dry",
        "folds.loso",
    ),
    "DB3 subject 1 left out, missing grasps": (loso_db3_s1, "results/eval/lda/loso-db3-s1/onset/metrics.tsv", None),
    "mains above Nyquist": (
        lambda c: (c["data"].update(source="synthetic"), c["synthetic"].update(mains_hz=1500)),
        "dry",
        "synthetic.mains_hz = 1500 is at or above the Nyquist frequency",
    ),
    "CUDA on a machine without it": (
        lambda c: c.update(device="cuda"),
        "results/models/classifier/reps-2-5/onset/logits.pt",
        "device: cuda, but this machine has no CUDA device",
    ),
    "a checksum of the wrong length": (
        lambda c: c["data"]["checksums"].update({"DB2_s1.zip": "abc123"}),
        "dry",
        "data.checksums.DB2_s1.zip: 'abc123' does not match",
    ),
    "an unreachable server": (
        lambda c: (
            c["data"].update(source="ninapro"),
            c["data"]["urls"].update(db2="http://127.0.0.1:9/DB2_s{subject}.zip"),
            c["data"]["download"].update(retries=0, timeout_s=2),
        ),
        "resources/ninapro/db2/s1/manifest.json",
        "use data.source: local",
    ),
    "a window no movement is long enough for": (
        lambda c: c["preprocess"].update(windows={"onset": {"offset_ms": 9000, "length_ms": 500}}),
        "results/tensors/db2/s1.pt",
        "no repetition is long enough for the windows preprocess.windows",
    ),
    "a frame rate that does not divide the sampling rate": (
        lambda c: c["preprocess"].update(frame_rate_hz=300),
        "dry",
        "preprocess.frame_rate_hz = 300 must divide the sampling rate",
    ),
}


def every_log(workdir: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in sorted((workdir / "logs").rglob("*.log")))


REFUSED = [case for case, (_, how, expected) in CASES.items() if how == "dry" and expected is not None]
RUN = [case for case in CASES if case not in REFUSED]


@pytest.mark.parametrize("case", REFUSED)
def test_an_odd_configuration_is_refused_at_parse_time_with_the_key_named(raw_files, case):
    change, _, expected = CASES[case]
    config = base(raw_files)
    change(config)
    json.dumps(config)  # every case is a plain configuration a user could write
    with pytest.raises(ConfigError) as refused:
        prepare_config(config)
    assert expected in str(refused.value)


@pytest.mark.parametrize("case", RUN)
def test_an_odd_configuration_gives_outputs_or_one_clear_message(tmp_path, raw_files, case):
    change, how, expected = CASES[case]
    config = base(raw_files)
    change(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "--dry-run") if how == "dry" else snakemake(tmp_path, how)
    output = result.stdout + result.stderr + (every_log(tmp_path) if (tmp_path / "logs").exists() else "")
    if expected is None:
        assert result.returncode == 0, output[-3000:]
        if how != "dry":  # an evaluate job's metrics.tsv: its frame accuracy is that of its model's test logits
            model, fold, window = Path(how).parts[-4:-1]
            logits = read_logits(tmp_path / "results/models" / model / fold / window / "logits.pt")
            frame = read_table(tmp_path / how).query("group == 'all' and level == 'frame'").set_index("metric")
            right = (logits["logits"].argmax(1) == logits["label"]).double().mean().item()
            assert frame.loc["accuracy", "value"] == pytest.approx(right, abs=1e-12)
    else:
        assert result.returncode != 0 and expected in output, output[-3000:]
        assert "Traceback" not in every_log(tmp_path) if (tmp_path / "logs").exists() else True
    json.dumps(config)  # every case is a plain configuration a user could write
