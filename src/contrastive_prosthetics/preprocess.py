"""Signal processing: a recording's continuous stream of 100 Hz frames, and the classical features at every frame.

For 2 kHz databases (DB2, DB3) the whole recording is band-passed (causal Butterworth, second-order sections, from
rest state: zeros before the first sample), then every frame is the RMS of the ``rms_window_ms`` of filtered signal
that ends at the frame's last sample: causal, as a prosthesis controller sees it (``rms_alignment: centred``
centres the window on that sample instead, as the reference's code did: it then reads samples a controller does
not have yet, so it is not causal). Frame ``f`` ends at sample
``(f + 1) * hop - 1``; frames are ``1000 / frame_rate_hz`` ms apart. DB1 arrives rectified and RMS-smoothed at
100 Hz: its frames are its samples (every ``hop``-th one at a lower frame rate).

Hudgins' time-domain features (MAV, WL, ZC, SSC) describe the ``feature_window_ms`` ending at each frame, from the
band-passed 2 kHz signal, or from the 100 Hz signal for DB1. Zero crossings and slope-sign changes count only steps
larger than a dead-band, as Hudgins and NinaPro's benchmarks do, so that noise does not inflate them. The dead-band
is ``feature_deadband`` times the channel's RMS over the stretch before the recording's first cue (the user at rest
when the recording starts, as a controller would calibrate at switch-on): no label or later sample sets it. A
rectified envelope never crosses zero, so for DB1 crossings and slope changes are counted on the envelope minus its
own moving mean over the feature window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.signal

from .errors import InputError

HUDGINS_FEATURES = ("mav", "wl", "zc", "ssc")


@dataclass(frozen=True)
class Window:
    """A segment's place in its run, in frames: ``offset`` after the relabelled onset, ``length`` long."""

    offset: int
    length: int

    @property
    def reach(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class PreprocessParams:
    """The ``preprocess`` section of the configuration (config.yaml documents and sets every value)."""

    bandpass_low_hz: float
    bandpass_high_hz: float
    filter_order: int
    rms_window_ms: float
    rms_alignment: str  # "causal": the window ends at the frame; "centred" (not causal): the frame is its centre
    frame_rate_hz: float
    windows: dict  # name → {offset_ms, length_ms}: where each movement segment starts after the onset, how long
    feature_window_ms: float  # Hudgins features for the LDA baseline
    feature_deadband: float  # ZC and SSC dead-band, in units of the channel's RMS before the first cue
    max_length_mismatch: int  # samples by which a file's fields may differ before it is rejected

    def frames(self, ms: float) -> int:
        return round(ms * self.frame_rate_hz / 1000)

    def frame_windows(self) -> dict[str, Window]:
        """Each segment window in frames."""
        return {
            name: Window(self.frames(window["offset_ms"]), self.frames(window["length_ms"]))
            for name, window in self.windows.items()
        }

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


def frame_ends(n_samples: int, hop: int) -> np.ndarray:
    """The last sample of every whole frame of a recording of ``n_samples``."""
    return (np.arange(n_samples // hop) + 1) * hop - 1


def bandpass_sos(sampling_rate_hz: float, params: PreprocessParams) -> np.ndarray:
    """Causal Butterworth band-pass as second-order sections (numerically safe at order 4 and above)."""
    return scipy.signal.butter(
        params.filter_order,
        [params.bandpass_low_hz, params.bandpass_high_hz],
        btype="bandpass",
        fs=sampling_rate_hz,
        output="sos",
    )


def find_runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of equal labels: (starts, stops, values), stops exclusive."""
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate(([0], change))
    stops = np.concatenate((change, [len(labels)]))
    return starts, stops, labels[starts]


def _window_sums(values: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """Sum of ``values`` (1-D) over the ``window`` entries ending at each of ``ends`` (inclusive); entries before
    the start count as zeros."""
    running = np.concatenate(([0.0], np.cumsum(values, dtype=np.float64)))
    upper = np.clip(ends + 1, 0, len(values))  # entries past the end count as zeros too
    return running[upper] - running[np.clip(ends + 1 - window, 0, upper)]


def _moving_mean(signal: np.ndarray, window: int) -> np.ndarray:
    """Mean of the ``window`` samples ending at each sample (fewer at the start)."""
    running = np.cumsum(signal, dtype=np.float64)
    shifted = np.concatenate((np.zeros(window), running[:-window])) if window < len(signal) else np.zeros_like(running)
    return (running - shifted) / np.minimum(np.arange(1, len(signal) + 1), window)


def hudgins_features(signal: np.ndarray, ends: np.ndarray, window: int, deadband: np.ndarray | float = 0.0):
    """Hudgins' features over the ``window`` samples ending at each of ``ends``: ``signal`` [channel, sample] →
    [channel, frame, 4] (MAV, WL, ZC, SSC).

    ZC counts neighbours of opposite sign that differ by at least ``deadband`` (per channel); SSC counts interior
    samples where the slope changes sign with at least one of the two steps at least ``deadband``. A step or pair
    belongs to a window when both of its samples do.
    """
    deadband = np.broadcast_to(np.asarray(deadband, dtype=np.float64), (signal.shape[0],))
    out = np.empty((signal.shape[0], len(ends), len(HUDGINS_FEATURES)))
    for channel, x in enumerate(signal):
        step = np.diff(x)  # step[j] = x[j+1] - x[j]
        big = np.abs(step) >= deadband[channel]
        crossing = (x[:-1] * x[1:] < 0) & big
        turning = (step[:-1] * step[1:] < 0) & (big[:-1] | big[1:])  # at interior sample j + 1
        out[channel, :, 0] = _window_sums(np.abs(x), ends, window) / window
        out[channel, :, 1] = _window_sums(np.abs(step), ends - 1, window - 1)
        out[channel, :, 2] = _window_sums(crossing, ends - 1, window - 1)
        out[channel, :, 3] = _window_sums(turning, ends - 2, window - 2)
    return out


def _rms_frames(filtered: np.ndarray, ends: np.ndarray, window: int, alignment: str = "causal") -> np.ndarray:
    """RMS over the ``window`` samples ending at each of ``ends`` (causal), or centred on them (``"centred"``:
    it reads window // 2 samples after the frame, which no controller has yet); zeros outside the recording."""
    if alignment not in ("causal", "centred"):
        raise InputError(f"preprocess.rms_alignment must be causal or centred, not {alignment!r}")
    last = ends + window // 2 if alignment == "centred" else ends
    return np.sqrt(np.maximum(_window_sums(filtered * filtered, last, window), 0.0) / window)


def stream_frames(
    emg: np.ndarray,
    sampling_rate_hz: float,
    params: PreprocessParams,
    already_rectified: bool,
    calibration_samples: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of a recording ``emg`` [sample, channel] and its Hudgins features: ([frame, channel],
    [frame, channel, 4]), float32. ``calibration_samples``: the stretch before the first cue, whose RMS sets the
    dead-band (the whole recording when it is empty).

    Channels are processed one at a time, so the working memory is a few copies of one channel, not of the file.
    """
    hop = hop_samples(sampling_rate_hz, params)
    ends = frame_ends(len(emg), hop)
    feature_window = max(round(params.feature_window_ms * sampling_rate_hz / 1000), 3)
    frames = np.empty((len(ends), emg.shape[1]), np.float32)
    features = np.empty((len(ends), emg.shape[1], len(HUDGINS_FEATURES)), np.float32)
    sos = None if already_rectified else bandpass_sos(sampling_rate_hz, params)
    rms_window = round(params.rms_window_ms * sampling_rate_hz / 1000)
    calibration = slice(0, calibration_samples if calibration_samples > 1 else len(emg))
    for channel in range(emg.shape[1]):
        raw = np.asarray(emg[:, channel], dtype=np.float64)
        if already_rectified:
            frames[:, channel] = raw[ends]
            # An envelope never crosses zero: count crossings of its own moving mean instead.
            signal = raw - _moving_mean(raw, feature_window)
        else:
            signal = scipy.signal.sosfilt(sos, raw)
            frames[:, channel] = _rms_frames(signal, ends, rms_window, params.rms_alignment)
        deadband = params.feature_deadband * np.sqrt(np.mean(signal[calibration] ** 2))
        channel_features = hudgins_features(signal[None], ends, feature_window, deadband)[0]
        if already_rectified:  # amplitude features describe the envelope itself
            channel_features[:, :2] = hudgins_features(raw[None], ends, feature_window)[0, :, :2]
        features[:, channel] = channel_features
    return frames, features


def recording_frames(emg: np.ndarray, sampling_rate_hz: float, params: PreprocessParams) -> np.ndarray:
    """Every RMS frame of a 2 kHz recording, the straightforward way (the whole array filtered at once, RMS by a
    convolution): the reference that :func:`stream_frames` must reproduce."""
    hop = hop_samples(sampling_rate_hz, params)
    window = round(params.rms_window_ms * sampling_rate_hz / 1000)
    filtered = scipy.signal.sosfilt(bandpass_sos(sampling_rate_hz, params), emg.T, axis=-1)
    padded = np.concatenate((np.zeros((emg.shape[1], window - 1)), filtered), axis=-1)  # zeros before the start
    energy = np.stack([np.convolve(row**2, np.ones(window), mode="valid") for row in padded])
    return np.sqrt(energy[:, frame_ends(len(emg), hop)] / window).T.astype(np.float32)
