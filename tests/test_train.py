"""Training one model × fold: accuracy above chance, determinism, no leakage of test data."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import torch

from contrastive_prosthetics.data.ninapro import class_names
from contrastive_prosthetics.data.tensor_file import payload_from_segments, write_tensor_file
from contrastive_prosthetics.learning.lda import train_lda_fold
from contrastive_prosthetics.learning.logits import read_logits
from contrastive_prosthetics.learning.model_file import LDA_FIELDS, NETWORK_FIELDS, read_model_file
from contrastive_prosthetics.learning.train import TrainingSettings, sample_hyperparameters, train_fold

CLASSES = class_names(["A"])  # 13 classes
ARCHITECTURE = {
    "embedding_dim": 8,
    "conv_maps": 4,
    "width": 32,
    "depth": 1,
    "dropout_layers": None,
    "context_frames": 1,
    "logit_scale": "learnable",
}
TRAINING = {
    "groups": 16,
    "steps_per_epoch": 15,
    "log_amplitude": True,
    "search": {
        "trials": 2,
        "epochs": 1,
        "learning_rate": [3e-3, 1e-2],
        "weight_decay": [1e-5, 1e-3],
        "dropout": [0.0, 0.1],
    },
    "final": {"epochs": 3},
    "log_floor": 0.01,
    "adaptation_frames": 10000,
    "reference_frames": 256,
    "threads": 1,
    "frames": "segments",
    "guard_ms": 0.0,
}
# The evaluation keys training reads (TrainingSettings.from_config): no rest bias unless a test asks for one.
NO_REST_BIAS = {
    "rest_false_activation_target": None,
    "vote_window_ms": 0,
    "onset_gate": None,
    "decision": {"rule": "vote"},
}
NO_REST_BIAS |= {"adaptation_protocol": "transductive", "adaptation_update_s": 30.0}  # streams as before
NO_REST_BIAS |= {"rest_promise": "average"}
FOLD = {"scheme": "repetitions", "train": [1, 3, 4], "validation": [6], "test": [2, 5]}


def write_subject(
    path, subject: int, separation: float = 1.0, test_scale: float = 1.0, unseen_scale=1.0, pose=None, glove=None
):
    """RMS-like frames: each class has its own pattern over 6 channels; subjects differ in electrode gains. With
    ``pose``, hand poses [class, rep, 22] and a glove mask of every sensor (and class A5's EMG, not its features,
    scaled by ``unseen_scale``); with ``glove`` [class, rep, frame, 22], the glove at every segment and stream
    frame."""
    rng = np.random.default_rng(subject)
    patterns = np.random.default_rng(99).uniform(0.0, 3.0, (len(CLASSES), 6))
    gains = rng.uniform(0.5, 2.0, 6)
    noise = rng.lognormal(0.0, 0.2, (len(CLASSES), 6, 20, 6))
    emg = np.exp(separation * patterns[:, None, None, :]) * gains * noise * 0.01
    emg[:, [1, 4]] *= test_scale  # repetitions 2 and 5: the test repetitions of FOLD
    # Hudgins-like features: amplitude-driven MAV and WL, noise-only ZC and SSC.
    features = np.stack((emg, 2 * emg, rng.poisson(20, emg.shape), rng.poisson(30, emg.shape)), axis=-1)
    emg[5] *= unseen_scale  # class A5
    valid = torch.ones(len(CLASSES), 6, dtype=torch.bool)
    glove_mask = torch.full((22,), pose is not None)
    payload = payload_from_segments(
        emg,
        valid,
        classes=CLASSES,
        database="db2",
        subject=subject,
        features=features,
        glove_mask=glove_mask,
        pose=pose,
        glove=glove,
    )
    write_tensor_file(payload, path)
    return path


def settings_of(training: dict = TRAINING, **evaluation) -> TrainingSettings:
    """:class:`TrainingSettings` of a training section, with the evaluation keys in ``evaluation`` (default: none)."""
    return TrainingSettings.from_config(training, NO_REST_BIAS | evaluation)


def model_settings(kind: str, adabn: bool, adaptation: str = "cross_fitted") -> dict:
    return {"kind": kind, "adabn": adabn} | ({"adaptation": adaptation} if adabn else {})


def run(tmp_path, name, model="contrastive", adabn=False, test_scale=1.0, seed=0, fold=FOLD):
    paths = [write_subject(tmp_path / name / f"s{s}.pt", s, test_scale=test_scale) for s in (1, 2, 3)]
    out = tmp_path / name / "out"
    if model == "lda":  # the command line chooses between the two trainers, as here
        train_lda_fold(paths, model, "reps-2-5", fold, seed, out, settings_of())
    else:
        train_fold(
            paths, model, model_settings(model, adabn), ARCHITECTURE, "reps-2-5", fold, settings_of(), seed, out, "cpu"
        )
    return out


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("model", "adabn"),
    [
        pytest.param("contrastive", False, marks=pytest.mark.slow),
        pytest.param("contrastive", True, marks=pytest.mark.slow),
        pytest.param("classifier", False, marks=pytest.mark.slow),
        ("lda", False),  # no network: quick
    ],
)
def test_training_on_separable_data_beats_chance_by_far(tmp_path, model, adabn):
    out = run(tmp_path, "a", model=model, adabn=adabn)
    logits = read_logits(out / "logits.pt")
    accuracy = (logits["logits"].argmax(1) == logits["label"]).float().mean().item()
    assert accuracy > 5 / len(CLASSES)  # chance is 1/13
    assert logits["logits"].shape == (3 * 13 * 2 * 20, 13)
    assert set(logits["repetition"].tolist()) == {2, 5} and logits["adabn"] is adabn
    history = (out / "history.tsv").read_text().splitlines()
    assert "frames_per_s" in history[0] and "val_accuracy" in history[0]
    saved = read_model_file(out / "model.pt")
    assert saved["classes"] == CLASSES and saved["model"] == model
    assert list(saved) == list(LDA_FIELDS if model == "lda" else NETWORK_FIELDS)  # model_file's schema, in order
    if model == "lda":
        return
    search = (out / "search.tsv").read_text().splitlines()
    assert len(search) == 3 and search[0].split("\t")[:4] == ["trial", "learning_rate", "weight_decay", "dropout"]
    assert len(history) == 4 and saved["normalisation"]["mean"].shape == (6,)


@pytest.mark.slow
def test_two_runs_with_one_seed_are_identical(tmp_path):
    first, second = run(tmp_path, "one"), run(tmp_path, "two")
    for name in ("model.pt", "logits.pt", "search.tsv"):
        assert digest(first / name) == digest(second / name), name


@pytest.mark.slow
def test_cross_fitted_training_writes_the_same_files_with_autograds_batch_norm_backward(tmp_path, monkeypatch):
    """The hand-written backward of the reference batch norm (models.reference_norm) changes no bit of a cross-fitted
    AdaBN model's training, scoring or search against autograd's of the written-out form, the first version."""
    from contrastive_prosthetics.learning.models import ReferenceBatchNorm1d, reference_norm_autograd

    fused = run(tmp_path, "fused", adabn=True)
    monkeypatch.setattr(ReferenceBatchNorm1d, "normalise", staticmethod(reference_norm_autograd))
    written_out = run(tmp_path, "written-out", adabn=True)
    for name in ("model.pt", "logits.pt", "search.tsv"):
        assert digest(fused / name) == digest(written_out / name), name


@pytest.mark.slow
def test_changing_test_repetitions_changes_only_the_logits(tmp_path):
    plain, changed = run(tmp_path, "plain"), run(tmp_path, "changed", test_scale=5.0)
    assert digest(plain / "search.tsv") == digest(changed / "search.tsv")
    assert digest(plain / "model.pt") == digest(changed / "model.pt")
    assert digest(plain / "logits.pt") != digest(changed / "logits.pt")


@pytest.mark.slow
def test_leave_one_subject_out_tests_every_repetition_of_the_new_subject(tmp_path):
    fold = {
        "scheme": "subjects",
        "subjects": ["db2/s1", "db2/s2", "db2/s3"],
        "test_subject": "db2/s3",
        "train": [1, 2, 3, 4],
        "validation": [5, 6],
    }
    out = run(tmp_path, "loso", adabn=True, fold=fold)
    logits = read_logits(out / "logits.pt")
    assert set(logits["subject"].tolist()) == {2} and set(logits["repetition"].tolist()) == set(range(1, 7))
    assert read_model_file(out / "model.pt")["subjects"] == ["db2/s1", "db2/s2", "db2/s3"]


def test_a_model_file_writer_refuses_fields_outside_its_schema(tmp_path):
    from types import SimpleNamespace

    from contrastive_prosthetics.learning.model_file import write_lda_file

    data = SimpleNamespace(classes=CLASSES, subject_names=["db2/s1"], window="onset")
    fields = {"estimators": {}, "feature_names": [], "model": "lda", "fold": "f", "fold_spec": {}, "history": []}
    fields |= {"frames": "stream", "rest_bias": 0.0, "calibration": None, "onset_gate": None, "decision": None}
    fields |= {"rest_false_activation_target": None, "guard_ms": 0.0}
    with pytest.raises(ValueError, match=r"missing \['seed'\], unknown \[\]"):
        write_lda_file(tmp_path / "model.pt", data, **fields)
    with pytest.raises(ValueError, match=r"missing \[\], unknown \['weights'\].*schema"):
        write_lda_file(tmp_path / "model.pt", data, **fields, seed=0, weights=1.0)
    assert not (tmp_path / "model.pt").exists()
    write_lda_file(tmp_path / "model.pt", data, **fields, seed=0)
    assert list(read_model_file(tmp_path / "model.pt")) == list(LDA_FIELDS)


def test_hyperparameters_are_drawn_from_their_ranges():
    settings = settings_of({**TRAINING, "search": {**TRAINING["search"], "learning_rate": [1e-6, 1e-1]}})
    drawn = sample_hyperparameters(settings, 200, seed=0)
    rates = np.array([h.learning_rate for h in drawn])
    assert rates.min() >= 1e-6 and rates.max() <= 1e-1
    assert 0.3 < np.mean(np.log10(rates) < -3.5) < 0.7  # log-uniform: half below the middle decade
    assert drawn == sample_hyperparameters(settings, 200, seed=0)


@pytest.mark.slow
def test_a_diverged_search_trial_is_recorded_and_never_chosen(tmp_path, monkeypatch):
    from contrastive_prosthetics.learning import train as train_module
    from contrastive_prosthetics.learning.train import HyperParameters

    # The second trial's learning rate makes every loss NaN; it must not crash the job nor win.
    diverging = [HyperParameters(3e-3, 1e-4, 0.0), HyperParameters(1e12, 1e-4, 0.0)]
    monkeypatch.setattr(train_module, "sample_hyperparameters", lambda settings, trials, seed: diverging)
    out = run(tmp_path, "nan")
    rows = [line.split("\t") for line in (out / "search.tsv").read_text().splitlines()]
    header, first, second = rows[0], dict(zip(rows[0], rows[1], strict=True)), dict(zip(rows[0], rows[2], strict=True))
    assert "status" in header and "chosen" in header
    assert (first["status"], first["chosen"]) == ("ok", "True")
    assert (second["status"], second["chosen"]) == ("diverged", "False")


@pytest.mark.slow
def test_a_search_where_every_trial_diverges_fails_with_a_clear_message(tmp_path, monkeypatch):
    from contrastive_prosthetics.core.errors import InputError
    from contrastive_prosthetics.learning import train as train_module
    from contrastive_prosthetics.learning.train import HyperParameters

    monkeypatch.setattr(
        train_module, "sample_hyperparameters", lambda settings, trials, seed: [HyperParameters(1e12, 1e-4, 0.0)]
    )
    with pytest.raises(InputError, match="diverged"):
        run(tmp_path, "all-nan")
    assert not (tmp_path / "all-nan" / "out" / "model.pt").exists()


@pytest.mark.slow
def test_leave_one_subject_out_selects_on_held_out_subjects(tmp_path, monkeypatch):
    """validation_subjects: the subject after the test subject is held out of training and validates."""
    from contrastive_prosthetics.learning import training_batches as train_module

    drawn_subjects = set()
    real_sampler = train_module.ContrastiveSampler

    def recording_sampler(data, selection, *args, **kwargs):
        drawn_subjects.update(selection.subjects.tolist())
        return real_sampler(data, selection, *args, **kwargs)

    monkeypatch.setattr(train_module, "ContrastiveSampler", recording_sampler)
    fold = {
        "scheme": "subjects",
        "subjects": ["db2/s1", "db2/s2", "db2/s3"],
        "test_subject": "db2/s1",
        "train": [1, 2, 3, 4, 5, 6],
        "validation_subjects": 1,
    }
    out = run(tmp_path, "loso-validation", adabn=True, fold=fold)
    assert drawn_subjects == {2}  # db2/s3 only: s1 is tested, s2 validates
    logits = read_logits(out / "logits.pt")
    assert set(logits["subject"].tolist()) == {0} and logits["adaptation"] == "cross_fitted"


def write_posed_subject(path, subject: int, unseen_scale: float = 1.0, test_pose_shift: float = 0.0):
    """write_subject with hand poses per class (and optionally the held-out class's EMG or the test repetitions'
    poses changed)."""
    poses = torch.tensor(np.random.default_rng(7).normal(0, 10, (len(CLASSES), 1, 22)), dtype=torch.float32)
    pose = poses.expand(len(CLASSES), 6, 22).clone()
    pose[0] = 0.0
    pose[:, [1, 4]] += test_pose_shift  # repetitions 2 and 5 are FOLD's test repetitions
    return write_subject(path, subject, unseen_scale=unseen_scale, pose=pose)


def zero_shot_run(tmp_path, name, **changes):
    paths = [write_posed_subject(tmp_path / name / f"s{s}.pt", s, **changes) for s in (1, 2, 3)]
    out = tmp_path / name / "out"
    fold = {**FOLD, "unseen": ["A5"]}
    settings = {"kind": "contrastive", "adabn": False, "class_encoder": "pose"}
    train_fold(paths, "pose", settings, ARCHITECTURE, "zs", fold, settings_of(), 0, out, "cpu")
    return out


@pytest.mark.slow
def test_held_out_gestures_emg_never_reaches_training_and_their_prototypes_no_test_repetition(tmp_path):
    plain = zero_shot_run(tmp_path, "plain")
    louder = zero_shot_run(tmp_path, "louder", unseen_scale=50.0)  # the held-out gesture's EMG, every repetition
    moved = zero_shot_run(tmp_path, "moved", test_pose_shift=30.0)  # every pose of the test repetitions
    for other in (louder, moved):
        assert digest(plain / "model.pt") == digest(other / "model.pt")
        assert digest(plain / "search.tsv") == digest(other / "search.tsv")
    assert digest(plain / "logits.pt") != digest(louder / "logits.pt")  # it is tested, though
    saved = read_model_file(plain / "model.pt")
    assert saved["unseen"] == ["A5"] and saved["pose_prototypes"].shape == (len(CLASSES), 22)
    logits = read_logits(plain / "logits.pt")
    assert logits["unseen"] == ["A5"] and (logits["label"] == 5).any()  # A5's frames are scored at test


def test_the_stream_score_is_movement_accuracy_at_the_bias_meeting_the_rest_target():
    from contrastive_prosthetics.learning.stream_selection import movement_accuracy_at

    # Rest frames with margins 1..10 (the best gesture's score minus rest's); movement frames of class 1 and 2.
    rest = torch.zeros(10, 3)
    rest[:, 1] = torch.arange(1.0, 11.0)
    movement = torch.tensor([[0.0, 2.5, 0.0], [0.0, 9.5, 0.0], [0.0, 0.0, 20.0], [0.0, 4.0, 0.0]])
    truth = np.array([0] * 10 + [1, 1, 2, 2])
    stretches = [(torch.cat([rest, movement[:2]]), truth[:12]), (movement[2:], truth[12:])]
    # 20 % false activation: the bias at the 80th percentile of the margins (8.2): frames above it are gestures.
    assert movement_accuracy_at(stretches, rest=0, target=0.2) == pytest.approx(
        2 / 4
    )  # 9.5 and 20 right; 2.5 and 4 go to rest
    assert movement_accuracy_at(stretches, rest=0, target=1.0) == pytest.approx(
        3 / 4
    )  # bias 1: only the last (class 2 scored as 1) is wrong


@pytest.mark.slow
def test_selecting_on_the_stream_keeps_the_epoch_and_trial_with_the_best_stream_score(tmp_path):
    from contrastive_prosthetics.learning.train import kept_row
    from contrastive_prosthetics.learning.training_settings import STREAM_SCORE

    history = [
        {"epoch": 1, "val_loss": 1.0, STREAM_SCORE: 0.5},
        {"epoch": 2, "val_loss": 0.5, STREAM_SCORE: 0.7},
        {"epoch": 3, "val_loss": 0.2, STREAM_SCORE: 0.6},
    ]
    assert kept_row(history)["epoch"] == 2  # not the lowest validation loss (3)
    assert kept_row([{**row, STREAM_SCORE: float("nan")} for row in history])["epoch"] == 3
    training = settings_of(TRAINING | {"frames": "stream", "selection": "stream"}, rest_false_activation_target=0.2)
    paths = [write_subject(tmp_path / f"s{s}.pt", s) for s in (1, 2, 3)]
    out = tmp_path / "out"
    train_fold(paths, "contrastive", model_settings("contrastive", False), ARCHITECTURE, "f", FOLD, training, 0, out)
    epochs = pd.read_csv(out / "history.tsv", sep="\t")
    trials = pd.read_csv(out / "search.tsv", sep="\t")
    assert epochs[STREAM_SCORE].notna().all() and trials[STREAM_SCORE].notna().all()
    best = int(epochs.loc[epochs[STREAM_SCORE].idxmax(), "epoch"])
    saved = read_model_file(out / "model.pt")
    assert saved["best_epoch"] == best
    assert trials.loc[trials[STREAM_SCORE].idxmax(), "chosen"]
    # The model carries what it was trained and calibrated with: the controller and calibrate read them there.
    assert saved["rest_false_activation_target"] == saved["calibration"]["target"] == 0.2
    assert saved["guard_ms"] == TRAINING["guard_ms"]


@pytest.mark.parametrize(
    ("normalisation", "adabn", "input_norm"),
    [("per_subject", True, True), ("per_subject", False, False), ("pooled", True, False)],
)
def test_per_subject_normalisation_gives_adabn_models_an_input_norm(tmp_path, normalisation, adabn, input_norm):
    from contrastive_prosthetics.learning.train import fold_setting

    paths = [write_subject(tmp_path / f"s{s}.pt", s) for s in (1, 2, 3)]
    settings = settings_of(TRAINING | {"normalisation": normalisation})
    setting, _ = fold_setting(
        paths, "m", model_settings("contrastive", adabn), ARCHITECTURE, "reps-2-5", FOLD, settings, 0, "cpu", None
    )
    assert setting.config.input_norm is input_norm


@pytest.mark.slow
def test_the_calibration_free_start_never_reads_the_test_subject(tmp_path):
    """An AdaBN model trained on s1 (validated on s2) for the new user s3: another s3 altogether leaves model.pt,
    its pooled statistics and their rest bias included, the same bits."""
    fold = {
        "scheme": "subjects",
        "subjects": ["db2/s1", "db2/s2", "db2/s3"],
        "test_subject": "db2/s3",
        "train": [1, 2, 3, 4, 5, 6],
        "validation_subjects": 1,
    }
    settings = settings_of(TRAINING | {"frames": "stream", "guard_ms": 30}, rest_false_activation_target=0.1)
    files = []
    for name, separation in (("one", 1.0), ("other", 0.3)):
        paths = [write_subject(tmp_path / name / f"s{s}.pt", s, separation if s == 3 else 1.0) for s in (1, 2, 3)]
        out = tmp_path / name / "out"
        train_fold(paths, "m", model_settings("contrastive", True), ARCHITECTURE, "loso", fold, settings, 0, out, "cpu")
        files.append(out / "model.pt")
    assert digest(files[0]) == digest(files[1])
    from contrastive_prosthetics.learning.model_file import load_model_file
    from contrastive_prosthetics.learning.models import batchnorm_layers

    saved = load_model_file(files[0])
    free = saved["calibration_free"]
    assert free is not None and free["calibration"]["target"] == 0.1
    assert len(free["batchnorm"]) == len(batchnorm_layers(saved["network"]))  # every batch norm's statistics
