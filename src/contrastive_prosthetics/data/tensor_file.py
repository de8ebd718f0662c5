"""The tensor file, ``results/tensors/{db}/s{n}.pt``: one converted subject, the conversion's output and every later
stage's input. The one home of its format: the keys it holds, its writer and its reader.

A ``torch.save`` dict, written atomically (:func:`write_tensor_file`), keys in this order (the order is part of the
file's bytes, so the writer checks it):
    stream            float32 [frame, channel]  every 100 Hz RMS frame of every file (files in class-axis order),
                                                transitions and rest included: what a controller sees
    stream_class      int16   [frame]           each frame's relabelled class (index into ``classes``; rest = 0)
    stream_repetition int16   [frame]           each frame's repetition (rest: the next movement's; 0: none)
    stream_file       int8    [frame]           which file (index into ``metadata["sources"]``)
    stream_features   bfloat16 [frame, channel, 4]  Hudgins features (MAV, WL, ZC, SSC) of the 200 ms ending at
                                                each frame: causal, what a classical controller reads (bfloat16:
                                                0.4 % of each value, half the bytes; readers widen it)
    stream_glove      float32 [frame, 22]       the glove at each frame's last sample (the segments' rule), channels
                                                ``glove_mask`` leaves out zero, any other missing reading NaN: what
                                                pose decoding trains on (float32: databases record different units)
    segments          per window of ``preprocess.windows`` (e.g. onset, steady), a dict of
        emg           float32 [class, rep, frame, channel]   the segments: exact slices of ``stream``
        features      bfloat16 [class, rep, frame, channel, 4]  Hudgins features: slices of ``stream_features``
        glove         float32 [class, rep, frame, 22]   joint angles at each segment frame's last sample
        segment_start int64   [class, rep]      each segment's first frame in ``stream`` (-1: not valid)
        pose          float32 [class, rep, 22]  mean glove over the segment minus over the rest before the
                                                movement (rest and invalid cells: zeros): the hand's pose
    run_first, run_last int64 [class, rep]      the relabelled run (rest: the drawn rest run) holding the segments
    valid             bool    [class, rep]      False for movements/repetitions not recorded, or too short for
                                                every window (so that windows are compared on the same cells)
    channel_mask      bool    [channel]         False for dead or unfitted electrodes (spec and data)
    glove_mask        bool    [22]              False for glove channels with missing (NaN) values
    feature_names, classes, metadata (database, subject, amputee, rates, parameters, seed, sources + SHA-256)

The file carries no format key (``metadata["version"]`` is the package version that wrote it), and adding one would
change every file's bytes: a file is recognised by its keys. Files converted by older versions may lack the stream,
its glove or the poses, so the reader asks only for the keys every reader uses, and :func:`window_of` and
:func:`check_streams` for those their caller uses; a file that lacks them is to be converted again.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_torch_save
from ..core.errors import InputError
from ..core.torch_file import load_torch_file
from .preprocess import HUDGINS_FEATURES

# The stream features are four per electrode and frame, 4x the stream itself in float32; bfloat16 keeps float32's
# range (volts to counts) to 3 significant digits, far below the features' own noise, at half the size.
STREAM_FEATURE_DTYPE = torch.bfloat16
STREAM_KEYS = ("stream", "stream_class", "stream_repetition", "stream_file", "stream_features", "stream_glove")
KEYS = (
    *STREAM_KEYS,
    "segments",
    "run_first",
    "run_last",
    "valid",
    "channel_mask",
    "glove_mask",
    "feature_names",
    "classes",
    "metadata",
)
SEGMENT_KEYS = ("emg", "features", "glove", "segment_start", "pose")
METADATA_KEYS = (
    "database",
    "subject",
    "amputee",
    "sampling_rate_hz",
    "frame_rate_hz",
    "filtered",
    "preprocess",
    "seed",
    "exercises",
    "sources",
    "version",
)
# What every reader uses, so every file must hold it (files of older versions included).
READ_KEYS = ("segments", "valid", "channel_mask", "glove_mask", "classes", "metadata")
READ_METADATA = ("database", "subject", "amputee", "frame_rate_hz")
RECONVERT = "delete it and convert the subject again (the workflow's convert rule)"


def _segment_tensor(key: str, value) -> torch.Tensor:
    """A segment part as stored: the features as the stream's are (bfloat16, the same values: slices of them)."""
    tensor = _as_tensor(value)
    return tensor.to(STREAM_FEATURE_DTYPE) if key == "features" else tensor


def tensor_payload(**parts) -> dict:
    """The dict a tensor file holds, from its parts (each of :data:`KEYS` once; ``segments``: window → the parts
    of :data:`SEGMENT_KEYS`), in the file's key order. Numpy arrays become tensors sharing their memory."""
    _check_names("tensor file", list(parts), KEYS, ordered=False)
    for window, part in parts["segments"].items():
        _check_names(f"segments[{window!r}]", list(part), SEGMENT_KEYS, ordered=False)
    segments = {
        window: {key: _segment_tensor(key, part[key]) for key in SEGMENT_KEYS}
        for window, part in parts["segments"].items()
    }
    return {key: segments if key == "segments" else _as_tensor(parts[key]) for key in KEYS}


def write_tensor_file(payload: dict, path: Path) -> None:
    """Write ``payload`` (see :func:`tensor_payload`) atomically, once its keys are checked against the format."""
    _check_names("tensor file", list(payload), KEYS)
    for window, part in payload["segments"].items():
        _check_names(f"segments[{window!r}]", list(part), SEGMENT_KEYS)
    metadata = list(payload["metadata"])
    _check_names("metadata", metadata, [key for key in METADATA_KEYS if key in metadata or key in READ_METADATA])
    atomic_torch_save(payload, Path(path))


def read_tensor_file(path: Path) -> dict:
    """The payload of a tensor file, as written; an error that names the file, the field and what to do when it is
    not one, or lacks what every reader uses."""
    path = Path(path)
    payload = load_torch_file(
        path,
        "a tensor file",
        "no such file; convert the subject first (the workflow's convert rule)",
        f"it is truncated or not a converted subject: {RECONVERT}",
    )
    if not isinstance(payload, dict):
        raise InputError(f"{path}: holds a {type(payload).__name__}, not a converted subject's tensors; {RECONVERT}")
    _require(path, "", payload, READ_KEYS)
    _require(path, "metadata", payload["metadata"], READ_METADATA)
    if not isinstance(payload["segments"], dict) or not payload["segments"]:
        raise InputError(f"{path}: field 'segments' holds no segment window; {RECONVERT}")
    return payload


def first_window(payload: dict) -> str:
    """The name of the first segment window a subject was converted with (the default window)."""
    return next(iter(payload["segments"]))


def window_of(payload: dict, window: str, fields: Iterable[str] = ("emg",), path: Path | str = "tensor file") -> dict:
    """``payload`` with the segments of ``window`` at its top (``emg``, ``glove``, ... beside ``valid``): the view
    the readers use. An error naming the file when it has no such window or its segments lack ``fields``."""
    if window not in payload["segments"]:
        raise InputError(
            f"{path}: no segments of window {window!r} (it has {list(payload['segments'])}); convert it again "
            "with that window in preprocess.windows"
        )
    view = {**payload, **payload["segments"][window]}
    missing = [name for name in fields if name not in view]
    if missing:
        raise InputError(
            f"{path}: the segments of window {window!r} have no field(s) {missing} (they have "
            f"{list(payload['segments'][window])}); it was converted by an older version: {RECONVERT}"
        )
    return view


def check_streams(
    paths: list[Path], payloads: list[dict], with_features: bool = False, with_glove: bool = False
) -> None:
    """An error naming every file without the continuous stream (files converted before it was kept), or without
    its features when ``with_features``, or its glove when ``with_glove`` (files converted before they were kept)."""
    optional = {"stream_features": with_features, "stream_glove": with_glove}
    wanted = [key for key in STREAM_KEYS if optional.get(key, True)]
    missing = [
        str(path)
        for path, payload in zip(paths, payloads, strict=True)
        if not all(key in payload for key in (*wanted, "segment_start"))
    ]
    if missing:
        parts = [name for name, asked in optional.items() if asked]
        what = f"continuous stream or its {' or '.join(parts)}" if parts else "continuous stream"
        raise InputError(f"{missing}: no {what}; convert them again with this version")


def stream_of_segments(emg, valid, features=None, glove=None) -> dict:
    """The stream of a subject whose recording is its segments back to back, in (class, repetition) order, every
    valid segment a slice of it labelled with its class and repetition (hand-made subjects: tests, benchmarks):
    ``stream*`` (:data:`STREAM_KEYS`; the segments' ``features`` and ``glove``, default zeros), and each segment's
    ``segment_start`` (-1: not valid)."""
    emg, valid = torch.as_tensor(emg), torch.as_tensor(valid)
    features = torch.zeros((*emg.shape, 4)) if features is None else torch.as_tensor(features).float()
    glove = torch.zeros((*emg.shape[:3], 22)) if glove is None else torch.as_tensor(glove).float()
    n_classes, n_reps, n_frames = emg.shape[:3]
    cells = valid.nonzero()  # (class, rep) in order
    start = torch.full((n_classes, n_reps), -1, dtype=torch.long)
    start[cells[:, 0], cells[:, 1]] = torch.arange(len(cells)) * n_frames
    return {
        "stream": emg[valid].reshape(-1, emg.shape[-1]).float(),
        "stream_class": cells[:, 0].repeat_interleave(n_frames).to(torch.int16),
        "stream_repetition": (cells[:, 1] + 1).repeat_interleave(n_frames).to(torch.int16),
        "stream_file": torch.zeros(len(cells) * n_frames, dtype=torch.int8),
        "stream_features": features[valid].reshape(-1, *features.shape[-2:]).to(STREAM_FEATURE_DTYPE),
        "stream_glove": glove[valid].reshape(-1, glove.shape[-1]),
        "segment_start": start,
    }


def payload_from_segments(
    emg,
    valid,
    *,
    classes: list[str],
    database: str,
    subject: int,
    amputee: bool = False,
    frame_rate_hz: float = 100.0,
    window: str = "onset",
    channel_mask=None,
    glove_mask=None,
    features=None,
    glove=None,
    pose=None,
) -> dict:
    """A valid tensor file's payload for a hand-made subject (tests, benchmarks) with the segments ``emg`` [class,
    rep, frame, channel] of one ``window`` and their ``valid`` mask: the stream is the valid segments back to back
    (:func:`stream_of_segments`). Masks default to every channel; features, glove and pose to zeros."""
    emg, valid = torch.as_tensor(emg).float(), torch.as_tensor(valid)
    shape = emg.shape[:3]
    features = torch.zeros((*emg.shape, 4)) if features is None else torch.as_tensor(features).float()
    glove = torch.zeros((*shape, 22)) if glove is None else torch.as_tensor(glove).float()
    streams = stream_of_segments(emg, valid, features, glove)
    start = streams.pop("segment_start")
    segment = {
        "emg": emg,
        "features": features,
        "glove": glove,
        "segment_start": start,
        "pose": torch.zeros((*shape[:2], 22)) if pose is None else torch.as_tensor(pose).float(),
    }
    return tensor_payload(
        **streams,
        segments={window: segment},
        run_first=start,
        run_last=torch.where(start >= 0, start + shape[2] - 1, -1),
        valid=valid,
        channel_mask=torch.ones(emg.shape[-1], dtype=torch.bool) if channel_mask is None else channel_mask,
        glove_mask=torch.ones(22, dtype=torch.bool) if glove_mask is None else glove_mask,
        feature_names=list(HUDGINS_FEATURES),
        classes=list(classes),
        metadata={"database": database, "subject": subject, "amputee": amputee, "frame_rate_hz": frame_rate_hz},
    )


def _as_tensor(value):
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def _check_names(what: str, names: list[str], expected: Iterable[str], ordered: bool = True) -> None:
    """A writer's bug, not the user's: keys other than the format's (or, ``ordered``, in another order)."""
    expected = list(expected)
    if (names if ordered else sorted(names)) != (expected if ordered else sorted(expected)):
        raise ValueError(f"{what}: keys {names}, but the tensor file format has {expected}, in that order")


def _require(path: Path, where: str, mapping, names: Iterable[str]) -> None:
    missing = [name for name in names if not isinstance(mapping, dict) or name not in mapping]
    if missing:
        field = f"field(s) {missing}" if not where else f"{where} field(s) {missing}"
        has = sorted(mapping) if isinstance(mapping, dict) else type(mapping).__name__
        raise InputError(
            f"{path}: no {field} (it has {has}); it is not a converted subject, or one converted by an older "
            f"version: {RECONVERT}"
        )
