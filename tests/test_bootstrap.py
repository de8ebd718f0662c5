"""The bootstrap interval over subjects."""

import numpy as np

from contrastive_prosthetics.evaluation.bootstrap import subject_interval


def test_interval_is_seeded_holds_the_mean_and_narrows_with_more_subjects():
    rng = np.random.default_rng(0)
    few, many = rng.normal(0.7, 0.1, 6), rng.normal(0.7, 0.1, 60)
    mean, low, high = subject_interval(few, seed=3)
    assert mean == few.mean() and low < mean < high
    assert np.array_equal(subject_interval(few, seed=3), subject_interval(few, seed=3))
    assert not np.array_equal(subject_interval(few, seed=3), subject_interval(few, seed=4))
    _, low_many, high_many = subject_interval(many, seed=3)
    assert high_many - low_many < high - low


def test_interval_matches_the_normal_approximation_for_many_subjects():
    values = np.random.default_rng(1).normal(0.5, 0.2, 400)
    _, low, high = subject_interval(values, seed=0)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert abs((high - low) / 2 - half) < 0.15 * half


def test_columns_are_independent_and_nan_subjects_are_left_out():
    values = np.array([[0.5, np.nan], [0.7, 0.2], [0.6, 0.4]])
    mean, low, high = subject_interval(values, seed=0)
    assert np.allclose(mean, [0.6, 0.3])
    assert np.allclose([low[0], high[0], low[1], high[1]], [0.5, 0.7, 0.2, 0.4])  # the extreme draws
