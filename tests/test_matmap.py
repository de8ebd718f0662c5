"""Uncompressed files' EMG and glove as memory maps: loadmat's values bit for bit, or nothing (loadmat's job)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from conftest import emg_for, make_protocol

from contrastive_prosthetics.data.matfile import MatFileError, glove_rows, load_glove, load_recording
from contrastive_prosthetics.data.matmap import compressed_rows, mapped_variables
from contrastive_prosthetics.data.ninapro import DB2


def ninapro_fields(seed: int = 0) -> dict[str, np.ndarray]:
    protocol = make_protocol([1, 2, 3], DB2.repetitions, movement_samples=300, rest_samples=200)
    emg = emg_for(protocol, DB2.n_channels, seed=seed)
    glove = np.random.default_rng(seed).standard_normal((len(emg), 22))
    return {
        "emg": emg,
        "glove": glove,
        "stimulus": protocol.stimulus,
        "restimulus": protocol.restimulus,
        "repetition": protocol.repetition,
        "rerepetition": protocol.rerepetition,
    }


def save(path, fields, compress):
    scipy.io.savemat(path, fields, do_compression=compress)
    return str(path)


def test_mapped_variables_are_loadmats_arrays_bit_for_bit(tmp_path):
    path = save(tmp_path / "S1_E1_A1.mat", ninapro_fields(), compress=False)
    mapped = mapped_variables(path, ["emg", "glove", "restimulus"])
    loaded = scipy.io.loadmat(path)
    assert set(mapped) == {"emg", "glove", "restimulus"}
    for name, values in mapped.items():
        assert values.dtype == loaded[name].dtype and values.shape == loaded[name].shape, name
        np.testing.assert_array_equal(values, loaded[name])
        assert not values.flags.writeable  # the raw file can never be changed through it


def test_compressed_complex_logical_and_narrow_variables_are_left_to_loadmat(tmp_path):
    assert mapped_variables(save(tmp_path / "c.mat", ninapro_fields(), compress=True), ["emg", "glove"]) == {}
    odd = {
        "complex": np.ones((50, 3)) + 1j,
        "logical": np.ones((50, 3), bool),
        "tiny": np.array([[1, 2]], np.uint8),  # MATLAB packs it into the tag ("small data element")
        "plain": np.arange(150.0).reshape(50, 3),
    }
    path = save(tmp_path / "odd.mat", odd, compress=False)
    assert set(mapped_variables(path, list(odd))) == {"plain"}


@pytest.mark.parametrize("damage", ["truncated", "not a mat file", "missing"])
def test_a_file_that_cannot_be_mapped_maps_nothing_and_loadmat_reports_it(tmp_path, damage):
    path = save(tmp_path / "S1_E1_A1.mat", ninapro_fields(), compress=False)
    data = open(path, "rb").read()
    if damage == "truncated":  # the EMG block reaches past the end of the file
        open(path, "wb").write(data[: len(data) // 3])
    elif damage == "not a mat file":
        open(path, "wb").write(b"<html>Not found</html>" * 10)
    else:
        path = str(tmp_path / "absent.mat")
    assert mapped_variables(path, ["emg", "glove"]) == {}
    if damage != "missing":
        with pytest.raises(MatFileError, match=r"S1_E1_A1\.mat"):
            load_recording(path, DB2.n_channels, max_length_mismatch=0)


def maps_the_file(array: np.ndarray) -> bool:
    while array is not None and not isinstance(array, np.memmap):
        array = array.base if isinstance(array, np.ndarray) else None
    return array is not None


@pytest.mark.parametrize("defer_glove", [False, True])
def test_an_uncompressed_recording_equals_the_compressed_one(tmp_path, defer_glove):
    fields = ninapro_fields(seed=3)
    plain = save(tmp_path / "plain.mat", fields, compress=False)
    packed = save(tmp_path / "packed.mat", fields, compress=True)
    a = load_recording(plain, DB2.n_channels, max_length_mismatch=0, defer_glove=defer_glove)
    b = load_recording(packed, DB2.n_channels, max_length_mismatch=0, defer_glove=defer_glove)
    assert maps_the_file(a.emg) and not maps_the_file(b.emg)  # the path under test was taken
    for name in ("emg", "stimulus", "restimulus", "rerepetition"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(load_glove(a), load_glove(b))


def test_nan_in_a_mapped_emg_is_still_rejected(tmp_path):
    fields = ninapro_fields()
    fields["emg"][123, 4] = np.nan
    path = save(tmp_path / "S1_E1_A1.mat", fields, compress=False)
    with pytest.raises(MatFileError, match="NaN"):
        load_recording(path, DB2.n_channels, max_length_mismatch=0)


def test_compressed_rows_are_loadmats_rows_without_the_whole_array(tmp_path):
    fields = ninapro_fields(seed=5)
    path = save(tmp_path / "S1_E1_A1.mat", fields, compress=True)
    rows = np.arange(19, len(fields["glove"]), 20)
    values, shape = compressed_rows(path, "glove", rows)
    assert shape == fields["glove"].shape
    np.testing.assert_array_equal(values, scipy.io.loadmat(path)["glove"][rows])


def test_compressed_rows_leave_complex_uncompressed_and_absent_variables_to_loadmat(tmp_path):
    fields = ninapro_fields()
    rows = np.arange(0, len(fields["glove"]), 20)
    complex_glove = save(tmp_path / "complex.mat", {**fields, "glove": fields["glove"] + 1j}, compress=True)
    plain = save(tmp_path / "plain.mat", fields, compress=False)
    assert compressed_rows(complex_glove, "glove", rows) is None
    assert compressed_rows(plain, "glove", rows) is None  # mapped instead (see above)
    assert compressed_rows(save(tmp_path / "no_glove.mat", {"emg": fields["emg"]}, True), "glove", rows) is None


@pytest.mark.parametrize("compress", [True, False])
def test_glove_rows_of_a_deferred_recording_equal_the_glove_read_whole(tmp_path, compress):
    fields = ninapro_fields(seed=2)
    path = save(tmp_path / "S1_E1_A1.mat", fields, compress=compress)
    rows = np.arange(19, len(fields["glove"]), 20)
    deferred = load_recording(path, DB2.n_channels, max_length_mismatch=0, defer_glove=True)
    np.testing.assert_array_equal(glove_rows(deferred, rows), fields["glove"][rows])
