"""Milliseconds as a whole number of frames (at a frame rate) or samples (at a sampling rate): the one conversion
every stage makes, so that a window, a vote or a guard band is the same length wherever it is counted."""

from __future__ import annotations


def ms_to_frames(ms: float, rate_hz: float) -> int:
    """The ticks of a ``rate_hz`` clock in ``ms`` milliseconds, rounded as Python's ``round`` does (a half goes to
    the even neighbour: 25 ms at 100 Hz is 2 frames, 35 ms is 4).

    ``ms * rate_hz`` first, then ``/ 1000``: for whole milliseconds and rates the product is exact, so the one
    rounding left is the division's and a whole half is seen as one.
    """
    return round(ms * rate_hz / 1000)
