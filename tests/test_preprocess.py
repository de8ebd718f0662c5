"""Filter, moving RMS and decimation against straightforward references."""

from dataclasses import replace

import numpy as np
import pytest
import scipy.signal
from conftest import PREPROCESS

from contrastive_prosthetics.data import channel_frames
from contrastive_prosthetics.data.preprocess import (
    WindowSums,
    bandpass_sos,
    find_runs,
    frame_ends,
    hop_samples,
    hudgins_features,
    prefix_sums,
    recording_frames,
    stream_frames,
)

FS = 2000.0


def test_bandpass_is_scipys_order_4_butterworth_20_450():
    sos = bandpass_sos(FS, PREPROCESS)
    b, a = scipy.signal.butter(4, [20, 450], btype="bandpass", fs=FS)
    frequencies = np.array([5.0, 20.0, 100.0, 450.0, 800.0])
    _, response = scipy.signal.sosfreqz(sos, worN=frequencies, fs=FS)
    _, reference = scipy.signal.freqz(b, a, worN=frequencies, fs=FS)
    np.testing.assert_allclose(np.abs(response), np.abs(reference), rtol=1e-6)
    assert abs(np.abs(response[2]) - 1) < 1e-3 and np.abs(response[0]) < 0.01 and np.abs(response[4]) < 0.01


def test_recording_frames_equal_a_loop_over_frames():
    rng = np.random.default_rng(0)
    emg = rng.standard_normal((4000, 3))
    params = replace(PREPROCESS, rms_window_ms=50)
    frames = recording_frames(emg, FS, params)
    filtered = scipy.signal.sosfilt(bandpass_sos(FS, params), emg, axis=0)
    padded = np.concatenate((np.zeros((100, 3)), filtered))
    expected = [np.sqrt(np.mean(padded[end + 1 : end + 101] ** 2, axis=0)) for end in range(19, 4000, 20)]
    assert frames.shape == (200, 3)
    np.testing.assert_allclose(frames, np.array(expected), rtol=1e-5)


def test_rms_of_a_sine_is_amplitude_over_root_two_at_100_hz():
    t = np.arange(int(3 * FS)) / FS
    emg = (2.0 * np.sin(2 * np.pi * 150 * t))[:, None]
    frames = recording_frames(emg, FS, replace(PREPROCESS, rms_window_ms=200))
    assert frames.shape == (300, 1)  # 3 s at 100 frames per second
    np.testing.assert_allclose(frames[100:, 0], 2.0 / np.sqrt(2), rtol=0.01)  # after the filter settles


def test_rectified_database_frames_are_its_samples():
    emg = np.arange(50.0).reshape(25, 2)
    frames, features = stream_frames(emg, 100.0, PREPROCESS, already_rectified=True, calibration_samples=5)
    np.testing.assert_array_equal(frames, emg)
    assert features.shape == (25, 2, 4)


def test_stream_frames_equal_the_straightforward_whole_recording_computation():
    emg = np.random.default_rng(2).standard_normal((6000, 3)) + 0.3  # an offset the band-pass removes
    frames, _ = stream_frames(emg, FS, PREPROCESS, already_rectified=False, calibration_samples=1000)
    np.testing.assert_allclose(frames, recording_frames(emg, FS, PREPROCESS), rtol=1e-5, atol=1e-7)


def whole_array_frames(emg, params, calibration_samples):
    """The definitions, one whole recording-long array per step: band-pass everything, then windowed sums."""
    ends = frame_ends(len(emg), hop_samples(FS, params))
    rms_window = round(params.rms_window_ms * FS / 1000)
    feature_window = round(params.feature_window_ms * FS / 1000)
    filtered = scipy.signal.sosfilt(bandpass_sos(FS, params), emg.T, axis=-1)
    shift = rms_window // 2 if params.rms_alignment == "centred" else 0
    sums = WindowSums(ends)
    frames = np.stack([np.sqrt(np.maximum(sums(x * x, rms_window, shift), 0.0) / rms_window) for x in filtered], 1)
    deadband = params.feature_deadband * np.sqrt(np.mean(filtered[:, :calibration_samples] ** 2, axis=1))
    features = hudgins_features(filtered, ends, feature_window, deadband).transpose(1, 0, 2)
    return frames.astype(np.float32), features.astype(np.float32)


@pytest.mark.parametrize("chunk", [1, 2, 7, 1000, channel_frames.CHUNK_SAMPLES])
@pytest.mark.parametrize("alignment", ["causal", "centred"])
def test_chunked_stream_frames_equal_the_whole_array_definitions_bit_for_bit(monkeypatch, chunk, alignment):
    """Chunks of any size (down to one sample: filter state, running sums and the two carried samples all cross a
    boundary) and any number of worker threads give exactly the bits of the whole-array computation."""
    monkeypatch.setattr(channel_frames, "CHUNK_SAMPLES", chunk)
    rng = np.random.default_rng(7)
    emg = rng.standard_normal((4321, 3)) * np.array([1.0, 0.01, 30.0]) + 0.5  # an offset the band-pass removes
    params = replace(PREPROCESS, rms_alignment=alignment, feature_deadband=0.5)
    expected_frames, expected_features = whole_array_frames(emg, params, calibration_samples=900)
    for workers in (1, 2):
        frames, features = stream_frames(emg, FS, params, False, calibration_samples=900, workers=workers)
        np.testing.assert_array_equal(frames, expected_frames)
        np.testing.assert_array_equal(features, expected_features)


def test_find_runs():
    starts, stops, values = find_runs(np.array([0, 0, 3, 3, 3, 0, 5]))
    assert starts.tolist() == [0, 2, 5, 6] and stops.tolist() == [2, 5, 6, 7] and values.tolist() == [0, 3, 0, 5]


def test_hudgins_features_equal_a_loop_over_windows():
    rng = np.random.default_rng(1)
    signal = rng.standard_normal((2, 300))
    ends = np.array([49, 120, 299])
    features = hudgins_features(signal, ends, window=40)
    for channel in range(2):
        for f, end in enumerate(ends):
            x = signal[channel, end - 39 : end + 1]
            d = np.diff(x)
            expected = [np.mean(np.abs(x)), np.sum(np.abs(d)), np.sum(x[:-1] * x[1:] < 0), np.sum(d[:-1] * d[1:] < 0)]
            np.testing.assert_allclose(features[channel, f], expected, rtol=1e-9, atol=1e-9)


def test_segment_features_come_from_the_band_passed_signal():
    t = np.arange(8000) / FS
    emg = np.stack((np.sin(2 * np.pi * 100 * t), 3 * np.sin(2 * np.pi * 100 * t)), axis=1) + 5.0  # DC is removed
    no_deadband = replace(PREPROCESS, feature_deadband=0.0)
    frames, features = stream_frames(emg, FS, no_deadband, already_rectified=False, calibration_samples=0)
    late = slice(200, 203)  # frames ending at samples 4019, 4039, 4059: the filter has settled
    np.testing.assert_allclose(features[late, 1, 0] / features[late, 0, 0], 3.0, rtol=1e-3)  # MAV scales
    np.testing.assert_allclose(features[late, 0, 2], 40, atol=1)  # 100 Hz: 2 zero crossings per period, 200 ms
    np.testing.assert_allclose(features[late, 0, 0], 2 / np.pi, rtol=0.02)  # MAV of a unit sine
    np.testing.assert_allclose(frames[late, 0], 1 / np.sqrt(2), rtol=0.02)


def test_crossings_and_slope_changes_below_the_dead_band_are_not_counted():
    rng = np.random.default_rng(3)
    signal = rng.standard_normal((2, 300))
    ends, deadband = np.array([49, 120, 299]), np.array([0.5, 1.5])
    features = hudgins_features(signal, ends, window=40, deadband=deadband)
    for channel in range(2):
        for f, end in enumerate(ends):
            x = signal[channel, end - 39 : end + 1]
            d = np.diff(x)
            big = np.abs(d) >= deadband[channel]
            zc = np.sum((x[:-1] * x[1:] < 0) & big)
            ssc = np.sum((d[:-1] * d[1:] < 0) & (big[:-1] | big[1:]))
            assert features[channel, f, 2] == zc and features[channel, f, 3] == ssc
    assert (features[1, :, 2] < hudgins_features(signal, ends, window=40)[1, :, 2]).all()


def test_dead_band_comes_from_the_stretch_before_the_first_cue():
    """Rest noise before the first cue sets the dead-band: the same noise later is not counted, a movement is."""
    rng = np.random.default_rng(4)
    emg = 0.01 * rng.standard_normal((8000, 1))
    emg[5000:] += rng.standard_normal((3000, 1))  # a movement
    _, features = stream_frames(emg, FS, replace(PREPROCESS, feature_deadband=3.0), False, calibration_samples=2000)
    _, counted = stream_frames(emg, FS, replace(PREPROCESS, feature_deadband=0.0), False, calibration_samples=2000)
    rest, moving = slice(150, 240), slice(300, 390)
    assert features[rest, 0, 2].mean() < 0.2 * counted[rest, 0, 2].mean()  # rest noise: mostly below the band
    assert features[moving, 0, 2].mean() > 0.8 * counted[moving, 0, 2].mean()  # movement: almost all counted


def test_centred_rms_reads_ahead_and_causal_rms_does_not():
    """The reference's centred RMS sees a burst before it happens; the causal one (a controller's) cannot."""
    emg = np.zeros((4000, 1))
    emg[2010:2030] = 1.0  # a burst starting at sample 2010, inside frame 100's hop (it ends at sample 2019)
    centred = replace(PREPROCESS, rms_window_ms=5.5, rms_alignment="centred", bandpass_low_hz=20)
    causal = replace(centred, rms_alignment="causal")
    ahead, _ = stream_frames(emg, FS, centred, already_rectified=False, calibration_samples=0)
    behind, _ = stream_frames(emg, FS, causal, already_rectified=False, calibration_samples=0)
    # Frame 99 ends at sample 1999: an 11-sample centred window reaches sample 2004, still silent; frame 100 ends
    # at 2019: both see the burst, but the causal window sees only what has happened.
    assert ahead[99, 0] == behind[99, 0] == 0.0
    window = round(5.5 * FS / 1000)
    filtered = scipy.signal.sosfilt(bandpass_sos(FS, centred), emg[:, 0])
    centre = 2019
    expected = np.sqrt(np.mean(filtered[centre - (window - 1) // 2 : centre + window // 2 + 1] ** 2))
    np.testing.assert_allclose(ahead[100, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(
        behind[100, 0], np.sqrt(np.mean(filtered[centre - window + 1 : centre + 1] ** 2)), rtol=1e-5
    )


def test_prefix_sums_are_numpys_cumsum_bit_for_bit():
    """torch's scan replaced numpy's cumsum for speed: the same additions in the same order, the same bits."""
    values = np.random.default_rng(11).standard_normal(200_003) * np.logspace(-8, 8, 200_003)
    running = prefix_sums(values)
    assert running[0] == 0.0
    np.testing.assert_array_equal(running[1:], np.cumsum(values))
