"""The real NinaPro DB1 recordings in $NINAPRO_DB1_DIR (skipped when absent)."""

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import PREPROCESS, REPO, check_figure, first_window
from snakemake_runs import check_metrics_recompute_the_logits, snakemake, write_config
from test_workflow import FIGURE_CONTENTS

from contrastive_prosthetics.data.convert import convert_subject as convert_to_tensors
from contrastive_prosthetics.data.ninapro import DB1
from contrastive_prosthetics.data.sources import find_local_files
from contrastive_prosthetics.evaluation.artefacts import (
    EVALUATION_TABLES,
    FIGURES,
    STREAM_TABLES,
    ZERO_SHOT_TABLES,
)
from contrastive_prosthetics.learning.logits import read_logits

FIGURE_PANELS = {figure: panels for figure, (panels, _) in FIGURE_CONTENTS.items()}  # as the tiny run's


def convert_subject(*args, **kwargs) -> dict:
    """The conversion's output with its first window's segments at the top, as these tests read it."""
    return first_window(convert_to_tensors(*args, **kwargs))


@pytest.mark.realdata
@pytest.mark.parametrize("subject", [1, 2, 3, 4])
def test_real_db1_subject_converts_completely(db1_dir, tmp_path, subject):
    sources = find_local_files(db1_dir, DB1, subject, ["A"])
    raw = sources["A"]
    before = hashlib.sha256(open(raw, "rb").read()).hexdigest()
    tensors = convert_subject(DB1, subject, sources, ["A"], PREPROCESS, tmp_path / f"s{subject}.pt")
    assert tensors["emg"].shape == (13, 10, 100, 10)
    assert tensors["valid"].all()
    assert tensors["channel_mask"].all()
    assert torch.isfinite(tensors["emg"]).all() and (tensors["emg"] >= 0).all()  # rectified envelopes
    # Movement is louder than rest on average: the segments sit on the movements.
    assert tensors["emg"][1:].mean() > 1.25 * tensors["emg"][0].mean()
    # Each segment is a slice of the stream, every frame of it labelled with the segment's class.
    frames = tensors["segment_start"][..., None] + torch.arange(100)
    assert torch.equal(tensors["emg"], tensors["stream"][frames])
    assert (tensors["stream_class"][frames] == torch.arange(13)[:, None, None]).all()
    assert hashlib.sha256(open(raw, "rb").read()).hexdigest() == before


@pytest.mark.realdata
def test_lda_baseline_beats_chance_by_far_on_real_db1(db1_dir, tmp_path):
    from test_train import settings_of

    from contrastive_prosthetics.learning.lda import train_lda_fold

    paths = []
    for subject in (1, 2, 3, 4):
        sources = find_local_files(db1_dir, DB1, subject, ["A"])
        paths.append(tmp_path / f"s{subject}.pt")
        convert_subject(DB1, subject, sources, ["A"], PREPROCESS, paths[-1])
    fold = {"scheme": "repetitions", "train": [1, 3, 4, 8, 9, 10], "validation": [6], "test": [2, 5, 7]}
    train_lda_fold(paths, "lda", "reps-2-5-7", fold, 0, tmp_path / "lda", settings_of())  # segments, no rest bias
    logits = read_logits(tmp_path / "lda" / "logits.pt")
    accuracy = (logits["logits"].argmax(1) == logits["label"]).float().mean().item()
    chance = 1 / 13
    assert accuracy > 4 * chance, accuracy  # per frame, before any voting
    assert set(logits["repetition"].tolist()) == {2, 5, 7} and set(logits["subject"].tolist()) == {0, 1, 2, 3}
    assert logits["logits"].shape == (4 * 13 * 3 * 100, 13)  # subjects × classes × test repetitions × frames


def tiny_db1_override(db1_dir: Path) -> dict:
    """config/db1.yaml on three of the shared subjects at a budget that runs in about a minute: every fold family,
    the networks on the standard split (the pose model also on one zero-shot set), LDA on leave-one-subject-out; the
    onset window only (the steady window is the same code on other frames, run by the tiny run)."""
    return {
        "data": {"source": "local", "databases": {"db1": [1, 2, 3]}, "local": {"db1": str(db1_dir)}},
        "preprocess": {"windows": {"steady": None}},
        "models": {"contrastive": None, "classifier": None, "classifier_adabn": None},
        "folds": {
            "reps-2-5-7": {"models": ["contrastive_adabn", "contrastive_pose", "lda"]},
            "loso": {"models": ["lda"]},
            "zero-shot": {"sets": 1},
            # No calibration and one repetition: every method and baseline runs, on the model built for new users
            # (per-user normalisation, DB1's ring rotation and gain jitter); three subjects hold one new user a fold,
            # validated on one (db1.yaml's two would leave none to train on).
            "new-user": {
                "counts": [0, 1],
                "new_users": 1,
                "validation_subjects": 1,
                "models": ["contrastive_transfer"],
            },
        },
        # Two of db1.yaml's transfer recipes (still chosen between on the validation subject), a few steps each.
        "calibration": {"scratch_epochs": 1, "transfer": {"learning_rate_scale": [0.3], "steps": 5}},
        "architecture": {"width": 16, "conv_maps": 4, "depth": 1},
        "training": {"groups": 8, "steps_per_epoch": 3, "search": {"trials": 1, "epochs": 1}, "final": {"epochs": 1}},
        "evaluation": {"subset_trials": 8, "stream_trials": 1, "stream_subset_sizes": [3]},
    }


@pytest.mark.realdata
@pytest.mark.workflow
def test_db1_configuration_runs_end_to_end_on_the_shared_subjects(tmp_path, db1_dir):
    write_config(tmp_path, lambda config: None)  # config.yaml as in the repository, the merge's base
    override = tmp_path / "tiny-db1.yaml"
    override.write_text(yaml.safe_dump(tiny_db1_override(db1_dir)))
    result = snakemake(tmp_path, "--configfile", str(REPO / "config" / "db1.yaml"), str(override))
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [("contrastive_adabn", "reps-2-5-7"), ("contrastive_pose", "reps-2-5-7"), ("lda", "reps-2-5-7")]
    runs += [("lda", f"loso-db1-s{s}") for s in (1, 2, 3)]
    evaluated = check_metrics_recompute_the_logits(tmp_path)  # model.pt and logits.pt read, metrics recomputed
    zero_shot = {run for run in evaluated if run[1].startswith("zero-shot")}
    assert set(evaluated) - zero_shot == {(model, fold, "onset") for model, fold in runs} and len(zero_shot) == 1
    for folder in evaluated.values():
        search = pd.read_csv(folder / "search.tsv", sep="\t")
        assert search["chosen"].sum() == 1 and len(pd.read_csv(folder / "history.tsv", sep="\t")) >= 1
    for table in EVALUATION_TABLES + STREAM_TABLES:
        rows = pd.read_csv(tmp_path / f"results/eval/{table}.tsv", sep="\t")
        assert set(rows[["model", "fold", "window"]].itertuples(index=False, name=None)) == set(evaluated), table
    for table in ZERO_SHOT_TABLES:
        rows = pd.read_csv(tmp_path / f"results/eval/{table}.tsv", sep="\t")
        assert set(rows[["model", "fold", "window"]].itertuples(index=False, name=None)) == zero_shot, table
    for figure in FIGURES:  # three DB1 subjects: one panel of subjects; the figures' own tests check the rest
        check_figure(tmp_path / "results/figures" / figure, FIGURE_PANELS[figure] - (figure == "per_subject"))
    summary = pd.read_csv(tmp_path / "results/eval/summary.tsv", sep="\t")
    assert set(summary["family"]) == {"reps-2-5-7", "loso", "zero-shot"}
    assert set(summary["window"]) == {"onset"}
    assert "What a user gets" in result.stdout + result.stderr  # the end-of-run table
    assert not (tmp_path / "resources").exists()  # read in place


@pytest.mark.realdata
def test_one_repetition_of_a_real_db1_recording_calibrates_every_gesture_and_rest(db1_dir, tmp_path):
    """calibrate --repetitions 1 on s1: frames to fit on of all 12 DB1 gestures and rest (its first 90 s hold only
    A1 and A2, which the command refuses)."""
    from test_realtime import network_file

    from contrastive_prosthetics.cli import main
    from contrastive_prosthetics.data.ninapro import class_names
    from contrastive_prosthetics.learning.dataset import Normalisation
    from contrastive_prosthetics.learning.models import ModelConfig, build_model
    from contrastive_prosthetics.realtime.personalised import calibrate_model_file

    classes = class_names(["A"])
    torch.manual_seed(0)
    model = build_model(ModelConfig("contrastive", DB1.n_channels, len(classes), 8, 4, 16, 1, 0.0)).eval()
    normalisation = Normalisation(
        torch.zeros(DB1.n_channels), torch.ones(DB1.n_channels), True, torch.full((10,), 1e-4)
    )
    trained = network_file(tmp_path / "model.pt", model, normalisation, classes=classes)
    source = find_local_files(db1_dir, DB1, 1, ["A"])["A"]
    calibrated = calibrate_model_file(trained, [source], DB1, tmp_path / "personal.pt", repetitions=1)
    assert list(calibrated.fit_frames) == classes and len(classes) == 13
    assert all(count > 0 for count in calibrated.fit_frames.values()), calibrated.fit_frames
    argv = ["calibrate", "--model", str(trained), "--recording", str(source), "--database", "db1"]
    assert main([*argv, "--method", "prototypes", "--seconds", "90", "--out", str(tmp_path / "first.pt")]) == 2
    assert not (tmp_path / "first.pt").exists()
