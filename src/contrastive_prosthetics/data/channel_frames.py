"""One band-passed channel's frames (RMS) and Hudgins features, computed in cache-sized chunks.

The arithmetic is exactly that of the whole-array definitions in :mod:`.preprocess` (a test compares the bits): the
filter carries its state from chunk to chunk (as a controller's does), every running sum continues from the
previous chunk's last value with the same additions in the same order, and the two samples that a chunk's first
steps and slope changes need are carried over. What changes is the memory: a chunk's temporaries stay in the CPU's
cache and are reused, instead of a dozen recording-long arrays per channel, each of whose pages the kernel must
fault in and zero (on a DB2 subject that cost more than the arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Samples per chunk: a chunk's handful of float64 temporaries (256 KiB each) fit in a core's L2 cache, and the
# per-chunk overhead (a few dozen numpy calls) stays small next to the work.
CHUNK_SAMPLES = 32768


@dataclass(frozen=True)
class Gather:
    """Where the windowed sums of one running sum are read: its distinct prefix indices (sorted) and, per frame,
    the positions among them of the window's upper and lower prefix index.

    A window of ``window`` entries ending ``shift`` entries after a frame's last sample covers prefix indices
    (lower, upper], clipped to the ``length`` entries that exist (missing entries count as zeros).
    """

    needed: np.ndarray
    upper: np.ndarray
    lower: np.ndarray

    @classmethod
    def of(cls, ends: np.ndarray, length: int, shift: int, window: int) -> Gather:
        upper = np.clip(ends + 1 + shift, 0, length)
        lower = np.clip(ends + 1 + shift - window, 0, upper)
        needed, position = np.unique(np.concatenate((upper, lower)), return_inverse=True)
        return cls(needed, position[: len(ends)], position[len(ends) :])


@dataclass(frozen=True)
class FrameGathers:
    """The five running sums' gathers for a recording of ``n`` samples: shared by all its channels."""

    energy: Gather  # squared samples, for the RMS
    magnitude: Gather  # |sample|, for MAV
    length: Gather  # |step|, for WL (steps are one shorter and end one sample earlier)
    crossings: Gather  # ZC, over steps
    turns: Gather  # SSC, over pairs of steps

    @classmethod
    def of(cls, ends: np.ndarray, n: int, rms_window: int, rms_shift: int, feature_window: int) -> FrameGathers:
        steps = Gather.of(ends, n - 1, -1, feature_window - 1)
        return cls(
            energy=Gather.of(ends, n, rms_shift, rms_window),
            magnitude=Gather.of(ends, n, 0, feature_window),
            length=steps,
            crossings=steps,
            turns=Gather.of(ends, n - 2, -2, feature_window - 2),
        )


class RunningSum:
    """A running sum over a sequence fed chunk by chunk that keeps its value at the prefix indices a gather needs.

    Float sums prepend the running total to each chunk and scan in place, which is the whole-array scan's exact
    sequence of additions; counts are integers, exact in any order.
    """

    def __init__(self, gather: Gather, counts: bool, chunk: int):
        self.gather = gather
        self.counts = counts
        self.at_needed = np.zeros(len(gather.needed), np.int64 if counts else np.float64)
        self.buffer = np.zeros(chunk + 1, self.at_needed.dtype)  # buffer[0]: the running total
        self.fed = 0  # entries summed so far: the prefix index of the running total
        self.filled = int(np.searchsorted(gather.needed, 0, side="right"))  # prefix index 0 is 0: already there

    def feed(self, values: np.ndarray) -> None:
        n = len(values)
        scan = self.buffer[: n + 1]  # scan[k] = the prefix sum at index fed + k
        scan[1:] = values
        if self.counts:
            np.cumsum(scan[1:], out=scan[1:])
            scan[1:] += scan[0]
        else:
            torch.from_numpy(scan).cumsum_(0)  # torch's CPU scan: in order, and several times numpy's speed
        stop = int(np.searchsorted(self.gather.needed, self.fed + n, side="right"))
        self.at_needed[self.filled : stop] = scan[self.gather.needed[self.filled : stop] - self.fed]
        self.filled = stop
        self.fed += n
        self.buffer[0] = scan[n]

    def window_sums(self) -> np.ndarray:
        """float64 sum over each frame's window, once every entry has been fed."""
        sums = self.at_needed[self.gather.upper] - self.at_needed[self.gather.lower]
        return sums.astype(np.float64, copy=False)


def filtered_channel_frames(
    raw: np.ndarray, sos: np.ndarray, gathers: FrameGathers, rms_window: int, feature_window: int, deadband: float
) -> tuple[np.ndarray, np.ndarray]:
    """One channel's raw 2 kHz signal → (RMS frames [frame], Hudgins features [frame, 4]), float64.

    ``deadband``: the ZC/SSC dead-band in signal units (from the calibration stretch, computed by the caller).
    """
    import scipy.signal  # here: a module that reads tensor files imports this one, and needs no filter

    chunk = CHUNK_SAMPLES
    energy = RunningSum(gathers.energy, counts=False, chunk=chunk)
    magnitude = RunningSum(gathers.magnitude, counts=False, chunk=chunk)
    length = RunningSum(gathers.length, counts=False, chunk=chunk)
    crossings = RunningSum(gathers.crossings, counts=True, chunk=chunk)
    turns = RunningSum(gathers.turns, counts=True, chunk=chunk)
    state = np.zeros((sos.shape[0], 2))
    tail = raw[:0]  # the last two filtered samples before the chunk (fewer at the start)
    for first in range(0, len(raw), chunk):
        signal, state = scipy.signal.sosfilt(sos, raw[first : first + chunk], zi=state)
        energy.feed(signal * signal)
        magnitude.feed(np.abs(signal))
        extended = np.concatenate((tail, signal))  # samples from first - len(tail)
        step = np.diff(extended)
        size = np.abs(step)
        big = size >= deadband
        crossing = extended[:-1] * extended[1:] < 0
        crossing &= big
        new = 1 if len(tail) == 2 else 0  # step first - 2 belongs to the previous chunk
        length.feed(size[new:])
        crossings.feed(crossing[new:])
        turning = step[:-1] * step[1:] < 0  # every pair here is new: the previous chunk lacked its second step
        turning &= big[:-1] | big[1:]
        turns.feed(turning)
        tail = extended[-2:]
    frames = np.sqrt(np.maximum(energy.window_sums(), 0.0) / rms_window)
    features = np.stack(
        (
            magnitude.window_sums() / feature_window,
            length.window_sums(),
            crossings.window_sums(),
            turns.window_sums(),
        ),
        axis=1,
    )
    return frames, features
