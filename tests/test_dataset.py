"""DB23: loading, selection, normalisation from training data only, and the contrastive sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastive_prosthetics.core.atomic import atomic_torch_save
from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.data.ninapro import class_names
from contrastive_prosthetics.data.tensor_file import (
    KEYS,
    SEGMENT_KEYS,
    payload_from_segments,
    read_tensor_file,
    write_tensor_file,
)
from contrastive_prosthetics.learning.dataset import DB23
from contrastive_prosthetics.learning.sampling import ContrastiveSampler

CLASSES = class_names(["A"])  # 13 classes


def fake_subject(path, database, subject, n_reps, n_channels, invalid=()):
    """A converted-subject file whose every frame encodes where it came from: value = s*1e6 + c*1e4 + r*100 + f."""
    n_classes, n_frames = len(CLASSES), 7
    c, r, f = np.meshgrid(np.arange(n_classes), np.arange(n_reps), np.arange(n_frames), indexing="ij")
    code = subject * 1e6 + c * 1e4 + (r + 1) * 100 + f
    emg = np.repeat(code[..., None], n_channels, axis=-1).astype(np.float64)
    valid = np.ones((n_classes, n_reps), bool)
    for class_index, rep in invalid:
        valid[class_index, rep - 1] = False
    amputee = database == "db3"
    payload = payload_from_segments(emg, valid, classes=CLASSES, database=database, subject=subject, amputee=amputee)
    write_tensor_file(payload, path)
    return path


@pytest.fixture
def data(tmp_path):
    paths = [
        fake_subject(tmp_path / "a.pt", "db1", 1, 10, 10),
        fake_subject(tmp_path / "b.pt", "db2", 2, 6, 12, invalid=[(3, 1), (3, 3)]),
        fake_subject(tmp_path / "c.pt", "db3", 3, 6, 12, invalid=[(5, r) for r in range(1, 7)]),
    ]
    return DB23.load(paths, device="cpu")


def decode(x):
    code = x[..., 0].double()
    return (code // 1e6).long(), (code % 1e6 // 1e4).long(), (code % 1e4 // 100).long(), (code % 100).long()


def test_mixed_databases_are_padded_and_masked(data):
    assert data.emg.shape == (3, 13, 10, 7, 12)
    assert data.subject_names == ["db1/s1", "db2/s2", "db3/s3"]
    assert data.channel_mask[0].tolist() == [True] * 10 + [False] * 2
    assert not data.valid[1, :, 6:].any() and data.valid[0].all()
    assert not data.valid[1, 3, 0] and data.valid[1, 3, 1]


def test_every_group_holds_each_selected_class_once(data):
    selection = data.select(classes=["rest", "A1", "A3", "A5"], repetitions=[1, 2, 3, 4])
    batch = ContrastiveSampler(data, selection, groups=512, seed=1).draw()
    assert batch.x.shape == (512, 4, 12)
    _, classes, _, _ = decode(batch.x)
    assert (classes == torch.tensor([0, 1, 3, 5])).all()
    assert batch.classes.tolist() == [0, 1, 3, 5]


def test_held_out_repetitions_and_subjects_are_never_drawn(data):
    selection = data.select(subjects=["db1/s1", "db2/s2"], repetitions=[1, 3, 4, 6])
    for per_subject in (False, True):
        sampler = ContrastiveSampler(data, selection, groups=256, seed=2, per_subject=per_subject)
        for _ in range(20):
            batch = sampler.draw()
            subjects, classes, reps, frames = decode(batch.x)
            assert set(subjects.unique().tolist()) <= {1, 2}
            assert set(reps.unique().tolist()) <= {1, 3, 4, 6}
            # an invalid (class, rep) is never drawn: subject 2 lacks class 3 in repetitions 1 and 3
            assert not ((subjects == 2) & (classes == 3) & ((reps == 1) | (reps == 3))).any()
            assert (frames < 7).all()
    seen = decode(ContrastiveSampler(data, selection, groups=4096, seed=3).draw().x)
    assert set(seen[2].unique().tolist()) == {1, 3, 4, 6}  # every training repetition does occur


def test_per_subject_batches_come_from_one_subject(data):
    sampler = ContrastiveSampler(data, data.select(), groups=64, seed=4, per_subject=True)
    seen = set()
    for _ in range(30):
        batch = sampler.draw()
        subjects = decode(batch.x)[0]
        present_subjects = subjects[batch.present]
        assert present_subjects.unique().numel() == 1
        assert (batch.subjects == batch.subjects[0, 0]).all()
        seen.add(int(present_subjects[0]))
    assert seen == {1, 2, 3}


def test_class_a_subject_never_recorded_is_marked_absent(data):
    sampler = ContrastiveSampler(data, data.select(subjects=["db3/s3"]), groups=8, seed=0, per_subject=True)
    batch = sampler.draw()
    assert batch.present[:, 5].eq(False).all() and batch.present[:, [0, 1, 2, 4]].all()


def test_same_seed_same_batches(data):
    selection = data.select(repetitions=[1, 3])
    a = ContrastiveSampler(data, selection, groups=32, seed=7)
    b = ContrastiveSampler(data, selection, groups=32, seed=7)
    c = ContrastiveSampler(data, selection, groups=32, seed=8)
    first, second, other = a.draw().x, b.draw().x, c.draw().x
    assert torch.equal(first, second) and not torch.equal(first, other)
    assert torch.equal(a.draw().x, b.draw().x)


def test_normalisation_uses_only_the_training_selection(data):
    train = data.select(repetitions=[1, 3, 4])
    norm = data.normalisation(train, log_amplitude=False)
    changed = DB23(
        data.emg.clone(),
        data.valid,
        data.channel_mask,
        None,
        data.classes,
        data.subjects,
        data.device,
        frame_rate_hz=data.frame_rate_hz,
    )
    changed.emg[:, :, [1, 4]] *= 1000  # held-out repetitions 2 and 5
    again = changed.normalisation(train, log_amplitude=False)
    assert torch.equal(norm.mean, again.mean) and torch.equal(norm.std, again.std)
    x = data.emg[data.selection_mask(train)][..., :10]
    torch.testing.assert_close(norm.mean[:10], x.reshape(-1, 10).double().mean(0).float())


def test_normalised_training_frames_have_zero_mean_unit_variance(data):
    train = data.select(repetitions=[1, 2])
    normalised = data.normalised(data.normalisation(train))
    x = normalised.emg[normalised.selection_mask(train)][..., :10].reshape(-1, 10)
    torch.testing.assert_close(x.mean(0), torch.zeros(10), atol=1e-3, rtol=0)
    torch.testing.assert_close(x.std(0), torch.ones(10), atol=1e-2, rtol=0)
    assert (normalised.emg[0, ..., 10:] == 0).all()  # padded channels stay zero


def test_frames_iterate_every_selected_frame_in_order(data):
    selection = data.select(subjects=["db2/s2"], classes=["A3"], repetitions=[1, 2, 3])
    chunks = list(data.frames(selection, batch_size=5))
    x = torch.cat([c[0] for c in chunks])
    index = torch.cat([c[1] for c in chunks])
    assert len(x) == 7  # repetitions 1 and 3 of A3 are invalid for db2/s2
    _, _, reps, frames = decode(x)
    assert (reps == 2).all() and frames.tolist() == list(range(7))
    assert (index[:, 0] == 1).all() and (index[:, 1] == 3).all() and (index[:, 2] == 1).all()


def test_unknown_names_are_errors(data):
    with pytest.raises(ValueError, match=r"unknown subject"):
        data.select(subjects=["db2/s9"])
    with pytest.raises(ValueError, match=r"repetitions \[11\] do not exist"):
        data.select(repetitions=[11])


def test_context_frames_are_the_stream_frames_before_each_drawn_frame(tmp_path):
    paths = [fake_subject(tmp_path / "b.pt", "db2", 2, 6, 12), fake_subject(tmp_path / "c.pt", "db3", 3, 6, 12)]
    data = DB23.load(paths, device="cpu", with_streams=True)
    selection = data.select(repetitions=[1, 3])
    single = ContrastiveSampler(data, selection, groups=64, seed=5).draw()
    wide = ContrastiveSampler(data, selection, groups=64, seed=5, context=3).draw()
    assert wide.x.shape == (64, 13, 3, 12)
    assert torch.equal(wide.x[:, :, -1], single.x)  # the same draws; the newest frame is the drawn one
    streams = data.streams
    for back in (1, 2):
        # Each context frame is the stream frame `back` steps earlier (or the subject's first frame).
        now = decode(wide.x[:, :, -1])
        subject_index = now[0] - 2
        position = streams.segment_start[subject_index, now[1], now[2] - 1] + now[3] - back
        position = torch.maximum(position, streams.offset[subject_index])
        assert torch.equal(wide.x[:, :, -1 - back], streams.frames[position])
    test = data.select(repetitions=[2])
    x, _ = next(data.frames(test, context=4))
    assert x.shape[1:] == (4, 12) and torch.equal(x[:, -1], next(data.frames(test))[0])


def test_log_floor_is_a_fraction_of_each_channels_training_median(data):
    train = data.select(repetitions=[1, 3])
    norm = data.normalisation(train, epsilon_fraction=0.01)
    x = data.emg[data.selection_mask(train)][..., :10].reshape(-1, 10)
    torch.testing.assert_close(norm.epsilon[:10], 0.01 * x.median(0).values)


def test_quantised_envelopes_with_exact_zeros_give_no_log_outliers():
    """DB1's envelopes move in steps of ~0.0024 with rare exact zeros: a floor at the data's own scale keeps a zero
    within a few log units of one step, where a fixed 1e-6 put it about 8 below."""
    from contrastive_prosthetics.learning.dataset import Normalisation

    step = 0.0024
    median = 0.3
    relative = Normalisation(torch.zeros(1), torch.ones(1), True, torch.tensor([0.01 * median]))
    fixed = Normalisation(torch.zeros(1), torch.ones(1), True, torch.tensor([1e-6]))
    values = torch.tensor([[0.0], [step]])
    gap_relative = (relative.apply(values)[1] - relative.apply(values)[0]).item()
    gap_fixed = (fixed.apply(values)[1] - fixed.apply(values)[0]).item()
    assert gap_fixed > 7.5 and gap_relative < 1.0


def test_reference_frames_come_from_the_batch_subjects_recording_in_the_selected_repetitions(tmp_path):
    paths = [fake_subject(tmp_path / "b.pt", "db2", 2, 6, 12), fake_subject(tmp_path / "c.pt", "db3", 3, 6, 12)]
    data = DB23.load(paths, device="cpu", with_streams=True)
    selection = data.select(repetitions=[1, 3])
    sampler = ContrastiveSampler(data, selection, groups=8, seed=1, per_subject=True, reference_frames=50)
    for _ in range(10):
        batch = sampler.draw()
        subject_code = decode(batch.x)[0][batch.present][0]
        reference_subjects, _, reference_reps, _ = decode(batch.reference)
        assert batch.reference.shape == (50, 12)
        assert (reference_subjects == subject_code).all()
        assert set(reference_reps.tolist()) <= {1, 3}
    assert ContrastiveSampler(data, selection, groups=8, seed=1).draw().reference is None  # mixed batches: none


# Wrong, damaged or old tensor files: an error naming the file, the field and what to do (reconvert the subject).


def changed(path, change):
    """A valid subject's file at ``path`` whose payload ``change`` then alters: written back by hand, as the writer
    refuses a payload that is not the format's (an older version's or a damaged file)."""
    payload = read_tensor_file(fake_subject(path, "db2", 2, 6, 12))
    change(payload)
    atomic_torch_save(payload, path)
    return path


def without(*keys):
    """A change that drops the key at the end of ``keys``, e.g. ("metadata", "frame_rate_hz")."""

    def change(payload):
        *parents, last = keys
        for key in parents:
            payload = payload[key]
        del payload[last]

    return change


def bad_files(tmp_path) -> dict:
    """case → (files, DB23.load options, the error it must give)."""
    reconvert = "delete it and convert the subject again"
    cases = {"missing": ([tmp_path / "absent.pt"], {}, r"absent\.pt: no such file; convert the subject first")}
    truncated = fake_subject(tmp_path / "truncated.pt", "db2", 2, 6, 12)
    truncated.write_bytes(truncated.read_bytes()[:100])
    cases["truncated"] = ([truncated], {}, rf"truncated\.pt: cannot be read as a tensor file .*truncated .*{reconvert}")
    atomic_torch_save([1, 2], tmp_path / "list.pt")  # a foreign file: by hand
    message = rf"list\.pt: holds a list, not a converted subject's tensors; {reconvert}"
    cases["not a dict"] = ([tmp_path / "list.pt"], {}, message)
    old = changed(tmp_path / "no-valid.pt", without("valid"))
    cases["no valid mask"] = ([old], {}, rf"no-valid\.pt: no field\(s\) \['valid'\] .*older version: {reconvert}")
    old = changed(tmp_path / "no-rate.pt", without("metadata", "frame_rate_hz"))
    cases["no frame rate"] = ([old], {}, rf"no-rate\.pt: no metadata field\(s\) \['frame_rate_hz'\] .*{reconvert}")
    empty = changed(tmp_path / "empty.pt", lambda payload: payload["segments"].clear())
    cases["no window"] = ([empty], {}, rf"empty\.pt: field 'segments' holds no segment window; {reconvert}")
    good = fake_subject(tmp_path / "good.pt", "db2", 1, 6, 12)
    message = r"good\.pt: no segments of window 'steady' \(it has \['onset'\]\); convert it again with that window"
    cases["another window"] = ([good], {"window": "steady"}, message)
    old = changed(tmp_path / "no-features.pt", without("segments", "onset", "features"))
    message = rf"no-features\.pt: the segments of window 'onset' have no field\(s\) \['features'\] .*{reconvert}"
    cases["no features"] = ([old], {"with_features": True}, message)
    old = changed(tmp_path / "no-glove.pt", without("segments", "onset", "glove"))
    cases["no glove"] = ([good, old], {"with_glove": True}, r"no-glove\.pt: .* no field\(s\) \['glove'\]")
    old = changed(tmp_path / "no-stream.pt", without("stream"))
    message = r"\['\S*no-stream\.pt'\]: no continuous stream; convert them again with this version"
    cases["no stream"] = ([good, old], {"with_streams": True}, message)
    other = changed(tmp_path / "classes.pt", lambda payload: payload.update(classes=[*CLASSES[:-1], "B1"]))
    message = r"classes\.pt: its classes differ from \S*good\.pt's; convert every subject with the same data.exercises"
    cases["other classes"] = ([good, other], {}, message)
    other = changed(tmp_path / "rate.pt", lambda payload: payload["metadata"].update(frame_rate_hz=50.0))
    message = r"rate\.pt.*: subjects were converted at different frame rates \[50\.0, 100\.0\] Hz; convert them alike"
    cases["other frame rate"] = ([good, other], {}, message)
    onset = read_tensor_file(good)["segments"]["onset"]
    other = changed(
        tmp_path / "length.pt", lambda payload: payload["segments"]["onset"].update(emg=onset["emg"][..., :5, :])
    )
    cases["other segment length"] = ([good, other], {}, r"different segment lengths \{.*\}; convert them alike")
    return cases


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "truncated",
        "not a dict",
        "no valid mask",
        "no frame rate",
        "no window",
        "another window",
        "no features",
        "no glove",
        "no stream",
        "other classes",
        "other frame rate",
        "other segment length",
    ],
)
def test_a_wrong_or_old_tensor_file_is_named_with_what_to_do(tmp_path, case):
    paths, options, message = bad_files(tmp_path)[case]
    with pytest.raises(InputError, match=message):
        DB23.load(paths, device="cpu", **options)


def test_loading_nothing_is_an_error():
    with pytest.raises(InputError, match=r"DB23\.load needs at least one converted subject file"):
        DB23.load([], device="cpu")


def test_a_subject_converted_before_poses_were_kept_loads_without_poses(tmp_path):
    data = DB23.load([changed(tmp_path / "s.pt", without("segments", "onset", "pose"))], device="cpu")
    assert not data.poses.any() and not data.pose_mask.any()


def test_a_written_tensor_file_reads_back_as_written_and_the_writer_keeps_the_format(tmp_path):
    valid = torch.ones(len(CLASSES), 2, dtype=torch.bool)
    payload = payload_from_segments(
        torch.rand(len(CLASSES), 2, 3, 4), valid, classes=CLASSES, database="db2", subject=1
    )
    assert list(payload) == list(KEYS) and list(payload["segments"]["onset"]) == list(SEGMENT_KEYS)
    write_tensor_file(payload, tmp_path / "a.pt")
    write_tensor_file(payload, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    again = read_tensor_file(tmp_path / "a.pt")
    assert list(again) == list(KEYS) and torch.equal(again["stream"], payload["stream"])
    reordered = {"valid": payload["valid"], **{k: v for k, v in payload.items() if k != "valid"}}
    with pytest.raises(ValueError, match="the tensor file format has"):
        write_tensor_file(reordered, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"metadata: keys .*'colour'"):
        write_tensor_file({**payload, "metadata": {**payload["metadata"], "colour": "red"}}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"segments\['onset'\]: keys"):
        write_tensor_file({**payload, "segments": {"onset": {"emg": payload["stream"]}}}, tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists()
