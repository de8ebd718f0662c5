"""Few-shot calibration of a model trained on other people: the calibration fold, the methods, the curve, and the
controller's and the calibrate command's personalised model."""

from __future__ import annotations

import contextlib
import hashlib
import re

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import check_figure
from test_train import ARCHITECTURE, CLASSES, TRAINING, model_settings, settings_of, write_subject

from contrastive_prosthetics.config import ConfigError, prepare_config
from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.evaluation import calibration_curve as curve
from contrastive_prosthetics.evaluation.calibration_summary import calibration_table
from contrastive_prosthetics.learning.adaptation import pooled_network
from contrastive_prosthetics.learning.dataset import DB23
from contrastive_prosthetics.learning.folds import (
    check_fold,
    expand_folds,
    fold_selections,
    training_subjects,
    validation_subjects,
)
from contrastive_prosthetics.learning.model_file import load_model_file, read_model_file
from contrastive_prosthetics.learning.models import batchnorm_statistics
from contrastive_prosthetics.learning.personalise import (
    CalibrationSettings,
    balanced_cross_entropy,
    embeddings,
    personalise,
)
from contrastive_prosthetics.learning.train import train_fold
from contrastive_prosthetics.report.calibration_figure import PANELS, summarise_calibration

SUBJECTS = ["db2/s1", "db2/s2", "db2/s3"]
CALIBRATION_FOLD = {
    "scheme": "subjects",
    "subjects": SUBJECTS,
    "test_subject": "db2/s3",
    "train": [1, 2, 3, 4, 5, 6],
    "validation_subjects": 1,
    "calibration": [1, 3, 4],
    "counts": [0, 1, 2],
    "test": [2, 5],
    "family": "calibration",
}
STREAM_TRAINING = settings_of(
    TRAINING
    | {"frames": "stream", "guard_ms": 30, "search": TRAINING["search"] | {"trials": 1}, "final": {"epochs": 2}}
    | {"normalisation": "per_subject"},
    rest_false_activation_target=0.1,
    vote_window_ms=50,
)
SETTINGS = {
    "methods": ["adabn", "prototypes", "fine_tune", "fine_tune_network", "transfer"],
    "baselines": ["scratch", "lda"],
    "prototype_weight": 1.0,
    "fine_tune": {"steps": 30, "learning_rate": 0.01},
    "scratch_epochs": 1,
    "transfer": {"learning_rate_scale": [0.1, 1.0], "layers": ["all"], "steps": 5, "anchor": 0.0},
}


def digest(state: dict) -> str:
    return hashlib.sha256(b"".join(value.numpy().tobytes() for value in state.values())).hexdigest()


def trained(tmp_path, name: str, test_scale: float = 1.0):
    """A contrastive AdaBN model with per-user input normalisation trained on s2 (validated on s1) for the new user
    s3, whose scored repetitions 2 and 5 are scaled by ``test_scale``; (model.pt, s3's tensor file, s1's)."""
    paths = [
        write_subject(tmp_path / name / f"s{s}.pt", s, test_scale=test_scale if s == 3 else 1.0) for s in (1, 2, 3)
    ]
    out = tmp_path / name / "model"
    settings = model_settings("contrastive", True)
    train_fold(paths, "contrastive", settings, ARCHITECTURE, "cal", CALIBRATION_FOLD, STREAM_TRAINING, 0, out, "cpu")
    return out / "model.pt", paths[2], paths[0]


def test_the_calibration_shorthand_expands_into_one_subjects_fold_per_subject_scoring_its_test_repetitions(tmp_path):
    shorthand = {k: v for k, v in CALIBRATION_FOLD.items() if k not in ("test_subject", "family")}
    folds = expand_folds({"cal": shorthand | {"scheme": "calibration"}}, SUBJECTS)
    assert list(folds) == ["cal-db2-s1", "cal-db2-s2", "cal-db2-s3"]
    fold = folds["cal-db2-s3"]
    assert fold["scheme"] == "subjects" and fold["test_subject"] == "db2/s3" and fold["family"] == "cal"
    assert fold["calibration"] == [1, 3, 4] and fold["counts"] == [0, 1, 2] and fold["test"] == [2, 5]
    paths = [write_subject(tmp_path / f"s{s}.pt", s) for s in (1, 2, 3)]
    data = DB23.load(paths, device="cpu", with_streams=True)
    selections = fold_selections(data, fold, "cal-db2-s3")
    assert selections.train.subjects.tolist() == [1] and selections.validation.subjects.tolist() == [0]  # the next
    assert selections.test.subjects.tolist() == [2] and (selections.test.repetitions + 1).tolist() == [2, 5]
    assert selections.test_pool == {2: [2, 5]}  # cross-fitted AdaBN adapts on the scored repetitions only


def test_one_new_user_per_fold_expands_as_it_always_has():
    shorthand = {"scheme": "calibration", "subjects": ["db2/s1", "db2/s2", "db2/s3"], "train": [1, 2]}
    shorthand |= {"validation_subjects": 1, "calibration": [1], "counts": [0, 1], "test": [3]}
    expected = {
        "scheme": "subjects",
        "subjects": ["db2/s1", "db2/s2", "db2/s3"],
        "test_subject": "db2/s2",
        "train": [1, 2],
        "validation_subjects": 1,
        "calibration": [1],
        "counts": [0, 1],
        "test": [3],
        "family": "cal",
    }
    for folds in (expand_folds({"cal": shorthand}, []), expand_folds({"cal": shorthand | {"new_users": 1}}, [])):
        assert list(folds) == ["cal-db2-s1", "cal-db2-s2", "cal-db2-s3"]
        assert folds["cal-db2-s2"] == expected and list(folds["cal-db2-s2"]) == list(expected)
        assert validation_subjects(folds["cal-db2-s2"]) == ["db2/s3"]


FIVE = ["db2/s1", "db2/s2", "db2/s3", "db2/s4", "db2/s5"]


@pytest.mark.parametrize("validating", [1, 2])
def test_new_users_hold_out_consecutive_blocks_each_validated_after_its_last_new_user(validating):
    shorthand = {k: v for k, v in CALIBRATION_FOLD.items() if k not in ("test_subject", "family")}
    shorthand |= {"scheme": "calibration", "subjects": FIVE, "new_users": 2, "validation_subjects": validating}
    folds = expand_folds({"cal": shorthand}, [])
    assert list(folds) == ["cal-db2-s1-s2", "cal-db2-s3-s4", "cal-db2-s5"]
    assert [fold["test_subjects"] for fold in folds.values()] == [FIVE[:2], FIVE[2:4], FIVE[4:]]
    assert all("test_subject" not in fold and "new_users" not in fold for fold in folds.values())
    after = {1: [["db2/s3"], ["db2/s5"], ["db2/s1"]], 2: [FIVE[2:4], ["db2/s5", "db2/s1"], FIVE[:2]]}[validating]
    assert [validation_subjects(fold) for fold in folds.values()] == after  # the next ones, wrapping around
    for fold in folds.values():
        assert not set(validation_subjects(fold)) & set(fold["test_subjects"])
    across = shorthand | {"subjects": ["db2/s40", "db3/s1", "db3/s2", "db3/s3"], "validation_subjects": 1}
    assert list(expand_folds({"cal": across}, [])) == ["cal-db2-s40-db3-s1", "cal-db3-s2-s3"]


def test_new_users_leaving_no_training_subject_are_refused_with_their_key():
    shorthand = {k: v for k, v in CALIBRATION_FOLD.items() if k not in ("test_subject", "family")}
    shorthand |= {"scheme": "calibration", "subjects": FIVE, "validation_subjects": 2}
    assert len(expand_folds({"cal": shorthand | {"new_users": 2}}, [])) == 3  # one subject trains each
    with pytest.raises(InputError, match=re.escape("folds.cal.new_users: 3 new users per fold leave no training")):
        expand_folds({"cal": shorthand | {"new_users": 3}}, [])


TWO_NEW_USERS = {
    **{k: v for k, v in CALIBRATION_FOLD.items() if k != "test_subject"},
    "subjects": ["db2/s1", "db2/s2", "db2/s3", "db2/s4"],
    "test_subjects": ["db2/s3", "db2/s4"],
    "counts": [0, 1],
}


def test_every_new_user_of_a_fold_is_held_out_of_training_and_selection_and_scored_on_its_own_pool(tmp_path):
    paths = [write_subject(tmp_path / f"s{s}.pt", s) for s in (1, 2, 3, 4)]
    data = DB23.load(paths, device="cpu", with_streams=True)
    selections = fold_selections(data, TWO_NEW_USERS, "cal-db2-s3-s4")
    assert selections.train.subjects.tolist() == [1] and selections.validation.subjects.tolist() == [0]
    assert selections.validation_pool.keys() == {0}
    assert selections.test.subjects.tolist() == [2, 3] and (selections.test.repetitions + 1).tolist() == [2, 5]
    assert selections.test_pool == {2: [2, 5], 3: [2, 5]}


def test_training_subjects_keeps_the_first_n_after_the_validation_subjects():
    fold = {"scheme": "subjects", "subjects": FIVE, "test_subject": FIVE[1], "train": [1], "validation_subjects": 1}
    assert validation_subjects(fold) == [FIVE[2]]
    assert training_subjects(fold) == [FIVE[0], FIVE[3], FIVE[4]]  # every other subject, in the group's order
    assert training_subjects(fold | {"training_subjects": 2}) == [FIVE[3], FIVE[4]]  # walking on from s3
    assert training_subjects(fold | {"training_subjects": 3}) == [FIVE[3], FIVE[4], FIVE[0]]
    shorthand = {k: v for k, v in fold.items() if k != "test_subject"} | {"scheme": "calibration", "counts": [0]}
    shorthand |= {"calibration": [1], "test": [2], "training_subjects": 1}
    expanded = expand_folds({"cal": shorthand}, [])
    assert {name: training_subjects(f) for name, f in expanded.items()}["cal-db2-s1"] == [FIVE[2]]
    with pytest.raises(InputError, match=re.escape("folds.cal.training_subjects: 4, but the group of 5 leaves 3")):
        check_fold("cal", fold | {"training_subjects": 4})


def test_training_subjects_is_what_training_selects(tmp_path):
    paths = [write_subject(tmp_path / f"s{s}.pt", s) for s in (1, 2, 3, 4)]
    data = DB23.load(paths, device="cpu", with_streams=True)
    fold = {k: v for k, v in CALIBRATION_FOLD.items()} | {"subjects": ["db2/s1", "db2/s2", "db2/s3", "db2/s4"]}
    assert fold_selections(data, fold, "f").train.subjects.tolist() == [0, 1]  # s4 validates; s1 and s2 train
    assert fold_selections(data, fold | {"training_subjects": 1}, "f").train.subjects.tolist() == [0]  # after s4: s1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"counts": [0, 4]}, "counts: [4] exceed the 3 calibration repetitions"),
        ({"calibration": [1, 2, 3]}, "repetitions [2] are in both calibration and test"),
    ],
)
def test_a_calibration_fold_that_could_leak_or_cannot_be_drawn_is_refused_with_its_key(change, message):
    from conftest import DEFAULT_CONFIG

    config = {**DEFAULT_CONFIG, "folds": dict(DEFAULT_CONFIG["folds"])}
    config["folds"] = {"calibration": {**config["folds"]["calibration-db2-s1"], "calibration": [1, 3, 4], **change}}
    with pytest.raises(ConfigError, match=re.escape(message)):
        prepare_config(config, "test")


@contextlib.contextmanager
def recorded_validation_users():
    """Every ValidationUsers the calibration curve makes, in order (the list yielded)."""
    made = []
    real = curve.ValidationUsers.of.__func__

    def of(cls, *args):
        made.append(real(cls, *args))
        return made[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(curve.ValidationUsers, "of", classmethod(of))
        yield made


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same fold trained and calibrated twice, the new user's scored repetitions scaled by 5 the second time."""
    tmp_path = tmp_path_factory.mktemp("calibration")
    runs = {}
    for name, scale in (("plain", 1.0), ("scaled", 5.0)):
        model, tensor, validation = trained(tmp_path, name, scale)
        states = []
        real = curve.network_candidate

        def recording(method, network, *args, states=states, real=real):
            states.append((method, digest(network.state_dict())))
            return real(method, network, *args)

        curve.network_candidate = recording
        try:
            with recorded_validation_users() as validations:
                table = curve.calibration_curve(
                    model,
                    [tensor],
                    [validation],
                    "cal-db2-s3",
                    CALIBRATION_FOLD,
                    STREAM_TRAINING,
                    SETTINGS,
                    0,
                    tmp_path / f"{name}.tsv",
                )
        finally:
            curve.network_candidate = real
        runs[name] = (model, table, states, validations)
    return runs


@pytest.fixture(scope="module")
def two_new_users(tmp_path_factory):
    """A fold holding out s3 and s4 (trained on s2, validated on s1) trained and calibrated twice, s4's scored
    repetitions scaled by 5 the second time; per run: (model.pt, table, the ValidationUsers made)."""
    tmp_path = tmp_path_factory.mktemp("new_users")
    settings = SETTINGS | {"methods": ["adabn", "prototypes", "transfer"], "baselines": ["lda"]}
    runs = {}
    for name, scale in (("plain", 1.0), ("scaled", 5.0)):
        paths = [
            write_subject(tmp_path / name / f"s{s}.pt", s, test_scale=scale if s == 4 else 1.0) for s in (1, 2, 3, 4)
        ]
        out = tmp_path / name / "model"
        model = model_settings("contrastive", True)
        train_fold(paths, "contrastive", model, ARCHITECTURE, "cal", TWO_NEW_USERS, STREAM_TRAINING, 0, out, "cpu")
        with recorded_validation_users() as validations:
            table = curve.calibration_curve(
                out / "model.pt",
                paths[2:],
                paths[:1],
                "cal-db2-s3-s4",
                TWO_NEW_USERS,
                STREAM_TRAINING,
                settings,
                0,
                tmp_path / f"{name}.tsv",
            )
        runs[name] = (out / "model.pt", table, validations)
    return runs


@pytest.mark.slow
def test_each_new_user_of_a_fold_has_its_rows_untouched_by_the_others_scored_repetitions(two_new_users):
    (plain_model, plain, plain_validations), (scaled_model, scaled, _) = two_new_users.values()
    assert plain_model.read_bytes() == scaled_model.read_bytes()  # neither new user reaches training or selection
    rows = {s: set(zip(part["method"], part["repetitions"], strict=True)) for s, part in plain.groupby("subject")}
    assert rows.keys() == {"db2/s3", "db2/s4"} and rows["db2/s3"] == rows["db2/s4"]
    assert {0, 1} == {count for _, count in rows["db2/s3"]}
    assert len(plain_validations) == 1  # one c > 0: the validation subject taught both new users at once
    s3, s4 = (plain["subject"] == "db2/s3").to_numpy(), (plain["subject"] == "db2/s4").to_numpy()
    pd.testing.assert_frame_equal(plain[s3], scaled[s3])  # s4's scored repetitions change nothing of s3's rows
    pd.testing.assert_series_equal(plain[s4]["rest_bias"], scaled[s4]["rest_bias"])  # nor s4's calibration
    assert not np.allclose(plain[s4]["segment_accuracy"], scaled[s4]["segment_accuracy"]) or not np.allclose(
        plain[s4]["stream_accuracy"], scaled[s4]["stream_accuracy"]
    )  # while s4's scores read them


@pytest.mark.slow
def test_the_scored_repetitions_never_reach_training_selection_or_calibration(two_runs):
    (plain_model, plain, plain_states, _), (scaled_model, scaled, scaled_states, _) = (
        two_runs["plain"],
        two_runs["scaled"],
    )
    assert plain_model.read_bytes() == scaled_model.read_bytes()  # training and selection: the same bits
    assert plain_states == scaled_states  # every calibrated network (methods, fine-tuned, scratch) the same bits
    assert {method for method, _ in plain_states} >= {"fine_tune_network", "scratch", "prototypes"}
    pd.testing.assert_series_equal(plain["rest_bias"], scaled["rest_bias"])  # every rest calibration too (LDA's)
    assert not np.allclose(plain["segment_accuracy"], scaled["segment_accuracy"]) or not np.allclose(
        plain["stream_accuracy"], scaled["stream_accuracy"]
    )  # while the scores read the scaled repetitions


@pytest.mark.slow
def test_the_curve_has_every_method_at_every_count_and_the_baselines_from_one_repetition(two_runs):
    table = two_runs["plain"][1]
    methods = table.groupby("repetitions")["method"].apply(set).to_dict()
    calibrated = {"adabn", "prototypes", "fine_tune", "fine_tune_network", "transfer"}
    assert methods == {
        0: {"none", "unlabelled"},
        1: calibrated | {"scratch", "lda"},
        2: calibrated | {"scratch", "lda"},
    }
    without = table[table["repetitions"] == 0].set_index("method")
    # Every frame of the first c calibration repetitions' recording: s3's 13 classes of 20 frames each; the
    # unlabelled start reads the first one's, the calibration-free none nothing.
    expected = table["repetitions"].where(table["method"] != "unlabelled", 1) * len(CLASSES) * 20
    assert (table["calibration_frames"] == expected).all()
    # The scored repetitions 2 and 5, each segment of 20 frames in four 50 ms votes, whatever the method.
    assert (table["segment_windows"] == len(CLASSES) * 2 * 4).all()
    # Neither start reads the user's labels: none's rest bias was set on the validation subject under the pooled
    # statistics, unlabelled's at training under cross-fitted AdaBN.
    model = two_runs["plain"][0]
    saved = read_model_file(model)
    assert without.loc["none", "rest_bias"] == saved["calibration_free"]["rest_bias"]
    assert without.loc["unlabelled", "rest_bias"] == saved["rest_bias"]
    assert without["rest_bias_margin"].isna().all()
    # From one repetition, the rest bias adds a margin learned on the validation subject s1 as a new user.
    calibrated_rows = table[table["repetitions"] > 0]
    assert np.isfinite(calibrated_rows["rest_bias_margin"]).all() and (calibrated_rows["rest_bias_margin"] != 0).any()
    # Transfer's recipe is the one the validation subject scored best with at that c, each recipe tried there.
    recipes = CalibrationSettings.from_config(SETTINGS).transfer
    for count, validation in zip((1, 2), two_runs["plain"][3], strict=True):
        assert {recipe for method, recipe in validation.scores if method == "transfer"} == {r.name for r in recipes}
        best = max(recipes, key=lambda r: validation.scores[("transfer", r.name)])
        chosen = table[(table["method"] == "transfer") & (table["repetitions"] == count)]["recipe"]
        assert chosen.tolist() == [best.name]
    assert (table[table["method"] != "transfer"]["recipe"].fillna("") == "").all()


@pytest.mark.slow
def test_the_calibration_free_start_holds_statistics_pooled_over_the_training_subjects(two_runs):
    model = two_runs["plain"][0]
    saved = load_model_file(model)
    free = saved["calibration_free"]
    data = DB23.load([model.parent.parent / f"s{s}.pt" for s in (1, 2, 3)], device="cpu", with_streams=True)
    data = data.normalised(saved["normalisation_"])
    selections = fold_selections(data, CALIBRATION_FOLD, "cal")
    pooled = pooled_network(saved["network"], data, selections.train, 1, 10000)
    for (mean, var, _), (expected_mean, expected_var, _) in zip(
        free["batchnorm"], batchnorm_statistics(pooled), strict=True
    ):
        assert torch.equal(mean, expected_mean) and torch.equal(var, expected_var)
    # The first batch norm normalises each electrode: its statistics are the input's per channel (six electrodes).
    assert free["batchnorm"][0][0].shape == (6,) and saved["network"].emg_encoder.input_norm is not None
    # Not the statistics training left behind (its last batches': one subject's).
    trained_stats = batchnorm_statistics(saved["network"])
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(trained_stats, free["batchnorm"], strict=True))


def recording_of(tensor, count: int):
    raw = DB23.load([tensor], device="cpu", with_streams=True)
    return curve.calibration_recording(raw, 0, [1, 3, 4][:count], 1, 3)


@pytest.mark.slow
def test_prototypes_are_the_mean_embedding_of_the_users_frames_of_each_class(two_runs, tmp_path):
    saved = load_model_file(two_runs["plain"][0])
    tensor = write_subject(tmp_path / "s3.pt", 3)
    recording = recording_of(tensor, 1)
    settings = CalibrationSettings.from_config(SETTINGS)
    adapted = personalise(saved["network"], saved["normalisation_"], recording, "adabn", settings)
    personal = personalise(saved["network"], saved["normalisation_"], recording, "prototypes", settings)
    frames, labels = recording.labelled()
    normalised = torch.where(recording.live, saved["normalisation_"].apply(frames), 0.0)
    unit = embeddings(adapted, normalised)
    for c in labels.unique().tolist():
        expected = F.normalize(unit[labels == c].mean(0), dim=0)
        assert torch.allclose(personal.encode_classes()[c], expected, atol=1e-6)
    assert torch.equal(personal.emg_encoder.layers[0].weight, saved["network"].emg_encoder.layers[0].weight)


@pytest.mark.slow
def test_fine_tuning_fits_the_users_frames_with_the_encoder_frozen(two_runs, tmp_path):
    saved = load_model_file(two_runs["plain"][0])
    recording = recording_of(write_subject(tmp_path / "s3.pt", 3), 2)
    settings = CalibrationSettings.from_config(SETTINGS | {"fine_tune": {"steps": 60, "learning_rate": 0.05}})
    adapted = personalise(saved["network"], saved["normalisation_"], recording, "adabn", settings)
    tuned = personalise(saved["network"], saved["normalisation_"], recording, "fine_tune", settings)
    frames, labels = recording.labelled()
    x = torch.where(recording.live, saved["normalisation_"].apply(frames), 0.0)
    with torch.no_grad():
        before = balanced_cross_entropy(adapted(x), labels, 13)
        after = balanced_cross_entropy(tuned(x), labels, 13)
    assert after < before
    encoder = {k: v for k, v in tuned.state_dict().items() if k.startswith("emg_encoder")}
    assert digest(encoder) == digest({k: v for k, v in adapted.state_dict().items() if k.startswith("emg_encoder")})


@pytest.mark.slow
def test_the_summary_gives_subject_means_and_draws_the_curve(two_runs, tmp_path):
    table = two_runs["plain"][1]
    rows = pd.concat([table, table.assign(subject="db2/s9", segment_accuracy=table["segment_accuracy"] / 2)])
    paths = []
    for i, (_, part) in enumerate(rows.groupby("subject")):
        paths.append(tmp_path / f"{i}.tsv")
        part.to_csv(paths[-1], sep="\t", index=False)
    summary = summarise_calibration(paths, tmp_path / "calibration.tsv", tmp_path / "calibration", 0)
    row = summary[(summary["method"] == "lda") & (summary["repetitions"] == 1)]
    accuracy = row[row["metric"] == "segment_accuracy"].iloc[0]
    original = table[(table["method"] == "lda") & (table["repetitions"] == 1)]["segment_accuracy"].iloc[0]
    assert accuracy["mean"] == pytest.approx(0.75 * original) and accuracy["subjects"] == 2
    assert accuracy["low"] <= accuracy["mean"] <= accuracy["high"]
    texts = [*PANELS.values(), "LDA on the user's repetitions", "contrastive: AdaBN + prototypes", "(2 subjects)"]
    texts += ["Paired: minus scratch", "contrastive: calibration-free (pooled statistics)"]
    check_figure(tmp_path / "calibration", panels=len(PANELS) + 1, texts=texts)
    assert len(calibration_table(rows, 0)) == len(summary)


def test_prototypes_need_a_contrastive_model(tmp_path):
    from contrastive_prosthetics.learning.dataset import Normalisation
    from contrastive_prosthetics.learning.models import ModelConfig, build_model

    classifier = build_model(ModelConfig(kind="classifier", n_channels=6, n_classes=13, embedding_dim=8, width=16))
    normalisation = Normalisation(torch.full((6,), -4.0), torch.ones(6), True, torch.full((6,), 1e-3))
    recording = recording_of(write_subject(tmp_path / "s3.pt", 3), 1)
    settings = CalibrationSettings.from_config(SETTINGS)
    with pytest.raises(InputError, match="prototypes needs a contrastive model"):
        personalise(classifier, normalisation, recording, "prototypes", settings)


@pytest.mark.slow
def test_a_curve_without_its_validation_subjects_recordings_is_refused_naming_them(two_runs, tmp_path):
    model = two_runs["plain"][0]
    out = tmp_path / "calibration.tsv"
    with pytest.raises(InputError, match=re.escape("cal-db2-s3: validates on ['db2/s1'], whose converted files")):
        curve.calibration_curve(
            model,
            [model.parent.parent / "s3.pt"],
            [],
            "cal-db2-s3",
            CALIBRATION_FOLD,
            STREAM_TRAINING,
            SETTINGS,
            0,
            out,
        )
    assert not out.exists()
