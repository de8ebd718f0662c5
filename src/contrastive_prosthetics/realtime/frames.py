"""Raw EMG chunks → the frames conversion stores in the stream, bit for bit, whatever the chunks' lengths: the same
causal band-pass, its state carried across chunks, and the moving RMS from the same running sum of squares (DB1's
envelopes are their own frames). The controller makes its frames with it, and AdaBN its adaptation frames
(:mod:`.adabn`)."""

from __future__ import annotations

import numpy as np
import scipy.signal

from ..core.errors import InputError
from ..core.units import ms_to_frames
from ..data.preprocess import PreprocessParams, bandpass_sos, hop_samples


class FrameMaker:
    """Raw EMG [sample, channel] chunks → completed frames [frame, channel] float32, as conversion makes them."""

    def __init__(self, sampling_rate_hz: float, params: PreprocessParams, already_rectified: bool, n_channels: int):
        if params.rms_alignment != "causal":
            raise InputError("a controller needs preprocess.rms_alignment: causal (a centred RMS reads the future)")
        self.hop = hop_samples(sampling_rate_hz, params)
        self.rectified = already_rectified
        self.n_channels = n_channels
        self.samples = 0
        if not already_rectified:
            self.sos = bandpass_sos(sampling_rate_hz, params)
            self.state = np.zeros((self.sos.shape[0], 2, n_channels))
            self.window = ms_to_frames(params.rms_window_ms, sampling_rate_hz)
            # Running sums of squares R[i] = sum of the first i squared samples, for i from `base` to `samples`.
            self.running = np.zeros((1, n_channels))
            self.base = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float64).reshape(-1, self.n_channels)
        if not len(chunk):  # nothing arrived (a driver's empty read): no frame, and the filter's state is kept
            return np.zeros((0, self.n_channels), dtype=np.float32)
        start = self.samples
        self.samples += len(chunk)
        ends = np.arange(start, self.samples)
        ends = ends[(ends + 1) % self.hop == 0]  # the last sample of each frame the chunk completes
        if self.rectified:
            return chunk[ends - start].astype(np.float32)
        filtered, self.state = scipy.signal.sosfilt(self.sos, chunk, axis=0, zi=self.state)
        # Continue the running sum exactly as conversion's one cumulative sum over the whole recording does.
        new = np.cumsum(np.concatenate((self.running[-1:], filtered * filtered)), axis=0)[1:]
        running = np.concatenate((self.running, new))
        upper = ends + 1 - self.base
        lower = np.maximum(ends + 1 - self.window, 0) - self.base
        total = running[upper] - running[lower]
        keep = max(self.samples - self.window, 0)
        self.running, self.base = running[keep - self.base :], keep
        return np.sqrt(np.maximum(total, 0.0) / self.window).astype(np.float32)
