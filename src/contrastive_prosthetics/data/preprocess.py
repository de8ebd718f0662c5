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

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..core.errors import InputError
from ..core.units import ms_to_frames
from .channel_frames import FrameGathers, filtered_channel_frames

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
        return ms_to_frames(ms, self.frame_rate_hz)

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
    import scipy.signal  # here, not at the top: every job reads tensor files through this module, few filter

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


def prefix_sums(values: np.ndarray) -> np.ndarray:
    """[0, v0, v0 + v1, ...] in float64, accumulated strictly in order: the running sums that windowed sums are
    differences of.

    torch's CPU scan keeps the running sum in a register, 2-4x faster than numpy's cumsum, with the same additions
    in the same order, so the same bits (a test compares them).
    """
    running = torch.empty(len(values) + 1, dtype=torch.float64)
    running[0] = 0.0
    torch.cumsum(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)), 0, out=running[1:])
    return running.numpy()


def prefix_counts(flags: np.ndarray) -> np.ndarray:
    """[0, f0, f0 + f1, ...] of a boolean array, as integers: exact, so windowed counts are exact too."""
    running = np.empty(len(flags) + 1, np.int32 if len(flags) < 2**31 else np.int64)
    running[0] = 0
    np.cumsum(flags, out=running[1:])
    return running


class WindowSums:
    """Sums over the windows that end at fixed sample positions ``ends`` (a window ending before or reaching past
    the recording counts the missing entries as zeros), as differences of prefix sums.

    The index pairs depend only on the length, the shift and the window, so one instance computes them once and
    every channel of a recording reuses them (a dict insert is atomic, so worker threads can share it).
    """

    def __init__(self, ends: np.ndarray):
        self.ends = ends
        self._bounds: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    def bounds(self, n: int, shift: int, window: int) -> tuple[np.ndarray, np.ndarray]:
        """(upper, lower): the prefix-sum indices of the windows ending ``shift`` entries after each end."""
        key = (n, shift, window)
        if key not in self._bounds:
            upper = np.clip(self.ends + 1 + shift, 0, n)
            self._bounds[key] = upper, np.clip(self.ends + 1 + shift - window, 0, upper)
        return self._bounds[key]

    def __call__(self, values: np.ndarray, window: int, shift: int = 0) -> np.ndarray:
        """float64 sums of ``values`` (1-D) over ``window`` entries ending ``shift`` after each end; booleans are
        counted exactly."""
        running = prefix_counts(values) if values.dtype == bool else prefix_sums(values)
        upper, lower = self.bounds(len(values), shift, window)
        return (running[upper] - running[lower]).astype(np.float64, copy=False)


def _moving_mean(signal: np.ndarray, window: int) -> np.ndarray:
    """Mean of the ``window`` samples ending at each sample (fewer at the start)."""
    running = prefix_sums(signal)[1:]
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
    sums = WindowSums(ends)
    for channel, x in enumerate(signal):
        out[channel] = _channel_hudgins(x, sums, window, deadband[channel])
    return out


def _channel_hudgins(x: np.ndarray, sums: WindowSums, window: int, deadband: float) -> np.ndarray:
    """[frame, 4] Hudgins features of one channel ``x`` (see :func:`hudgins_features`)."""
    out = np.empty((len(sums.ends), len(HUDGINS_FEATURES)))
    step = np.diff(x)  # step[j] = x[j+1] - x[j]: its window ends one entry earlier
    size = np.abs(step)
    big = size >= deadband
    out[:, 0] = sums(np.abs(x), window) / window
    out[:, 1] = sums(size, window - 1, shift=-1)
    del size
    crossing = np.less(x[:-1] * x[1:], 0, out=np.empty(len(step), bool))
    crossing &= big
    out[:, 2] = sums(crossing, window - 1, shift=-1)
    del crossing
    turning = step[:-1] * step[1:] < 0  # at interior sample j + 1
    turning &= big[:-1] | big[1:]
    out[:, 3] = sums(turning, window - 2, shift=-2)
    return out


def stream_frames(
    emg: np.ndarray,
    sampling_rate_hz: float,
    params: PreprocessParams,
    already_rectified: bool,
    calibration_samples: int,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of a recording ``emg`` [sample, channel] and its Hudgins features: ([frame, channel],
    [frame, channel, 4]), float32. ``calibration_samples``: the stretch before the first cue, whose RMS sets the
    dead-band (the whole recording when it is empty).

    Channels are independent and processed ``workers`` at a time (numpy, scipy's filter and torch's scan release
    the GIL), so the working memory is a few copies of ``workers`` channels, not of the file.
    """
    hop = hop_samples(sampling_rate_hz, params)
    ends = frame_ends(len(emg), hop)
    frames = np.empty((len(ends), emg.shape[1]), np.float32)
    features = np.empty((len(ends), emg.shape[1], len(HUDGINS_FEATURES)), np.float32)
    feature_window = max(ms_to_frames(params.feature_window_ms, sampling_rate_hz), 3)
    rms_window = ms_to_frames(params.rms_window_ms, sampling_rate_hz)
    if params.rms_alignment not in ("causal", "centred"):
        raise InputError(f"preprocess.rms_alignment must be causal or centred, not {params.rms_alignment!r}")
    rms_shift = rms_window // 2 if params.rms_alignment == "centred" else 0
    settings = _ChannelSettings(
        sums=WindowSums(ends),
        gathers=None if already_rectified else FrameGathers.of(ends, len(emg), rms_window, rms_shift, feature_window),
        feature_window=feature_window,
        rms_window=rms_window,
        sos=None if already_rectified else bandpass_sos(sampling_rate_hz, params),
        calibration=slice(0, calibration_samples if calibration_samples > 1 else len(emg)),
        deadband=params.feature_deadband,
    )

    def process(channel: int) -> None:
        frames[:, channel], features[:, channel] = _channel_frames(emg[:, channel], settings)

    if workers > 1 and emg.shape[1] > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(process, range(emg.shape[1])))  # list(): re-raises a worker's exception here
    else:
        for channel in range(emg.shape[1]):
            process(channel)
    return frames, features


@dataclass(frozen=True)
class _ChannelSettings:
    sums: WindowSums  # over the windows ending at the last sample of every frame (rectified envelopes)
    gathers: FrameGathers | None  # the same windows, for the chunked band-passed path
    feature_window: int  # samples
    rms_window: int  # samples
    sos: np.ndarray | None  # the band-pass; None for rectified envelopes (DB1)
    calibration: slice  # the samples whose RMS sets the dead-band
    deadband: float  # in units of that RMS


def _channel_frames(column: np.ndarray, settings: _ChannelSettings) -> tuple[np.ndarray, np.ndarray]:
    """One channel's frames [frame] and Hudgins features [frame, 4], as float64 (cast by the caller)."""
    raw = np.asarray(column, dtype=np.float64)
    if settings.sos is not None:
        import scipy.signal

        # Band-passed in chunks, so no whole filtered copy of the recording is ever held. The dead-band comes
        # first: the calibration stretch filtered alone is bit for bit the filtered signal's start.
        calibration = scipy.signal.sosfilt(settings.sos, raw[settings.calibration])
        deadband = settings.deadband * np.sqrt(np.mean(calibration**2))
        return filtered_channel_frames(
            raw, settings.sos, settings.gathers, settings.rms_window, settings.feature_window, deadband
        )
    ends, window = settings.sums.ends, settings.feature_window
    # An envelope never crosses zero: count crossings of its own moving mean instead.
    signal = raw - _moving_mean(raw, window)
    deadband = settings.deadband * np.sqrt(np.mean(signal[settings.calibration] ** 2))
    features = _channel_hudgins(signal, settings.sums, window, deadband)
    # Amplitude features describe the envelope itself.
    features[:, 0] = settings.sums(np.abs(raw), window) / window
    features[:, 1] = settings.sums(np.abs(np.diff(raw)), window - 1, shift=-1)
    return raw[ends], features


def recording_frames(emg: np.ndarray, sampling_rate_hz: float, params: PreprocessParams) -> np.ndarray:
    """Every RMS frame of a 2 kHz recording, the straightforward way (the whole array filtered at once, RMS by a
    convolution): the reference that :func:`stream_frames` must reproduce."""
    hop = hop_samples(sampling_rate_hz, params)
    window = ms_to_frames(params.rms_window_ms, sampling_rate_hz)
    import scipy.signal

    filtered = scipy.signal.sosfilt(bandpass_sos(sampling_rate_hz, params), emg.T, axis=-1)
    padded = np.concatenate((np.zeros((emg.shape[1], window - 1)), filtered), axis=-1)  # zeros before the start
    energy = np.stack([np.convolve(row**2, np.ones(window), mode="valid") for row in padded])
    return np.sqrt(energy[:, frame_ends(len(emg), hop)] / window).T.astype(np.float32)
