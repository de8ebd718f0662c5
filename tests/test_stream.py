"""Scored stretches: the frames of a subject's test repetitions, cut wherever the recording leaves them, so that
the controller restarts at each (the metrics themselves: test_stream_metrics.py)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import torch

from contrastive_prosthetics.learning.stream_scoring import scored_stretches

# Subject 0 does gesture 1 three times, then gesture 2 twice (a rest frame carries the next movement's repetition;
# 0: none), then subject 1 gesture 1 twice.
SUBJECT = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
REPETITION = [1, 1, 2, 2, 3, 1, 1, 2, 0, 1, 1, 2, 2]


def recording(subject: list[int], repetition: list[int]) -> SimpleNamespace:
    """What scored_stretches reads of a DB23: each stream frame's subject and repetition."""
    return SimpleNamespace(streams=SimpleNamespace(subject=torch.tensor(subject), repetition=torch.tensor(repetition)))


def test_each_gestures_repetition_is_its_own_stretch_as_the_recording_interleaves_them():
    data = recording(SUBJECT, REPETITION)  # subject 0's repetition 1: two stretches, one per gesture, never joined
    stretches = scored_stretches(data, 0, [1])
    assert [s.tolist() for s in stretches] == [[0, 1], [5, 6]]
    assert all(s.dtype.kind == "i" for s in stretches)


def test_consecutive_test_repetitions_make_one_stretch_and_other_subjects_frames_are_left_out():
    data = recording(SUBJECT, REPETITION)
    assert [s.tolist() for s in scored_stretches(data, 0, [1, 2])] == [[0, 1, 2, 3], [5, 6, 7]]
    assert [s.tolist() for s in scored_stretches(data, 1, [2])] == [[11, 12]]  # positions in the whole stream


def test_a_subject_without_the_repetitions_has_no_stretch():
    data = recording([0, 0, 1, 1], [1, 2, 1, 2])
    assert scored_stretches(data, 0, [3]) == []
    assert scored_stretches(data, 2, [1]) == []


def test_stretches_cover_every_selected_frame_once_in_order():
    generator = np.random.default_rng(0)
    subject = np.repeat(np.arange(3), 200)
    repetition = generator.integers(0, 4, 600)
    data = recording(subject.tolist(), repetition.tolist())
    stretches = scored_stretches(data, 1, [1, 3])
    joined = np.concatenate(stretches)
    expected = np.flatnonzero((subject == 1) & np.isin(repetition, [1, 3]))
    assert np.array_equal(joined, expected)
    assert all(np.all(np.diff(s) == 1) for s in stretches)  # each stretch: consecutive frames
    assert all(a[-1] + 1 < b[0] for a, b in itertools.pairwise(stretches))  # cut only at gaps
