"""Milliseconds to frames or samples: one function, rounding as every call site rounded before it."""

from __future__ import annotations

import pytest

from contrastive_prosthetics.core.units import ms_to_frames


@pytest.mark.parametrize(
    ("ms", "rate_hz", "count"),
    [
        (0, 100, 0),
        (50, 100, 5),
        (100, 100, 10),
        (200, 100, 20),  # the RMS and feature windows at DB1's 100 Hz
        (250, 100, 25),  # the default vote
        (1000, 100, 100),
        (200, 2000.0, 400),  # the RMS window at DB2's 2 kHz, in samples
        (10, 2000.0, 20),  # a replay chunk
        (5.5, 2000.0, 11),  # reference.yaml's RMS window
        (200, 2048, 410),  # 409.6 samples
        (130, 100.0, 13),
    ],
)
def test_configured_lengths_become_the_counts_they_always_were(ms, rate_hz, count):
    assert ms_to_frames(ms, rate_hz) == count
    assert isinstance(ms_to_frames(ms, rate_hz), int)


@pytest.mark.parametrize(("ms", "count"), [(5, 0), (15, 2), (25, 2), (35, 4), (45, 4), (255, 26), (265, 26)])
def test_a_half_frame_rounds_to_the_even_count_as_round_does(ms, count):
    assert ms_to_frames(ms, 100) == count == round(ms / 10)


@pytest.mark.parametrize("rate_hz", [1, 2, 4, 5, 10, 20, 25, 40, 50, 80, 100, 125, 200, 250, 400, 500, 1000, 2000])
def test_it_agrees_with_the_frame_period_spelling_at_every_frame_rate_the_configuration_accepts(rate_hz):
    """The vote window and the stream metrics counted ``round(ms / (1000 / rate))``: at the frame rates that divide
    100 or 2000 Hz (config.check_sampling) their period is exact, and the counts are equal, halves included."""
    period_ms = 1000.0 / rate_hz
    for tenths in range(0, 30001):
        ms = tenths / 10
        assert ms_to_frames(ms, rate_hz) == round(ms / period_ms), ms
