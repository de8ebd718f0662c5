"""Filter, moving RMS and decimation against straightforward references."""

import numpy as np
import scipy.signal

from contrastive_prosthetics.preprocess import (
    PreprocessParams,
    bandpass_sos,
    filter_lead_in,
    find_runs,
    recording_frames,
    segment_frames,
)

FS = 2000.0


def test_bandpass_is_scipys_order_4_butterworth_20_450():
    sos = bandpass_sos(FS, PreprocessParams())
    b, a = scipy.signal.butter(4, [20, 450], btype="bandpass", fs=FS)
    frequencies = np.array([5.0, 20.0, 100.0, 450.0, 800.0])
    _, response = scipy.signal.sosfreqz(sos, worN=frequencies, fs=FS)
    _, reference = scipy.signal.freqz(b, a, worN=frequencies, fs=FS)
    np.testing.assert_allclose(np.abs(response), np.abs(reference), rtol=1e-6)
    assert abs(np.abs(response[2]) - 1) < 1e-3 and np.abs(response[0]) < 0.01 and np.abs(response[4]) < 0.01


def test_recording_frames_equal_a_loop_over_frames():
    rng = np.random.default_rng(0)
    emg = rng.standard_normal((4000, 3))
    params = PreprocessParams(rms_window_ms=50)
    frames = recording_frames(emg, FS, params)
    filtered = scipy.signal.sosfilt(bandpass_sos(FS, params), emg, axis=0)
    padded = np.concatenate((np.zeros((100, 3)), filtered))
    expected = [np.sqrt(np.mean(padded[end + 1 : end + 101] ** 2, axis=0)) for end in range(19, 4000, 20)]
    assert frames.shape == (200, 3)
    np.testing.assert_allclose(frames, np.array(expected), rtol=1e-5)


def test_rms_of_a_sine_is_amplitude_over_root_two_at_100_hz():
    t = np.arange(int(3 * FS)) / FS
    emg = (2.0 * np.sin(2 * np.pi * 150 * t))[:, None]
    frames = recording_frames(emg, FS, PreprocessParams(rms_window_ms=200))
    assert frames.shape == (300, 1)  # 3 s at 100 frames per second
    np.testing.assert_allclose(frames[100:, 0], 2.0 / np.sqrt(2), rtol=0.01)  # after the filter settles


def test_rectified_database_frames_are_its_samples():
    emg = np.arange(50.0).reshape(25, 2)
    frames = segment_frames(emg, np.array([3, 10]), 4, 100.0, PreprocessParams(), already_rectified=True)
    np.testing.assert_array_equal(frames[1], emg[10:14])


def test_lead_in_grows_with_stricter_tolerance():
    sos = bandpass_sos(FS, PreprocessParams())
    assert 0 < filter_lead_in(sos, 1e-3) < filter_lead_in(sos, 1e-9) < 4000


def test_find_runs():
    starts, stops, values = find_runs(np.array([0, 0, 3, 3, 3, 0, 5]))
    assert starts.tolist() == [0, 2, 5, 6] and stops.tolist() == [2, 5, 6, 7] and values.tolist() == [0, 3, 0, 5]
