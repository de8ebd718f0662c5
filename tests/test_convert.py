"""Conversion of one subject's files into tensors: segments, rest, gaps, dead channels and bad input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.io
import torch
from conftest import PREPROCESS, emg_for, first_window, make_protocol, write_mat

from contrastive_prosthetics.data.convert import convert_subject as convert_to_tensors
from contrastive_prosthetics.data.matfile import MatFileError, load_glove, load_recording
from contrastive_prosthetics.data.ninapro import DB1, DB2
from contrastive_prosthetics.data.preprocess import recording_frames
from contrastive_prosthetics.data.segments import run_repetitions
from contrastive_prosthetics.data.tensor_file import KEYS, METADATA_KEYS, SEGMENT_KEYS, read_tensor_file

PARAMS = PREPROCESS


def convert_subject(*args, **kwargs) -> dict:
    """The conversion's output with its first window's segments at the top, as these tests read it."""
    return first_window(convert_to_tensors(*args, **kwargs))


def db1_file(tmp_path, name="S1_A1_E1.mat", labels=(1, 2, 3), **kwargs):
    protocol = make_protocol(list(labels), DB1.repetitions, movement_samples=150, rest_samples=130, **kwargs)
    emg = emg_for(protocol, DB1.n_channels, rectified=True)
    return write_mat(tmp_path / name, protocol, emg), protocol, emg


def convert_db1(path, out=None, exercises=("A",)):
    return convert_subject(DB1, 1, {"A": str(path)}, list(exercises), PARAMS, out)


def test_movement_segment_holds_the_first_second_after_relabelled_onset(tmp_path):
    path, protocol, emg = db1_file(tmp_path, relabel_trim=10)
    tensors = convert_db1(path)
    onsets = np.flatnonzero(np.diff(protocol.restimulus[:, 0].astype(int)) > 0) + 1
    first_onset_of_a2_rep3 = onsets[DB1.repetitions + 2]  # movement 2 (A2, class 2), repetition 3
    expected = emg[first_onset_of_a2_rep3 : first_onset_of_a2_rep3 + 100].astype(np.float32)
    np.testing.assert_array_equal(tensors["emg"][2, 2].numpy(), expected)
    assert tensors["classes"][:4] == ["rest", "A1", "A2", "A3"]


def test_rest_without_repetition_labels_is_split_by_position(tmp_path):
    zero, _, _ = db1_file(tmp_path / "zero", rerepetition_in_rest="zero")
    carried, _, _ = db1_file(tmp_path / "carried", rerepetition_in_rest="repetition")
    a, b = convert_db1(zero), convert_db1(carried)
    assert a["valid"][0].all()  # every repetition has its rest
    for key in ("emg", "valid", "glove"):
        assert torch.equal(a[key], b[key]), key


def test_rest_runs_belong_to_the_repetition_that_follows():
    protocol = make_protocol([1, 2], 3, movement_samples=5, rest_samples=4)
    starts, stops, values, repetition = run_repetitions(
        protocol.restimulus[:, 0].astype(int), protocol.rerepetition[:, 0], 3
    )
    rests = values == 0
    assert repetition[rests].tolist() == [1, 2, 3, 1, 2, 3, 3]  # the trailing rest joins the last repetition
    assert (starts[0], stops[0]) == (0, 4)


def test_missing_movement_is_invalid_not_zeros(tmp_path):
    path, _, _ = db1_file(tmp_path, labels=(1, 3))
    tensors = convert_db1(path)
    assert not tensors["valid"][2].any()  # A2 was never recorded
    assert tensors["valid"][[0, 1, 3]].all()
    assert not tensors["valid"][4:].any()


def test_missing_repetition_is_invalid(tmp_path):
    protocol = make_protocol([1], DB1.repetitions, movement_samples=150, rest_samples=130)
    restimulus = protocol.restimulus.copy()
    rep4 = protocol.rerepetition[:, 0] == 4
    restimulus[rep4 & (restimulus[:, 0] != 0)] = 0
    stimulus = protocol.stimulus.copy()
    stimulus[(protocol.repetition[:, 0] == 4)] = 0
    path = write_mat(tmp_path / "S1_A1_E1.mat", protocol, emg_for(protocol, 10, rectified=True), restimulus=restimulus)
    valid = convert_db1(path)["valid"][1]
    assert valid.tolist() == [r != 4 for r in range(1, 11)]


def test_dead_channel_is_flagged_and_zeroed(tmp_path):
    protocol = make_protocol([1, 2], DB1.repetitions, movement_samples=150, rest_samples=130)
    emg = emg_for(protocol, 10, rectified=True)
    emg[:, 7] = 0.0
    tensors = convert_db1(write_mat(tmp_path / "S1_A1_E1.mat", protocol, emg))
    assert tensors["channel_mask"].tolist() == [c != 7 for c in range(10)]
    assert (tensors["emg"][..., 7] == 0).all()


def test_glove_channel_with_nan_is_masked(tmp_path):
    protocol = make_protocol([1], DB1.repetitions, movement_samples=150, rest_samples=130)
    glove = np.ones((len(protocol.stimulus), 22))
    glove[500, 3] = np.nan
    path = write_mat(tmp_path / "S1_A1_E1.mat", protocol, emg_for(protocol, 10, rectified=True), glove=glove)
    tensors = convert_db1(path)
    assert tensors["glove_mask"].tolist() == [c != 3 for c in range(22)]
    assert torch.isfinite(tensors["glove"]).all()


def test_the_stream_glove_is_the_segments_glove_at_their_frames_with_the_same_channels_masked(tmp_path):
    protocol = make_protocol([1, 2], DB1.repetitions, movement_samples=150, rest_samples=130)
    glove = np.random.default_rng(0).normal(size=(len(protocol.stimulus), 22))
    glove[500, 3] = np.nan
    path = write_mat(tmp_path / "S1_A1_E1.mat", protocol, emg_for(protocol, 10, rectified=True), glove=glove)
    tensors = convert_db1(path)
    stream_glove, start = tensors["stream_glove"], tensors["segment_start"]
    assert stream_glove.dtype == torch.float32 and stream_glove.shape == (len(tensors["stream"]), 22)
    for c, r in zip(*tensors["valid"].nonzero(as_tuple=True), strict=True):
        assert torch.equal(tensors["glove"][c, r], stream_glove[start[c, r] : start[c, r] + 100])
    assert (stream_glove[:, 3] == 0).all() and torch.isfinite(stream_glove).all()
    assert stream_glove[:, 0].std() > 0.5  # the glove itself, not zeros


def test_segments_of_2khz_recording_equal_continuous_filtering(tmp_path):
    protocol = make_protocol([1, 2], DB2.repetitions, movement_samples=2600, rest_samples=2200, relabel_trim=100)
    emg = emg_for(protocol, DB2.n_channels, seed=3) + 0.5  # an offset: the filter's start-up would show it
    path = write_mat(tmp_path / "S1_E1_A1.mat", protocol, emg)
    tensors = convert_subject(DB2, 1, {"B": str(path)}, ["B"], PARAMS)
    continuous = recording_frames(emg, DB2.sampling_rate_hz, PARAMS)  # frame f ends at sample 20 f + 19
    onsets = np.flatnonzero(np.diff(protocol.restimulus[:, 0].astype(int)) > 0) + 1
    scale = float(np.abs(continuous).max())
    for index, onset in enumerate(onsets):
        movement, rep = divmod(index, DB2.repetitions)
        assert onset % 20 == 0  # so the segment's frames line up with the continuous frame grid
        expected = continuous[onset // 20 : onset // 20 + 100]
        got = tensors["emg"][movement + 1, rep].numpy()
        assert np.abs(got - expected).max() <= 1e-6 * scale


def test_label_length_mismatch_within_tolerance_is_truncated_with_warning(tmp_path, caplog):
    path, protocol, emg = db1_file(tmp_path)
    write_mat(path, protocol, emg[:-5])
    tensors = convert_db1(path)
    assert tensors["valid"][:4].all()
    assert "truncating" in caplog.text


def test_raw_files_are_never_modified(tmp_path):
    path, _, _ = db1_file(tmp_path)
    before = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    convert_db1(path, tmp_path / "out.pt")
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S1_A1_E1.mat", "out.pt"]


def test_output_records_sources_and_parameters(tmp_path):
    path, _, _ = db1_file(tmp_path)
    convert_db1(path, tmp_path / "s1.pt")
    saved = read_tensor_file(tmp_path / "s1.pt")
    meta = saved["metadata"]
    assert meta["sources"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["database"] == "db1" and meta["subject"] == 1 and meta["amputee"] is False
    assert meta["preprocess"]["windows"] == {"onset": {"offset_ms": 0, "length_ms": 1000}}
    emg = saved["segments"]["onset"]["emg"]
    assert emg.dtype == torch.float32 and emg.shape == (13, 10, 100, 10)


def test_the_written_file_holds_the_tensor_file_format_and_reads_back_as_returned(tmp_path):
    path, _, _ = db1_file(tmp_path)
    tensors = convert_to_tensors(DB1, 1, {"A": str(path)}, ["A"], PARAMS, tmp_path / "s1.pt")
    saved = read_tensor_file(tmp_path / "s1.pt")
    assert list(saved) == list(tensors) == list(KEYS)
    assert list(saved["segments"]["onset"]) == list(SEGMENT_KEYS) and list(saved["metadata"]) == list(METADATA_KEYS)
    for key in ("stream", "stream_class", "run_first", "valid", "channel_mask", "glove_mask"):
        assert torch.equal(saved[key], tensors[key]), key
    assert torch.equal(saved["segments"]["onset"]["pose"], tensors["segments"]["onset"]["pose"])


# Bad input: a clear error naming file and field, and no output file left behind.


def bad_input_cases(tmp_path):
    path, protocol, emg = db1_file(tmp_path)
    good = path.read_bytes()
    cases = {}
    truncated = tmp_path / "truncated" / path.name
    truncated.parent.mkdir()
    truncated.write_bytes(good[: len(good) // 2])
    cases["truncated"] = (truncated, "truncated or corrupt")
    cases["missing emg"] = (write_mat(tmp_path / "noemg" / path.name, protocol, emg, emg=None), "'emg'")
    nan = emg.copy()
    nan[400, 2] = np.nan
    cases["nan"] = (write_mat(tmp_path / "nan" / path.name, protocol, nan), "NaN")
    cases["mismatch"] = (write_mat(tmp_path / "mismatch" / path.name, protocol, emg[:-500]), "differ in length")
    nothing = np.zeros_like(protocol.restimulus)
    cases["no movement at all"] = (
        write_mat(tmp_path / "nothing" / path.name, protocol, emg, restimulus=nothing),
        "no usable movement",
    )
    cases["wrong channels"] = (write_mat(tmp_path / "channels" / path.name, protocol, emg[:, :8]), "'emg' has shape")
    five_joints = np.zeros((len(emg), 5))
    cases["glove"] = (write_mat(tmp_path / "glove" / path.name, protocol, emg, glove=five_joints), "'glove' has shape")
    return cases


@pytest.mark.parametrize(
    "case", ["truncated", "missing emg", "nan", "mismatch", "no movement at all", "wrong channels", "glove"]
)
def test_bad_input_is_rejected_with_clear_error_and_no_output(tmp_path, case):
    path, expected = bad_input_cases(tmp_path)[case]
    out = tmp_path / "out" / "s1.pt"
    with pytest.raises(MatFileError) as error:
        convert_db1(path, out)
    assert str(path) in str(error.value)
    assert expected in str(error.value)
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


@pytest.mark.parametrize("defer_glove", [False, True])
def test_a_glove_of_the_wrong_shape_is_named_whether_it_is_read_now_or_later(tmp_path, defer_glove):
    path, protocol, emg = db1_file(tmp_path)
    bad = write_mat(tmp_path / "bad" / path.name, protocol, emg, glove=np.zeros((len(emg), 22, 2)))
    with pytest.raises(MatFileError, match=r"'glove' has shape \(\d+, 22, 2\), expected \(samples, 22\)"):
        load_recording(bad, DB1.n_channels, max_length_mismatch=0, defer_glove=defer_glove)


def test_a_deferred_glove_is_the_glove_read_at_once(tmp_path):
    path, protocol, emg = db1_file(tmp_path)
    glove = np.random.default_rng(0).standard_normal((len(emg) + 3, 22))  # 3 samples longer: truncated alike
    path = write_mat(tmp_path / "long" / path.name, protocol, emg, glove=glove)
    at_once = load_recording(path, DB1.n_channels, max_length_mismatch=5)
    deferred = load_recording(path, DB1.n_channels, max_length_mismatch=5, defer_glove=True)
    assert deferred.glove is None and deferred.glove_shape == glove.shape
    np.testing.assert_array_equal(load_glove(deferred), at_once.glove)
    np.testing.assert_array_equal(at_once.glove, glove[: len(emg)])
    assert deferred.sha256 == at_once.sha256  # the whole file is hashed, the glove included


def test_worker_threads_do_not_change_a_single_bit(tmp_path):
    paths = {}
    for exercise, labels in (("A", (1, 2, 3)), ("B", (1, 2))):
        paths[exercise], _, _ = db1_file(tmp_path / exercise, name=f"S1_A1_E{len(paths) + 1}.mat", labels=labels)
    outputs = []
    for threads in (1, 2):
        out = tmp_path / f"threads{threads}.pt"
        convert_to_tensors(DB1, 1, {k: str(v) for k, v in paths.items()}, ["A", "B"], PARAMS, out, threads=threads)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_changed_file_does_not_match_download_digest(tmp_path):
    path, _, _ = db1_file(tmp_path)
    out = tmp_path / "out" / "s1.pt"
    with pytest.raises(MatFileError, match="differs from"):
        convert_subject(DB1, 1, {"A": str(path)}, ["A"], PARAMS, out, expected_sha256={path.name: "0" * 64})
    assert not out.exists()  # the digest runs beside the processing, but is checked before anything is written


@pytest.mark.parametrize("damage", ["truncated", "NaN"])
def test_a_changed_file_that_also_fails_reports_the_digest_first(tmp_path, damage):
    """The digest explains the failure: a file damaged after its download says so, not only that it is broken."""
    path, protocol, emg = db1_file(tmp_path)
    recorded = hashlib.sha256(path.read_bytes()).hexdigest()
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-200])
    else:
        emg = emg.copy()
        emg[50, 1] = np.nan
        write_mat(path, protocol, emg)
    with pytest.raises(MatFileError, match="differs from"):
        convert_subject(DB1, 1, {"A": str(path)}, ["A"], PARAMS, expected_sha256={path.name: recorded})


def test_uint8_labels_do_not_wrap(tmp_path):
    path, _, _ = db1_file(tmp_path)
    assert scipy.io.loadmat(path)["restimulus"].dtype == np.uint8
    assert convert_db1(path)["valid"][:4].all()


def test_matlab_v73_file_is_read_through_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    protocol = make_protocol([1, 2], DB1.repetitions, movement_samples=150, rest_samples=130)
    emg = emg_for(protocol, DB1.n_channels, rectified=True)
    path = tmp_path / "S1_A1_E1.mat"
    with h5py.File(path, "w", userblock_size=512) as handle:
        # MATLAB writes column-major arrays, which HDF5 shows transposed.
        handle["emg"] = emg.T
        for name in ("stimulus", "restimulus", "repetition", "rerepetition"):
            handle[name] = getattr(protocol, name).T
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: test HDF5 schema 1.00 .".ljust(116)
    with open(path, "r+b") as raw:  # the 128-byte MAT header that tells loadmat this is a v7.3 file
        raw.write(header + b"\0" * 8 + b"\x00\x02" + b"IM")
    with pytest.raises(NotImplementedError):
        scipy.io.loadmat(path)
    tensors = convert_db1(path)
    assert tensors["valid"][:3].all() and not tensors["valid"][3:].any()
    np.testing.assert_allclose(tensors["emg"][1, 0, 0].numpy(), emg[130].astype(np.float32))
    assert not tensors["glove_mask"].any()  # the file has no glove: every glove channel is masked


def test_synthetic_files_give_the_same_tensors_whatever_rerepetition_holds_in_rest(tmp_path):
    from contrastive_prosthetics.data.synthetic import SyntheticParams, write_subject

    tensors = []
    for convention in ("zero", "repetition"):
        params = SyntheticParams(movement_s=1.6, rest_s=1.2, rerepetition_in_rest=convention)
        (path,) = write_subject(DB1, 2, ["A"], tmp_path / convention, params, seed=5)
        raw = scipy.io.loadmat(path)
        rest = raw["restimulus"][:, 0] == 0
        assert (raw["rerepetition"][rest, 0] > 0).any() == (convention == "repetition")
        tensors.append(convert_subject(DB1, 2, {"A": str(path)}, ["A"], PARAMS))
    assert tensors[0]["valid"].all()
    for key in ("emg", "valid", "glove"):
        assert torch.equal(tensors[0][key], tensors[1][key]), key


def test_a_movement_cued_but_never_performed_is_invalid_with_a_warning(tmp_path, caplog):
    path, protocol, emg = db1_file(tmp_path)
    never = protocol.restimulus.copy()
    never[never == 2] = 0  # A2 was cued, but the subject never made it
    failed = write_mat(tmp_path / "failed" / path.name, protocol, emg, restimulus=never)
    tensors = convert_db1(failed)
    assert not tensors["valid"][2].any() and tensors["valid"][[0, 1, 3]].all()
    assert "['A2']" in caplog.text and str(failed) in caplog.text and "never performed" in caplog.text


def test_segments_are_exact_slices_of_the_continuous_stream(tmp_path):
    path, protocol, emg = db1_file(tmp_path, relabel_trim=10)
    tensors = convert_db1(path)
    stream, start, valid = tensors["stream"], tensors["segment_start"], tensors["valid"]
    assert len(stream) == len(emg)  # DB1: one frame per sample, every one of them
    for c, r in zip(*valid.nonzero(as_tuple=True), strict=True):
        assert torch.equal(tensors["emg"][c, r], stream[start[c, r] : start[c, r] + 100])
        assert (tensors["stream_class"][start[c, r] : start[c, r] + 100] == c).all()
        assert (tensors["stream_repetition"][start[c, r] : start[c, r] + 100] == r + 1).all()
    assert (start[~valid] == -1).all()
    labels = protocol.restimulus[:, 0].astype(int)
    assert tensors["stream_class"].tolist() == labels.tolist()  # A1..A3 are classes 1..3


def test_stream_of_a_2khz_recording_equals_continuous_filtering(tmp_path):
    protocol = make_protocol([1, 2], DB2.repetitions, movement_samples=2600, rest_samples=2200, relabel_trim=100)
    emg = emg_for(protocol, DB2.n_channels, seed=3) + 0.5
    path = write_mat(tmp_path / "S1_E1_A1.mat", protocol, emg)
    tensors = convert_subject(DB2, 1, {"B": str(path)}, ["B"], PARAMS)
    continuous = recording_frames(emg, DB2.sampling_rate_hz, PARAMS)
    assert tensors["stream"].shape == continuous.shape
    np.testing.assert_allclose(tensors["stream"].numpy(), continuous, rtol=1e-5, atol=1e-6 * continuous.max())


def test_each_repetitions_rest_is_drawn_from_rest_spread_over_the_recording(tmp_path):
    path, _, _ = db1_file(tmp_path, labels=(1, 2, 3, 4, 5, 6))
    one = convert_subject(DB1, 1, {"A": str(path)}, ["A"], PARAMS, seed=0)
    again = convert_subject(DB1, 1, {"A": str(path)}, ["A"], PARAMS, seed=0)
    other = convert_subject(DB1, 1, {"A": str(path)}, ["A"], PARAMS, seed=1)
    assert torch.equal(one["segment_start"], again["segment_start"])  # one seed, one draw
    rest = one["segment_start"][0]
    # Not always the rest before the first movement: the rest runs drawn lie before different movements.
    movement_after = [int(one["stream_class"][s + 100 :].ne(0).long().argmax()) for s in rest.tolist()]
    classes_after = {int(one["stream_class"][s + 100 + k]) for s, k in zip(rest.tolist(), movement_after, strict=True)}
    assert len(classes_after) > 1
    assert not torch.equal(rest, other["segment_start"][0])
    for r, start in enumerate(rest.tolist(), start=1):  # each lies in a rest run of its own repetition
        assert (one["stream_class"][start : start + 100] == 0).all()
        assert (one["stream_repetition"][start : start + 100] == r).all()


def test_a_near_constant_electrode_is_masked_and_a_disagreement_with_the_spec_is_named(tmp_path, caplog):
    protocol = make_protocol([1, 2], DB2.repetitions, movement_samples=2600, rest_samples=2200)
    emg = emg_for(protocol, DB2.n_channels, seed=1)
    emg[:, 4] = 1e-9 * np.random.default_rng(0).standard_normal(len(emg))  # not flat, but nothing there
    path = write_mat(tmp_path / "S6_E1_A1.mat", protocol, emg)
    from contrastive_prosthetics.data.ninapro import DB3

    tensors = convert_subject(DB3, 6, {"B": str(path)}, ["B"], PARAMS)
    # Electrode 4 from the data; 10 and 11 from the DB3 spec for subject 6, although they look live here.
    assert np.flatnonzero(~tensors["channel_mask"].numpy()).tolist() == [4, 10, 11]
    assert "db3 s6: electrode 4 (0-based) looks dead" in caplog.text
    assert "lists electrode 10 (0-based) as not fitted, but its signal looks live" in caplog.text


def test_a_window_longer_than_every_repetition_is_a_clear_error(tmp_path):
    path, _, _ = db1_file(tmp_path)
    from dataclasses import replace

    from contrastive_prosthetics.core.errors import InputError

    with pytest.raises(
        InputError, match=r"rest \(longest 1300 ms\), A1 \(longest 1500 ms\).*preprocess.windows \(onset: 0 \+ 9000"
    ):
        convert_subject(
            DB1, 1, {"A": str(path)}, ["A"], replace(PARAMS, windows={"onset": {"offset_ms": 0, "length_ms": 9000}})
        )


def test_db1_exercises_b_and_c_restart_their_labels_at_one(tmp_path):
    """DB1 numbers each file's movements from 1 (E2 holds exercise B: 1-17, E3 exercise C: 1-23); they land on
    the catalogue's B1..B17 and C1..C23."""
    sources = {}
    for exercise, name, labels in (("B", "S1_A1_E2.mat", (1, 9, 17)), ("C", "S1_A1_E3.mat", (1, 12, 23))):
        protocol = make_protocol(list(labels), DB1.repetitions, movement_samples=150, rest_samples=130)
        sources[exercise] = str(write_mat(tmp_path / name, protocol, emg_for(protocol, 10, rectified=True)))
    tensors = convert_subject(DB1, 1, sources, ["B", "C"], PARAMS)
    classes = tensors["classes"]
    assert classes[0] == "rest" and classes[1] == "B1" and classes[18] == "C1" and len(classes) == 1 + 17 + 23
    recorded = {classes[c] for c in tensors["valid"].any(1).nonzero().squeeze(1).tolist()}
    assert recorded == {"rest", "B1", "B9", "B17", "C1", "C12", "C23"}
    # Frames of the second file follow the first's in the stream, labelled on the same class axis.
    assert set(tensors["stream_class"].unique().tolist()) == {classes.index(name) for name in recorded}
