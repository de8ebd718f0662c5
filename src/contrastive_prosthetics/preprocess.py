"""Signal processing: band-pass → moving RMS → 100 Hz frames, and the segments cut per class × repetition.

For 2 kHz databases (DB2, DB3) only the stretches that end up in a segment are filtered, each with a lead-in
long enough for the filter's start-up transient to have died away, so a segment equals the same samples of the
continuously filtered recording (to 1e-6 of the signal's scale; a test proves it) at a fraction of the cost.
DB1 arrives rectified and RMS-smoothed at 100 Hz: its frames are its samples.

A frame is the RMS of the ``rms_window_ms`` of signal that ends at the frame's last sample (causal, as a
prosthesis controller sees it); frames are ``1000 / frame_rate_hz`` ms apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.signal

from .errors import InputError

SEGMENTS_PER_CHUNK = 16


@dataclass(frozen=True)
class PreprocessParams:
    """The ``preprocess`` section of the configuration (config.yaml documents and sets every value)."""

    bandpass_low_hz: float
    bandpass_high_hz: float
    filter_order: int
    rms_window_ms: float
    frame_rate_hz: float
    window_offset_ms: float  # where a movement's segment starts after its relabelled onset
    window_length_ms: float
    feature_window_ms: float  # Hudgins features for the LDA baseline
    max_length_mismatch: int  # samples by which a file's fields may differ before it is rejected
    lead_in_tolerance: float = 1e-9  # impulse-response tail left when a stretch's filtering starts (numerics)

    def frames_per_segment(self) -> int:
        return round(self.window_length_ms * self.frame_rate_hz / 1000)

    def as_dict(self) -> dict:
        return asdict(self)


def hop_samples(sampling_rate_hz: float, params: PreprocessParams) -> int:
    hop = sampling_rate_hz / params.frame_rate_hz
    if hop != int(hop) or hop < 1:
        raise InputError(
            f"frame rate {params.frame_rate_hz} Hz must divide the sampling rate {sampling_rate_hz} Hz: "
            "fix preprocess.frame_rate_hz"
        )
    return int(hop)


def bandpass_sos(sampling_rate_hz: float, params: PreprocessParams) -> np.ndarray:
    """Causal Butterworth band-pass as second-order sections (numerically safe at order 4 and above)."""
    return scipy.signal.butter(
        params.filter_order,
        [params.bandpass_low_hz, params.bandpass_high_hz],
        btype="bandpass",
        fs=sampling_rate_hz,
        output="sos",
    )


def filter_lead_in(sos: np.ndarray, tolerance: float, max_samples: int = 1 << 16) -> int:
    """Samples after which the filter's impulse response has less than ``tolerance`` of absolute mass left.

    A stretch filtered from rest state differs from the continuously filtered signal by the response to the
    state the continuous filter carried in; that difference is bounded by the signal scale times this tail.
    """
    impulse = np.zeros(max_samples)
    impulse[0] = 1.0
    tail = np.cumsum(np.abs(scipy.signal.sosfilt(sos, impulse))[::-1])[::-1]
    below = np.flatnonzero(tail < tolerance)
    if below.size == 0:
        raise InputError(f"the band-pass filter does not settle to {tolerance} within {max_samples} samples")
    return int(below[0])


def find_runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of equal labels: (starts, stops, values), stops exclusive."""
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate(([0], change))
    stops = np.concatenate((change, [len(labels)]))
    return starts, stops, labels[starts]


def _rms_from_energy(energy: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """RMS over the ``window`` samples ending at each of ``ends`` (inclusive), from a running sum of squares
    along the last axis. ``ends - window`` must be ≥ 0 (callers pad the start)."""
    total = energy[..., ends] - energy[..., ends - window]
    return np.sqrt(np.maximum(total, 0.0) / window)


HUDGINS_FEATURES = ("mav", "wl", "zc", "ssc")


def _windowed_sum(values: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over [first, last] (inclusive, per entry) along the last axis, via one cumsum."""
    running = np.concatenate((np.zeros((*values.shape[:-1], 1)), np.cumsum(values, axis=-1)), axis=-1)
    return running[..., last + 1] - running[..., first]


def hudgins_features(signal: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """Hudgins' time-domain features over the ``window`` samples ending at each of ``ends``.

    ``signal`` [..., sample] → [..., frame, 4]: mean absolute value, waveform length, zero crossings and slope
    sign changes (counts without a dead-band threshold: the band-passed signal has no DC offset to guard
    against, and a threshold would need per-subject calibration).
    """
    step = np.diff(signal, axis=-1)  # step[j] = x[j+1] - x[j]
    first = ends - window + 1
    mav = _windowed_sum(np.abs(signal), first, ends) / window
    wl = _windowed_sum(np.abs(step), first, ends - 1)  # the window's window-1 steps
    zc = _windowed_sum((signal[..., :-1] * signal[..., 1:] < 0).astype(np.float64), first, ends - 1)
    ssc = _windowed_sum((step[..., :-1] * step[..., 1:] < 0).astype(np.float64), first, ends - 2)  # interior
    return np.stack((mav, wl, zc, ssc), axis=-1)


def segment_frames(
    emg: np.ndarray,
    first_frame_ends: np.ndarray,
    n_frames: int,
    sampling_rate_hz: float,
    params: PreprocessParams,
    already_rectified: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames [segment, frame, channel] and Hudgins features [segment, frame, channel, 4] for segments whose
    first frame ends at ``first_frame_ends`` (samples); frame ``f`` ends at ``first_frame_end + f * hop``.

    2 kHz signals are band-passed stretch by stretch (with a lead-in, see the module docstring), then give RMS
    frames; rectified 100 Hz signals (DB1) are their own frames. Features come from the same signal: the
    band-passed 2 kHz one, or the 100 Hz one for DB1.
    """
    hop = hop_samples(sampling_rate_hz, params)
    offsets = np.arange(n_frames) * hop
    feature_window = max(round(params.feature_window_ms * sampling_rate_hz / 1000), 2)
    if already_rectified:
        sos, lead_in, window = None, 0, 1
    else:
        sos = bandpass_sos(sampling_rate_hz, params)
        lead_in = max(filter_lead_in(sos, params.lead_in_tolerance), 1)
        window = round(params.rms_window_ms * sampling_rate_hz / 1000)
    history = max(window, feature_window)  # samples a frame looks back over, its own included
    stretch = np.arange(lead_in + history - 1 + offsets[-1] + 1)
    starts = first_frame_ends - (history - 1) - lead_in
    ends = lead_in + history - 1 + offsets  # each frame's last sample, within a stretch
    frames = np.empty((len(starts), n_frames, emg.shape[1]), np.float32)
    features = np.empty((len(starts), n_frames, emg.shape[1], len(HUDGINS_FEATURES)), np.float32)
    # Chunks of segments keep the working arrays small enough for the allocator to reuse: on these machines
    # fresh large arrays cost more in page faults than the filtering itself. Each chunk is one vectorised pass.
    for first in range(0, len(starts), SEGMENTS_PER_CHUNK):
        chunk = slice(first, first + SEGMENTS_PER_CHUNK)
        index = starts[chunk, None] + stretch
        stretches = emg[np.maximum(index, 0)].transpose(0, 2, 1)  # [segment, channel, sample]
        if index[:, 0].min() < 0:  # before the recording the continuous filter saw zeros: reproduce that
            stretches = np.where(index[:, None, :] >= 0, stretches, 0.0)
        if sos is None:
            signal = stretches
            frames[chunk] = signal[..., ends].transpose(0, 2, 1)
        else:
            signal = scipy.signal.sosfilt(sos, stretches, axis=-1)
            frames[chunk] = _rms_from_energy(np.cumsum(signal**2, axis=-1), ends, window).transpose(0, 2, 1)
        features[chunk] = hudgins_features(signal, ends, feature_window).transpose(0, 2, 1, 3)
    return frames, features


def recording_frames(emg: np.ndarray, sampling_rate_hz: float, params: PreprocessParams) -> np.ndarray:
    """Every frame of a whole recording, filtering it continuously: [frame, channel], frame f ends at
    sample ``(f + 1) * hop - 1``. The reference that segment-wise processing must reproduce."""
    hop = hop_samples(sampling_rate_hz, params)
    window = round(params.rms_window_ms * sampling_rate_hz / 1000)
    filtered = scipy.signal.sosfilt(bandpass_sos(sampling_rate_hz, params), emg.T, axis=-1)
    padded = np.concatenate((np.zeros((emg.shape[1], window)), filtered), axis=-1)  # zeros before the start
    energy = np.cumsum(padded**2, axis=-1)
    ends = (np.arange(len(emg) // hop) + 1) * hop - 1 + window
    return _rms_from_energy(energy, ends, window).T.astype(np.float32)
