"""Uncertainty over subjects: the mean of per-subject values with a percentile bootstrap interval.

Users differ more than the subsets a user might pick, so the interval a prosthetics researcher needs resamples
subjects: ``resamples`` draws of as many subjects as there are, with replacement (seeded), the 2.5th and 97.5th
percentiles of the draws' means. NaN values (a subject without rest windows, say) are left out of each mean.
"""

from __future__ import annotations

import warnings

import numpy as np

RESAMPLES = 2000


def subject_interval(values: np.ndarray, seed: int, resamples: int = RESAMPLES, level: float = 0.95) -> np.ndarray:
    """``values`` [subject, ...] → [3, ...]: mean over subjects, lower and upper bound of the interval."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    draws = rng.integers(len(values), size=(resamples, len(values)))
    with warnings.catch_warnings():  # all-NaN slices give NaN, which is the right answer there
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(values[draws], axis=1)
        tail = (1 - level) / 2 * 100
        low, high = np.nanpercentile(means, [tail, 100 - tail], axis=0)
        return np.stack((np.nanmean(values, axis=0), low, high))
