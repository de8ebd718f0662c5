"""The synthetic NinaPro generator writes files that look and behave like NinaPro's."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import scipy.signal

from contrastive_prosthetics.data.ninapro import DB1, DB2, DB3, GLOVE_CHANNELS
from contrastive_prosthetics.data.synthetic import SyntheticParams, generate_recording, write_subject

SHORT = SyntheticParams(movement_s=1.2, rest_s=0.8)
SHORTEST = SyntheticParams(movement_s=0.8, rest_s=0.3)  # for tests that only read labels or flat columns
SEED = 7
LABELS = ("stimulus", "restimulus", "repetition", "rerepetition")


@pytest.fixture(scope="module")
def db2_b() -> dict[str, np.ndarray]:
    # Subject 6, so that the amputee test can compare with DB3 subject 6 (who also lacks electrodes 11 and 12).
    return generate_recording(DB2, 6, "B", SHORT, SEED)


@pytest.fixture(scope="module")
def db3_b() -> dict[str, np.ndarray]:
    return generate_recording(DB3, 6, "B", SHORT, SEED)


def runs(track: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, value) of the stretches where a label track holds one non-zero value."""
    values = track.ravel().astype(int)
    change = np.flatnonzero(np.diff(values)) + 1
    starts, ends = np.r_[0, change], np.r_[change, values.size]
    moving = values[starts] != 0
    return starts[moving], ends[moving], values[starts][moving]


def movement_rms(recording: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel EMG RMS during the relabelled movements and during rest."""
    emg, moving = recording["emg"], recording["restimulus"].ravel() > 0
    return np.sqrt(np.mean(emg[moving] ** 2, axis=0)), np.sqrt(np.mean(emg[~moving] ** 2, axis=0))


def test_files_load_with_ninapro_names_shapes_and_dtypes(tmp_path):
    paths = write_subject(DB1, 3, ["A", "B"], tmp_path, SHORT, SEED)

    assert [p.name for p in paths] == ["S3_A1_E1.mat", "S3_A1_E2.mat"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S3_A1_E1.mat", "S3_A1_E2.mat"]  # no temporary left
    data = scipy.io.loadmat(paths[1])
    n = data["emg"].shape[0]
    assert data["emg"].shape == (n, DB1.n_channels) and data["emg"].dtype == np.float64
    assert data["glove"].shape == (n, GLOVE_CHANNELS) and data["glove"].dtype == np.float64
    for name in LABELS:
        assert data[name].shape == (n, 1) and data[name].dtype == np.uint8, name
    assert data["subject"].shape == data["exercise"].shape == (1, 1)
    assert (data["subject"][0, 0], data["exercise"][0, 0]) == (3.0, 2.0)


def test_same_seed_writes_identical_bytes_and_another_seed_does_not(tmp_path):
    first = write_subject(DB1, 1, ["A"], tmp_path / "first", SHORT, SEED)[0].read_bytes()
    again = write_subject(DB1, 1, ["A"], tmp_path / "again", SHORT, SEED)[0].read_bytes()
    other = write_subject(DB1, 1, ["A"], tmp_path / "other", SHORT, SEED + 1)[0].read_bytes()

    assert first == again
    assert first != other


def test_uncompressed_files_load_the_same_data(tmp_path):
    compressed = write_subject(DB1, 1, ["A"], tmp_path / "z", SHORT, SEED)[0]
    plain = write_subject(DB1, 1, ["A"], tmp_path / "plain", SyntheticParams(1.2, 0.8, compress=False), SEED)[0]

    assert plain.stat().st_size > compressed.stat().st_size
    z, p = scipy.io.loadmat(compressed), scipy.io.loadmat(plain)
    for name in ("emg", "glove", *LABELS):
        np.testing.assert_array_equal(z[name], p[name])


def test_db2_exercise_c_is_labelled_18_to_40_with_every_repetition():
    recording = generate_recording(DB2, 1, "C", SHORTEST, SEED)

    for track in ("stimulus", "restimulus"):
        assert set(np.unique(recording[track])) == {0, *range(18, 41)}
    for label in range(18, 41):
        moving = recording["restimulus"].ravel() == label
        assert set(np.unique(recording["rerepetition"].ravel()[moving])) == set(range(1, DB2.repetitions + 1))


def test_db1_numbering_restarts_at_1_in_each_file():
    recording = generate_recording(DB1, 1, "A", SHORTEST, SEED)

    assert set(np.unique(recording["restimulus"])) == {0, *range(1, 13)}
    assert set(np.unique(recording["rerepetition"])) == {0, *range(1, DB1.repetitions + 1)}


def test_restimulus_runs_are_shorter_than_and_inside_the_stimulus_runs(db2_b):
    cue_start, cue_end, cue_label = runs(db2_b["stimulus"])
    start, end, label = runs(db2_b["restimulus"])

    assert len(cue_start) == len(start) == 17 * DB2.repetitions
    np.testing.assert_array_equal(label, cue_label)
    assert np.all(start > cue_start) and np.all(end < cue_end)
    np.testing.assert_array_equal(runs(db2_b["rerepetition"])[0], start)  # rerepetition marks the same stretches


def test_rest_rerepetition_is_zero_or_a_repetition_and_movements_do_not_change():
    zero = generate_recording(DB1, 2, "B", SHORT, SEED)
    carried = generate_recording(DB1, 2, "B", SyntheticParams(1.2, 0.8, rerepetition_in_rest="repetition"), SEED)
    moving = zero["restimulus"].ravel() > 0

    assert np.all(zero["rerepetition"].ravel()[~moving] == 0)
    assert np.all(carried["rerepetition"].ravel()[~moving] > 0)
    np.testing.assert_array_equal(zero["rerepetition"].ravel()[moving], carried["rerepetition"].ravel()[moving])
    for name in ("emg", "glove", "stimulus", "restimulus", "repetition"):
        np.testing.assert_array_equal(zero[name], carried[name])


def test_db2_emg_power_lies_between_20_and_450_hz(db2_b):
    frequency, power = scipy.signal.welch(db2_b["emg"], fs=DB2.sampling_rate_hz, nperseg=1024, axis=0)
    in_band = (frequency >= 20) & (frequency <= 450)

    live = power.sum(axis=0) > 0  # subject 6's last two electrodes are not fitted
    assert np.all(power[in_band][:, live].sum(axis=0) / power[:, live].sum(axis=0) > 0.98)


def test_movement_emg_is_much_stronger_than_rest_emg(db2_b):
    moving, resting = movement_rms(db2_b)
    live = resting > 0

    assert np.all(moving[live] > 3 * resting[live])


def test_emg_follows_the_relabelled_movement_not_the_cue(db2_b):
    emg = db2_b["emg"]
    cue_only = (db2_b["stimulus"].ravel() > 0) & (db2_b["restimulus"].ravel() == 0)
    moving = db2_b["restimulus"].ravel() > 0
    resting = db2_b["stimulus"].ravel() == 0

    cue_only_rms = np.sqrt(np.mean(emg[cue_only] ** 2))
    assert cue_only_rms < 0.5 * np.sqrt(np.mean(emg[moving] ** 2))
    assert cue_only_rms < 2 * np.sqrt(np.mean(emg[resting] ** 2))


def test_amputee_activation_is_weaker_relative_to_noise(db2_b, db3_b):
    intact_moving, intact_resting = movement_rms(db2_b)
    amputee_moving, amputee_resting = movement_rms(db3_b)
    live = slice(0, 10)

    intact_ratio = np.median(intact_moving[live] / intact_resting[live])
    amputee_ratio = np.median(amputee_moving[live] / amputee_resting[live])
    assert amputee_ratio < 0.7 * intact_ratio


def test_a_dead_electrode_is_exactly_flat():
    recording = generate_recording(DB1, 1, "A", SyntheticParams(1.2, 0.8, dead_electrodes=(3,)), SEED)

    assert np.all(recording["emg"][:, 3] == 0)
    assert np.all(np.delete(recording["emg"], 3, axis=1).std(axis=0) > 0)


@pytest.mark.parametrize("subject", [6, 7])
def test_db3_subjects_without_electrodes_11_and_12_have_flat_columns(subject):
    emg = generate_recording(DB3, subject, "B", SHORTEST, SEED)["emg"]

    assert np.all(emg[:, 10:] == 0)
    assert np.all(emg[:, :10].std(axis=0) > 0)


def test_db3_subject_1_never_performed_labels_30_to_40():
    recording = generate_recording(DB3, 1, "C", SHORTEST, SEED)

    assert set(np.unique(recording["stimulus"])) == {0, *range(18, 30)}
    assert set(np.unique(recording["restimulus"])) == {0, *range(18, 30)}


def nearest_centroid_accuracy(recording: dict[str, np.ndarray], test_repetitions: tuple[int, ...]) -> float:
    """Classify each repetition by its per-channel mean |EMG| (log), centroids from the other repetitions."""
    emg = np.abs(recording["emg"])
    label, repetition = recording["restimulus"].ravel(), recording["rerepetition"].ravel()
    keys = sorted({(lab, rep) for lab, rep in zip(label, repetition, strict=True) if lab})
    features = np.log([emg[(label == lab) & (repetition == rep)].mean(axis=0) for lab, rep in keys])
    classes = np.array([lab for lab, _ in keys])
    tested = np.isin([rep for _, rep in keys], test_repetitions)
    names = np.unique(classes)
    centroids = np.array([features[~tested & (classes == name)].mean(axis=0) for name in names])
    distance = ((features[tested, None, :] - centroids[None]) ** 2).sum(axis=-1)
    return float(np.mean(names[distance.argmin(axis=1)] == classes[tested]))


def test_classes_are_separable_and_separability_0_makes_them_alike():
    distinct = generate_recording(DB1, 1, "B", SyntheticParams(1.2, 0.8, separability=1.0), SEED)
    alike = generate_recording(DB1, 1, "B", SyntheticParams(1.2, 0.8, separability=0.0), SEED)
    chance = 1 / 17

    assert nearest_centroid_accuracy(distinct, (2, 5, 8)) > 8 * chance
    assert nearest_centroid_accuracy(alike, (2, 5, 8)) < 4 * chance


def test_classes_mean_the_same_for_every_subject():
    def class_means(subject: int) -> np.ndarray:
        recording = generate_recording(DB1, subject, "B", SHORT, SEED)
        label = recording["restimulus"].ravel()
        return np.array([recording["glove"][label == lab].mean(axis=0) for lab in range(1, 18)])

    # Glove poses share the class prototypes: per-class deviations from the subject mean agree across subjects.
    first, second = class_means(1), class_means(2)
    first -= first.mean(axis=0)
    second -= second.mean(axis=0)
    assert np.corrcoef(first.ravel(), second.ravel())[0, 1] > 0.8


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="rerepetition_in_rest"):
        SyntheticParams(rerepetition_in_rest="last")
    with pytest.raises(ValueError, match="movement_s"):
        SyntheticParams(movement_s=0.3)
    with pytest.raises(ValueError, match="dead electrodes"):
        generate_recording(DB1, 1, "A", SyntheticParams(dead_electrodes=(10,)), SEED)


def test_poses_and_muscle_activations_share_their_synergies():
    """A class's glove pose and its muscle activation come from the same synergy activations, so classes with
    similar poses have similar EMG: what zero-shot recognition from a pose needs."""
    from contrastive_prosthetics.data.synthetic_signals import class_prototypes

    prototypes = class_prototypes(seed=0, separability=1.0)
    pose, activation = prototypes.hand_pose, np.log(prototypes.activation)
    upper = np.triu_indices(len(pose), 1)
    pose_distance = np.linalg.norm(pose[:, None] - pose[None], axis=-1)[upper]
    muscle_distance = np.linalg.norm(activation[:, None] - activation[None], axis=-1)[upper]
    assert np.corrcoef(pose_distance, muscle_distance)[0, 1] > 0.4
    # A pose predicts the activation of classes left out of the fit (a linear map, cross-validated by halves).
    half = len(pose) // 2
    fit, _, _, _ = np.linalg.lstsq(np.c_[pose[:half], np.ones(half)], activation[:half], rcond=None)
    predicted = np.c_[pose[half:], np.ones(len(pose) - half)] @ fit
    residual = ((predicted - activation[half:]) ** 2).sum()
    baseline = ((activation[half:] - activation[:half].mean(0)) ** 2).sum()
    assert residual < 0.8 * baseline
