"""The stream sampler: groups of one frame of every selected class from the continuous recording, never from held-out
repetitions or subjects, never inside the guard band around a change of label."""

from __future__ import annotations

import pytest
import torch
from test_dataset import decode, fake_subject

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.learning.dataset import DB23
from contrastive_prosthetics.learning.stream_sampling import StreamSampler, guard_mask


@pytest.fixture
def data(tmp_path):
    """Three subjects whose stream is their segments back to back in (class, repetition) order, 7 frames each: a class
    is one run of 7 × repetitions frames; db2/s2 lacks class 3 in repetitions 1 and 3, db3/s3 class 5 entirely."""
    paths = [
        fake_subject(tmp_path / "a.pt", "db1", 1, 10, 10),
        fake_subject(tmp_path / "b.pt", "db2", 2, 6, 12, invalid=[(3, 1), (3, 3)]),
        fake_subject(tmp_path / "c.pt", "db3", 3, 6, 12, invalid=[(5, r) for r in range(1, 7)]),
    ]
    return DB23.load(paths, device="cpu", with_streams=True)


def test_guard_mask_covers_the_first_and_last_frames_of_every_run_of_one_label():
    labels = torch.tensor([0, 0, 0, 0, 0, 3, 3, 3, 0, 0, 0, 0])
    subject = torch.tensor([0] * 10 + [1] * 2)  # a new subject starts a new run
    expected = [1, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1]
    assert guard_mask(labels, subject, 1).int().tolist() == expected
    assert guard_mask(labels, subject, 2).int().tolist() == [1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert not guard_mask(labels, subject, 0).any()


def test_an_onset_guard_of_its_own_guards_a_movements_first_frames_alone():
    """Rest (0), gesture 3, rest: with a guard of 2 and an onset guard of 0, the movement's first two frames are
    trained on; its last two, and the rest's edges around it, stay guarded. A longer onset guard guards more."""
    labels = torch.tensor([0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 0, 0, 0, 0])
    subject = torch.zeros_like(labels)
    assert guard_mask(labels, subject, 2).int().tolist() == [1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1]
    assert guard_mask(labels, subject, 2, onset_frames=0).int().tolist() == [1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert guard_mask(labels, subject, 2, onset_frames=3).int().tolist() == [1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert guard_mask(labels, subject, 0, onset_frames=1).int().tolist() == [0] * 5 + [1] + [0] * 8


def test_the_sampler_draws_a_movements_onset_only_with_the_onset_guard_off(data):
    """Class runs span their repetitions (the fixture): with a guard of 2, a movement's first frames (repetition 1,
    frames 0-1) are drawn only when the onset guard is 0; its last frames never are."""
    selection = data.select(subjects=["db1/s1"])
    drawn = {}
    for onset in (None, 0):
        x = StreamSampler(data, selection, groups=4096, seed=2, guard_frames=2, onset_guard_frames=onset).draw().x
        _, label, repetition, frame = decode(x)
        movement = label != 0
        onset_frames = (movement & (repetition == 1) & (frame < 2)).sum().item()
        release = (movement & (repetition == 10) & (frame >= 5)).sum().item()
        drawn[onset] = onset_frames, release
    assert drawn[None] == (0, 0) and drawn[0][0] > 0 and drawn[0][1] == 0


def test_every_group_holds_each_selected_class_once_with_its_own_label(data):
    selection = data.select(subjects=["db1/s1", "db2/s2"], repetitions=[1, 3, 4])
    batch = StreamSampler(data, selection, groups=256, seed=1).draw()
    subject, label, repetition, _ = decode(batch.x)
    assert batch.x.shape == (256, 13, 12)
    present = batch.present
    assert torch.equal(label[present], batch.classes.expand(256, -1)[present])
    assert set(subject[present].tolist()) == {1, 2} and set(repetition[present].tolist()) <= {1, 3, 4}
    assert torch.equal(batch.subjects[present], (subject[present] - 1))  # DB23's subject axis, 0-based here


def test_frames_inside_the_guard_band_are_never_drawn(data):
    """Each class's run spans its repetitions in order: with a guard of 2, its first repetition's frames 0-1 and its
    last repetition's frames 5-6 lie within 2 frames of a change of label."""
    selection = data.select(subjects=["db1/s1"])
    frames = {}
    for guard in (0, 2):
        x = StreamSampler(data, selection, groups=4096, seed=2, guard_frames=guard).draw().x
        _, _, repetition, frame = decode(x)
        at_edge = ((repetition == 1) & (frame < 2)) | ((repetition == 10) & (frame >= 5))
        frames[guard] = at_edge.sum().item()
    assert frames[0] > 0 and frames[2] == 0


def test_per_subject_batches_come_from_one_subject_and_a_class_it_lacks_is_absent(data):
    selection = data.select(subjects=["db2/s2", "db3/s3"])
    sampler = StreamSampler(data, selection, groups=64, seed=4, per_subject=True)
    seen = set()
    for _ in range(20):
        batch = sampler.draw()
        subject, *_ = decode(batch.x[batch.present])
        assert len(set(subject.tolist())) == 1
        seen.add(subject[0].item())
        if subject[0].item() == 3:
            assert not batch.present[:, 5].any() and batch.present[:, 4].all()
    assert seen == {2, 3}


def test_same_seed_same_batches_and_reference_frames_from_the_subjects_recording(data):
    selection = data.select(subjects=["db2/s2"], repetitions=[2, 5])
    a = StreamSampler(data, selection, groups=16, seed=7, per_subject=True, reference_frames=40).draw()
    b = StreamSampler(data, selection, groups=16, seed=7, per_subject=True, reference_frames=40).draw()
    assert torch.equal(a.x, b.x) and torch.equal(a.reference, b.reference)
    subject, _, repetition, _ = decode(a.reference)
    assert set(subject.tolist()) == {2} and set(repetition.tolist()) <= {2, 5}


def test_a_guard_longer_than_every_run_is_refused_with_the_setting_named(data):
    with pytest.raises(InputError, match=r"training\.guard_ms"):
        StreamSampler(data, data.select(subjects=["db1/s1"]), groups=4, seed=0, guard_frames=1000)


def test_without_streams_the_sampler_says_how_to_load_them(tmp_path):
    path = fake_subject(tmp_path / "a.pt", "db1", 1, 10, 10)
    data = DB23.load([path], device="cpu")
    with pytest.raises(InputError, match="with_streams=True"):
        StreamSampler(data, data.select(), groups=4, seed=0)
