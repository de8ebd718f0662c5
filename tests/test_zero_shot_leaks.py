"""Held out means held out: a zero-shot fold's unseen gestures reach no pool that training, the search, model
selection or the rest calibration read, neither by class nor by their stretch of the recording (the release after
each movement included); and an unseen gesture's prototype for a subject comes from the other subjects' gloves."""

from __future__ import annotations

import types

import pytest
import torch
from test_train import ARCHITECTURE, FOLD, TRAINING, digest, settings_of, write_posed_subject

from contrastive_prosthetics.learning import train
from contrastive_prosthetics.learning.adaptation import adaptation_frames
from contrastive_prosthetics.learning.dataset import DB23, Streams, SubjectInfo
from contrastive_prosthetics.learning.models import build_model
from contrastive_prosthetics.learning.sampling import ContrastiveSampler
from contrastive_prosthetics.learning.train import fold_setting, train_fold
from contrastive_prosthetics.learning.training_batches import training_sampler

CLASSES = ["rest", "A1", "A2", "A3", "A4"]
UNSEEN = "A2"
N_SUBJECTS, N_REPS, RUN, SEGMENT = 3, 5, 6, 4
ZERO_SHOT = {"scheme": "repetitions", "train": [1, 2], "validation": [3], "test": [4, 5], "unseen": [UNSEEN]}


def protocol_data() -> tuple[DB23, torch.Tensor]:
    """Three subjects recorded as NinaPro records them: every gesture's repetitions in turn, each after a rest run
    that carries its repetition (so the release after a gesture's last repetition is repetition 1 of the next);
    every stream frame's value is its position. Rest segments are cut from the rest before a different gesture in
    each (subject, repetition), some of them before A2. Returns the data and, from the protocol itself, the frames
    that training must not read: A2's runs and the rest runs on either side, outside the test repetitions 4-5."""
    frames, subject, repetition, classes, held = [], [], [], [], []
    segment_start = torch.full((N_SUBJECTS, len(CLASSES), N_REPS), -1, dtype=torch.long)
    position = 0
    unseen = CLASSES.index(UNSEEN)
    for s in range(N_SUBJECTS):
        runs = []  # (class, repetition) in time order
        for gesture in range(1, len(CLASSES)):
            for r in range(1, N_REPS + 1):
                runs += [(0, r, gesture), (gesture, r, gesture)]
        runs.append((0, N_REPS, None))  # the trailing rest: the last repetition's
        for i, (c, r, before) in enumerate(runs):
            beside = [runs[j][0] for j in (i - 1, i + 1) if 0 <= j < len(runs)]
            leaks = (c == unseen or (c == 0 and unseen in beside)) and r not in ZERO_SHOT["test"]
            if c and segment_start[s, c, r - 1] < 0:
                segment_start[s, c, r - 1] = position + 1
            if c == 0 and before == 1 + (s + r) % (len(CLASSES) - 1):  # this repetition's rest segment
                segment_start[s, 0, r - 1] = position + 1
            frames += range(position, position + RUN)
            subject += [s] * RUN
            repetition += [r] * RUN
            classes += [c] * RUN
            held += [leaks] * RUN
            position += RUN
    stream = torch.tensor(frames, dtype=torch.float32)[:, None].expand(-1, 2).clone()
    offset = torch.tensor([i * len(frames) // N_SUBJECTS for i in range(N_SUBJECTS)])
    emg = stream[(segment_start[..., None] + torch.arange(SEGMENT)).clamp(min=0)]  # [S, C, R, frame, channel]
    streams = Streams(
        stream, torch.tensor(subject), torch.tensor(repetition), torch.tensor(classes), offset, segment_start
    )
    data = DB23(
        emg,
        torch.ones(N_SUBJECTS, len(CLASSES), N_REPS, dtype=torch.bool),
        torch.ones(N_SUBJECTS, 2, dtype=torch.bool),
        None,
        CLASSES,
        [SubjectInfo("db1", s + 1, False) for s in range(N_SUBJECTS)],
        torch.device("cpu"),
        frame_rate_hz=100.0,
        streams=streams,
    )
    data.poses = torch.randn(N_SUBJECTS, len(CLASSES), N_REPS, 22, generator=torch.Generator().manual_seed(0))
    data.poses[:, 0] = 0.0
    data.pose_mask = torch.ones(N_SUBJECTS, 22, dtype=torch.bool)
    return data, torch.tensor(held)


def positions(frames: torch.Tensor) -> set[int]:
    """The stream positions of raw frames of :func:`protocol_data` (each frame's value is its position)."""
    return set(frames.reshape(-1, frames.shape[-1])[:, 0].round().long().tolist())


TRAINING_ON_STREAM = settings_of(TRAINING | {"frames": "stream", "guard_ms": 10.0, "reference_frames": 64})
CROSS_FITTED_POSE = {"kind": "contrastive", "adabn": True, "adaptation": "cross_fitted", "class_encoder": "pose"}


def setting_of(monkeypatch, data: DB23):
    """``fold_setting`` of a cross-fitted AdaBN pose model trained on the stream, on ``data``, and its normalisation."""
    monkeypatch.setattr(train, "DB23", types.SimpleNamespace(load=lambda *args, **kwargs: data))
    return fold_setting(
        [], "pose", CROSS_FITTED_POSE, ARCHITECTURE, "zs", ZERO_SHOT, TRAINING_ON_STREAM, 0, "cpu", None
    )


@pytest.fixture
def held_out_setting(monkeypatch):
    """:func:`setting_of` :func:`protocol_data`, with the data and the stream positions training must not read."""
    data, held = protocol_data()
    setting, normalisation = setting_of(monkeypatch, data)
    return setting, normalisation, data, set(held.nonzero().squeeze(1).tolist())


def test_the_protocol_holds_frames_of_the_unseen_gesture_in_training_repetitions():
    data, held = protocol_data()
    streams = data.streams
    assert (streams.classes[held] == CLASSES.index(UNSEEN)).any() and (streams.classes[held] == 0).any()
    assert not torch.isin(streams.repetition[held], torch.tensor(ZERO_SHOT["test"])).any()
    release = held & (streams.classes == 0) & (streams.repetition == 1)  # after A2's last repetition: a test one
    assert release.sum() == N_SUBJECTS * 2 * RUN  # and before its first: the rest runs on either side of A2's


def test_reference_batch_norm_frames_never_come_from_a_held_out_gesture(held_out_setting):
    setting, _, _, held = held_out_setting
    on_stream = training_sampler(setting, seed=0)  # training.frames: stream
    on_segments = ContrastiveSampler(
        setting.data, setting.selections.train, groups=4, seed=0, per_subject=True, reference_frames=64
    )
    for pool in (torch.cat(on_stream.recordings), on_segments.recording_positions):
        assert len(pool) and not held & set(pool.tolist())
    assert on_stream.draw().reference.shape == (64, 2)


def test_the_stream_sampler_never_draws_a_held_out_frame(held_out_setting):
    setting, _, _, held = held_out_setting
    sampler = training_sampler(setting, seed=0)
    eligible = set(sampler.positions.tolist())
    assert eligible and not held & eligible
    classes = setting.data.streams.classes[sampler.positions]
    assert CLASSES.index(UNSEEN) not in classes.tolist() and 0 in classes.tolist()


def test_the_segment_sampler_and_the_normalisation_never_read_a_rest_segment_cut_from_a_held_out_release(
    held_out_setting,
):
    setting, _, data, held = held_out_setting
    for part in ("train", "validation"):
        cells = setting.data.selection_mask(getattr(setting.selections, part)).nonzero()
        start = data.streams.segment_start[cells[:, 0], cells[:, 1], cells[:, 2]]
        read = set((start[:, None] + torch.arange(SEGMENT)).reshape(-1).tolist())
        assert read and not held & read, part
    # Some rest segments of training repetitions were cut from held-out releases, and are left out.
    assert not setting.data.valid[:, 0, :3].all() and setting.data.valid[:, 0, 3:].all()


def test_validation_adaptation_never_reads_a_held_out_frame(held_out_setting):
    setting, _, _, held = held_out_setting
    pool = setting.selections.validation_pool
    for subject in setting.selections.validation.subjects.tolist():
        for repetition in (setting.selections.validation.repetitions + 1).tolist():
            frames = adaptation_frames(setting.raw, subject, repetition, pool[subject], 1, None)
            assert len(frames) and not held & positions(frames)
    assert torch.equal(setting.data.streams.repetition, setting.raw.streams.repetition)  # what predict reads


def test_the_rest_calibration_never_scores_a_held_out_frame(held_out_setting):
    setting, _, _, held = held_out_setting
    streams = setting.validation_streams(build_model(setting.config))  # what the calibration and selection read
    scored = {int(p) for stretch, _, _ in streams for p in stretch}
    assert scored and not held & scored


def test_test_adaptation_still_reads_the_test_repetitions_whole(held_out_setting):
    """Scoring the test subject's test repetitions is evaluation: its adaptation stretch keeps every frame."""
    setting, _, data, _ = held_out_setting
    for subject in range(N_SUBJECTS):
        frames = adaptation_frames(setting.raw, subject, 4, setting.selections.test_pool[subject], 1, None)
        every = (data.streams.subject == subject) & (data.streams.repetition == 5)
        assert positions(frames) == set(every.nonzero().squeeze(1).tolist())


def test_an_unseen_gesture_is_described_to_each_subject_by_the_other_subjects_gloves(monkeypatch):
    """Subject s's test frames are scored with A2's mean pose over the other training subjects' training
    repetitions: s's own glove changes nothing there, while it does describe A2 to the others."""
    data, _ = protocol_data()
    setting, _ = setting_of(monkeypatch, data)
    torch.manual_seed(0)
    model = build_model(setting.config)
    model.class_codes.copy_(setting.class_codes)
    before, index = setting.scores(model, setting.selections.test, setting.selections.test_pool)
    data.poses[0, CLASSES.index(UNSEEN), :2] += 5.0  # subject 0's own A2 in the training repetitions
    again, _ = setting_of(monkeypatch, data)
    model.class_codes.copy_(again.class_codes)
    after, _ = again.scores(model, again.selections.test, again.selections.test_pool)
    own = index[:, 0] == 0
    assert torch.equal(after[own], before[own])
    assert not torch.equal(after[~own], before[~own])


def test_the_unseen_prototype_of_a_subject_is_the_mean_over_the_other_subjects():
    from contrastive_prosthetics.learning.poses import pose_prototypes, subject_prototypes

    data, _ = protocol_data()
    train_cells = data.select(repetitions=ZERO_SHOT["train"])
    unseen = CLASSES.index(UNSEEN)
    codes = subject_prototypes(data, train_cells, [unseen])
    trained = [c for c in range(len(CLASSES)) if c != unseen]
    everyone = data.poses[:, :, :2].double().mean((0, 2))  # [class, 22]: every subject's training cells
    spread = everyone[trained].std(0)
    for s in range(N_SUBJECTS):
        others = [o for o in range(N_SUBJECTS) if o != s]
        expected = data.poses[others][:, unseen, :2].double().mean((0, 1)) / spread
        torch.testing.assert_close(codes[s, unseen].double(), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(codes[s, trained].double(), everyone[trained] / spread, rtol=1e-5, atol=1e-6)
    # A new user (no training subject) gets every training subject's mean; without unseen gestures, as before.
    torch.testing.assert_close(pose_prototypes(data, train_cells, [unseen]).double(), everyone / spread)
    plain = subject_prototypes(data, train_cells)
    for s in range(N_SUBJECTS):
        torch.testing.assert_close(plain[s], pose_prototypes(data, train_cells))


def zero_shot_run(tmp_path, name, **changes):
    """A cross-fitted AdaBN pose model trained on test_train's subjects, A5 held out."""
    paths = [write_posed_subject(tmp_path / name / f"s{s}.pt", s, **changes) for s in (1, 2, 3)]
    out = tmp_path / name / "out"
    settings = {"kind": "contrastive", "adabn": True, "adaptation": "cross_fitted", "class_encoder": "pose"}
    train_fold(paths, "pose", settings, ARCHITECTURE, "zs", {**FOLD, "unseen": ["A5"]}, settings_of(), 0, out, "cpu")
    return out


@pytest.mark.slow
def test_a_cross_fitted_model_trains_and_selects_the_same_whatever_the_held_out_gestures_emg(tmp_path):
    """The held-out gesture's EMG (segments and stream alike) fifty times louder: the same weights, search and
    kept epoch, though the test frames it scores differ."""
    plain = zero_shot_run(tmp_path, "plain")
    louder = zero_shot_run(tmp_path, "louder", unseen_scale=50.0)
    assert digest(plain / "model.pt") == digest(louder / "model.pt")
    assert digest(plain / "search.tsv") == digest(louder / "search.tsv")
    assert digest(plain / "logits.pt") != digest(louder / "logits.pt")
