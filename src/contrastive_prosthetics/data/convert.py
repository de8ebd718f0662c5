"""Convert one subject's NinaPro files into its tensor file (the format: :mod:`.tensor_file`), which the rest of the
pipeline reads.

Every frame of every file is kept, files in class-axis order, as the subject's continuous stream; the segments are
slices of it. Segments and rest: see :mod:`.segments`. Signal processing: see :mod:`.preprocess`. A movement that
was cued but never performed (amputees fail movements) is left invalid with a warning naming the file and the
movement; only a file with no usable movement at all is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..core.errors import InputError
from .archives import read_manifest
from .matfile import ARCHIVE_SEPARATOR, MatFileError, Recording, checked_digest, glove_rows, load_recording
from .ninapro import GLOVE_CHANNELS, DatabaseSpec, class_names, movement_names
from .preprocess import HUDGINS_FEATURES, PreprocessParams, frame_ends, hop_samples, stream_frames
from .segments import Run, Segments, choose_segments, file_runs, preceding_rest
from .tensor_file import STREAM_FEATURE_DTYPE, tensor_payload, write_tensor_file

log = logging.getLogger(__name__)
# An electrode whose median frame RMS is below this share of the median electrode's is dead or not fitted.
DEAD_ELECTRODE_SHARE = 0.02


def cued_but_not_performed(stimulus: np.ndarray, movements: np.ndarray) -> list[int]:
    """Movement numbers cued in ``stimulus`` that have no sample in the relabelled ``movements``."""
    cued = np.bincount(stimulus, minlength=1)[1:] > 0  # labels are small non-negative ints: counting is cheap
    performed = np.bincount(movements, minlength=len(cued) + 1)[1 : len(cued) + 1] > 0
    return (np.flatnonzero(cued & ~performed) + 1).tolist()


def flat_channels(emg: np.ndarray, stride: int = 97) -> np.ndarray:
    """Channels whose every sample is equal: electrodes that were dead or not fitted.

    A strided look finds the live channels almost for free; only channels that look flat there are checked
    in full.
    """
    flat = np.ptp(emg[::stride], axis=0) == 0
    for channel in np.flatnonzero(flat):
        flat[channel] = np.ptp(emg[:, channel]) == 0
    return flat


def dead_channels(stream: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Flat electrodes, and electrodes whose median frame RMS is a tiny share of the median electrode's."""
    level = np.median(stream, axis=0)
    reference = np.median(level[~flat]) if (~flat).any() else 0.0
    return flat | (level < DEAD_ELECTRODE_SHARE * reference)


def compare_with_spec(spec: DatabaseSpec, subject: int, from_data: np.ndarray) -> None:
    """Warn, naming subject and electrode, where the data and the database's spec disagree about dead electrodes."""
    from_spec = np.zeros_like(from_data)
    from_spec[list(spec.missing_electrodes.get(subject, ()))] = True
    for channel in np.flatnonzero(from_data & ~from_spec):
        log.warning(
            "%s s%d: electrode %d (0-based) looks dead or unfitted in the data; masked", spec.name, subject, channel
        )
    for channel in np.flatnonzero(from_spec & ~from_data):
        log.warning(
            "%s s%d: the %s spec lists electrode %d (0-based) as not fitted, but its signal looks live; masked as the "
            "spec says",
            spec.name,
            subject,
            spec.name.upper(),
            channel,
        )


def prefetched_recordings(
    spec: DatabaseSpec,
    sources: dict[str, str],
    exercises: list[str],
    params: PreprocessParams,
    expected_sha256: dict[str, str] | None,
) -> Iterator[tuple[str, Recording, Future, Future]]:
    """(exercise, recording without its glove or digest, future of its glove at every frame end, future of its
    checked (sha256, size)), in class-axis order.

    One reader thread runs ahead of the caller: while the caller processes a file's EMG it reads the next file's
    EMG and labels, then this file's glove (the largest variable), so that reading, which dominates conversion,
    rarely waits for processing and the last file's EMG is processed while its glove is read. At most two files'
    EMG are in memory at once; a glove is only ever held at the frame ends (see :func:`.matfile.glove_rows`).
    A hashing thread checks each file's digest meanwhile, so processing never waits for it; the caller collects
    the digests before it writes anything. A file that fails to load reports a digest mismatch first, since
    that explains the failure.
    """
    hop = hop_samples(spec.sampling_rate_hz, params)

    def load(exercise: str) -> Recording:
        return load_recording(
            sources[exercise],
            spec.n_channels,
            max_length_mismatch=params.max_length_mismatch,
            defer_glove=True,
            hash_file=False,
        )

    def glove_frames(recording: Recording) -> np.ndarray:
        return glove_rows(recording, frame_ends(len(recording.emg), hop)).astype(np.float32)

    def expected(exercise: str) -> str | None:
        return (expected_sha256 or {}).get(Path(sources[exercise].split(ARCHIVE_SEPARATOR)[-1]).name)

    order = classes_order(exercises)
    reader, hasher = ThreadPoolExecutor(max_workers=1), ThreadPoolExecutor(max_workers=1)
    digests = {exercise: hasher.submit(checked_digest, sources[exercise], expected(exercise)) for exercise in order}
    try:
        upcoming = reader.submit(load, order[0])
        for index, exercise in enumerate(order):
            try:
                recording = upcoming.result()
            except MatFileError:
                digests[exercise].result()  # a changed file explains why it cannot be read: say that instead
                raise
            if index + 1 < len(order):
                upcoming = reader.submit(load, order[index + 1])
            yield exercise, recording, reader.submit(glove_frames, recording), digests[exercise]
            del recording
    except BaseException:  # an error, here or in the caller: reads still queued are not worth waiting for
        reader.shutdown(wait=True, cancel_futures=True)
        hasher.shutdown(wait=True, cancel_futures=True)
        raise
    hasher.shutdown(wait=False)
    reader.shutdown(wait=False)  # the gloves still queued are read; their futures stay valid


def convert_subject(
    spec: DatabaseSpec,
    subject: int,
    sources: dict[str, str],
    exercises: list[str],
    params: PreprocessParams,
    out_path: Path | None = None,
    expected_sha256: dict[str, str] | None = None,
    manifest: Path | None = None,
    seed: int = 0,
    threads: int = 2,
) -> dict:
    """Read one subject's files (``sources``: exercise → path) and return (and optionally save) its tensors.

    ``expected_sha256`` (file name → digest) and the digests recorded in a download ``manifest`` are checked
    against what is read. ``seed`` draws each repetition's rest segment (see :mod:`.segments`). ``threads``: channels
    processed at once, while another thread reads (and hashes) the next file; the output does not depend on it.
    """
    spec.check_subject(subject)
    if manifest is not None:
        expected_sha256 = {**manifest_digests(manifest), **(expected_sha256 or {})}
    classes = class_names(exercises)
    recorded = read_subject_stream(spec, sources, exercises, params, expected_sha256, classes, threads)
    stream = np.concatenate(recorded.frames)
    windows = params.frame_windows()
    chosen = choose_segments(
        recorded.movement_runs, recorded.rest_runs, (len(classes), spec.repetitions), windows, seed, spec.name, subject
    )
    check_window_fits(chosen.too_short, classes, params, spec, subject)
    valid = chosen.run_first >= 0
    stream_features = np.concatenate(recorded.features)
    recorded.features.clear()  # one copy of the features in memory: the stream's
    stream_glove = np.concatenate([glove.result() for glove in recorded.gloves])
    segments = cut_segments(recorded, stream, stream_features, stream_glove, chosen, valid, windows)
    live_channels, glove_mask = mask_channels(spec, subject, stream, recorded.flat, segments, valid)
    stream_glove[:, ~glove_mask] = 0.0  # as in the segments; a missing reading elsewhere stays NaN: no target
    stream_features[:, ~live_channels] = 0.0
    absent = [f"{classes[c]}/rep{r + 1}" for c, r in zip(*np.nonzero(~valid), strict=True)]
    if absent:
        log.info("%s s%d: %d (class, repetition) pairs not valid: %s", spec.name, subject, len(absent), absent)
    payload = tensor_payload(
        stream=stream,
        stream_class=np.concatenate(recorded.classes),
        stream_repetition=np.concatenate(recorded.repetitions),
        stream_file=np.concatenate(recorded.files),
        stream_features=torch.from_numpy(stream_features).to(STREAM_FEATURE_DTYPE),
        stream_glove=stream_glove,
        segments=segments,
        run_first=chosen.run_first,
        run_last=chosen.run_last,
        valid=valid,
        channel_mask=live_channels,
        glove_mask=glove_mask,
        feature_names=list(HUDGINS_FEATURES),
        classes=classes,
        metadata=conversion_metadata(spec, subject, params, seed, exercises, recorded.sources),
    )
    if out_path is not None:
        write_tensor_file(payload, Path(out_path))
    return payload


@dataclass
class SubjectStream:
    """A subject's files, read and turned into frames one after another (class-axis order), before they are laid
    end to end: per file its frames and what is known of each frame; runs already in the stream's frame numbers."""

    flat: np.ndarray  # [channel] electrodes flat (every sample equal) in some file
    frames: list[np.ndarray] = field(default_factory=list)  # [frame, channel] RMS frames
    features: list[np.ndarray] = field(default_factory=list)  # [frame, channel, 4] Hudgins features
    gloves: list[Future] = field(default_factory=list)  # [frame, 22] the glove at each frame, still being read
    classes: list[np.ndarray] = field(default_factory=list)  # [frame] relabelled class
    repetitions: list[np.ndarray] = field(default_factory=list)  # [frame] repetition
    files: list[np.ndarray] = field(default_factory=list)  # [frame] the file's number
    movement_runs: list[Run] = field(default_factory=list)
    rest_runs: list[Run] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)  # per file: exercise, file (then sha256 and size)
    length: int = 0  # frames so far: where the next file's first frame goes

    def add(self, frames, features, glove, frame_class, frame_rep, runs: list[Run], rests: list[Run]) -> None:
        """Append one file's frames, their labels and its runs (in the file's frame numbers)."""
        self.files.append(np.full(len(frames), len(self.frames), np.int8))
        self.frames.append(frames)
        self.features.append(features)
        self.gloves.append(glove)
        self.classes.append(frame_class)
        self.repetitions.append(frame_rep)
        self.movement_runs += [run.shifted(self.length) for run in runs]
        self.rest_runs += [run.shifted(self.length) for run in rests]
        self.length += len(frames)


def read_subject_stream(
    spec: DatabaseSpec,
    sources: dict[str, str],
    exercises: list[str],
    params: PreprocessParams,
    expected_sha256: dict[str, str] | None,
    classes: list[str],
    threads: int,
) -> SubjectStream:
    """Every file of the subject read, checked and turned into frames (see :func:`prefetched_recordings`); each
    file's digest checked and recorded in ``sources`` before it returns."""
    hop = hop_samples(spec.sampling_rate_hz, params)
    recorded = SubjectStream(flat=np.zeros(spec.n_channels, bool))
    digests: list[Future] = []
    try:
        for exercise, recording, glove_frames, digest in prefetched_recordings(
            spec, sources, exercises, params, expected_sha256
        ):
            recorded.sources.append({"exercise": exercise, "file": recording.source})
            digests.append(digest)
            runs, rests, frame_class, frame_rep, first_cue = labelled_runs(spec, exercise, recording, classes, hop)
            frames, features = stream_frames(
                recording.emg, spec.sampling_rate_hz, params, spec.already_rectified, first_cue, workers=threads
            )
            recorded.add(frames, features, glove_frames, frame_class, frame_rep, runs, rests)
            recorded.flat |= flat_channels(recording.emg)
    except MatFileError:
        for digest in digests:  # a file that changed since its download explains any error in it: say that first
            digest.result()
        raise
    for metadata, digest in zip(recorded.sources, digests, strict=True):
        metadata["sha256"], metadata["size"] = digest.result()
    return recorded


def labelled_runs(
    spec: DatabaseSpec, exercise: str, recording: Recording, classes: list[str], hop: int
) -> tuple[list[Run], list[Run], np.ndarray, np.ndarray, int]:
    """One file's movement and rest runs, each frame's class and repetition (see :func:`.segments.file_runs`), and
    the sample of its first cue (0: none). Movements cued but never performed are named in a warning; a file with no
    usable movement is an error."""
    movements = spec.global_labels(exercise, recording.restimulus, recording.source)
    cued = spec.global_labels(exercise, recording.stimulus, recording.source)
    names = movement_names(exercise)
    failed = cued_but_not_performed(cued, movements)
    if failed:
        log.warning(
            "%s: movement(s) %s were cued in 'stimulus' but never performed (no samples in 'restimulus'); left invalid",
            recording.source,
            [names[m - 1] for m in failed],
        )
    class_of_movement = {m: classes.index(name) for m, name in enumerate(names, start=1)}
    runs, rests, frame_class, frame_rep = file_runs(
        recording.source, movements, recording.rerepetition, class_of_movement, spec.repetitions, hop
    )
    if not runs:
        raise MatFileError(
            f"{recording.source}: no usable movement in 'restimulus' (every movement is missing or outside "
            f"repetitions 1-{spec.repetitions}); is this a NinaPro recording? Leave the file's subject out"
        )
    cue = np.flatnonzero(cued)
    return runs, rests, frame_class, frame_rep, int(cue[0]) if cue.size else 0


def cut_segments(
    recorded: SubjectStream,
    stream: np.ndarray,
    all_features: np.ndarray,
    all_gloves: np.ndarray,
    chosen: Segments,
    valid: np.ndarray,
    windows: dict,
) -> dict:
    """Per window, the ``chosen`` segments of every valid (class, repetition) cut from the ``stream``, its
    features and its glove (``all_gloves``, at every frame), with the hand's pose: window →
    :data:`.tensor_file.SEGMENT_KEYS` (zeros where not valid)."""
    rest_first, rest_last = preceding_rest(chosen.run_first, recorded.rest_runs)
    glove_sums = running_sums(all_gloves)
    rest_pose = mean_over(glove_sums, rest_first, rest_last)  # [class, rep, 22]
    segments = {}
    for name, window in windows.items():
        index = np.where(valid, chosen.start[name], 0)[..., None] + np.arange(window.length)  # [class, rep, frame]
        keep = valid[..., None, None]
        segments[name] = {
            "emg": np.where(keep, stream[index], 0.0).astype(np.float32),
            "features": np.where(keep[..., None], all_features[index], 0.0).astype(np.float32),
            "glove": np.where(keep, all_gloves[index], 0.0).astype(np.float32),
            "segment_start": chosen.start[name],
            # The hand's pose over the segment relative to the rest before the movement (rest: none, zeros).
            "pose": pose_deltas(glove_sums, chosen.start[name], window.length, rest_pose, valid),
        }
    return segments


def mask_channels(
    spec: DatabaseSpec, subject: int, stream: np.ndarray, flat: np.ndarray, segments: dict, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(live electrodes, glove channels with data), everything outside them zeroed in ``stream`` and ``segments``,
    so that a dead electrode or a missing glove channel reads as nothing rather than as data."""
    data_dead = dead_channels(stream, flat)
    compare_with_spec(spec, subject, data_dead)
    live_channels = ~data_dead
    live_channels[list(spec.missing_electrodes.get(subject, ()))] = False
    first = next(iter(segments.values()))
    glove_mask = np.isfinite(first["glove"][valid]).all(axis=(0, 1)) if valid.any() else np.zeros(GLOVE_CHANNELS, bool)
    stream[:, ~live_channels] = 0.0
    for part in segments.values():
        part["glove"][..., ~glove_mask] = 0.0
        part["pose"][..., ~glove_mask] = 0.0
        part["emg"][..., ~live_channels] = 0.0
        part["features"][..., ~live_channels, :] = 0.0
    if not live_channels.all():
        log.info("%s s%d: electrode(s) %s masked", spec.name, subject, np.flatnonzero(~live_channels).tolist())
    return live_channels, glove_mask


def conversion_metadata(
    spec: DatabaseSpec, subject: int, params: PreprocessParams, seed: int, exercises: list[str], sources: list[dict]
) -> dict:
    """What was converted and how (:data:`.tensor_file.METADATA_KEYS`): enough to tell two conversions apart."""
    return {
        "database": spec.name,
        "subject": subject,
        "amputee": spec.amputee,
        "sampling_rate_hz": spec.sampling_rate_hz,
        "frame_rate_hz": params.frame_rate_hz,
        "filtered": not spec.already_rectified,
        "preprocess": params.as_dict(),
        "seed": seed,
        "exercises": list(classes_order(exercises)),
        "sources": sources,
        "version": __version__,
    }


def running_sums(values: np.ndarray) -> np.ndarray:
    """[frame + 1, channel] float64 sums of ``values`` [frame, channel] over the frames before each: computed once,
    for every mean over a stretch of frames."""
    return np.concatenate((np.zeros((1, values.shape[1])), np.cumsum(values, axis=0, dtype=np.float64)))


def mean_over(running: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Mean over frames first..last (inclusive) of every cell (NaN where first < 0), from ``running`` sums
    (:func:`running_sums`)."""
    a, b = np.maximum(first, 0), np.maximum(last, 0)
    means = (running[b + 1] - running[a]) / np.maximum(b - a + 1, 1)[..., None]
    return np.where((first >= 0)[..., None], means, np.nan)


def pose_deltas(glove_sums: np.ndarray, start: np.ndarray, length: int, rest_pose: np.ndarray, valid: np.ndarray):
    """[class, rep, 22] mean glove over each segment minus the rest before its movement; zeros for rest and for
    cells without a valid segment or a preceding rest. ``glove_sums``: :func:`running_sums` of the gloves."""
    delta = mean_over(glove_sums, np.where(valid, start, -1), np.where(valid, start + length - 1, -1)) - rest_pose
    delta[0] = 0.0  # rest is the reference itself
    return np.nan_to_num(delta, nan=0.0).astype(np.float32)


def check_window_fits(too_short: dict[int, int], classes: list[str], params, spec: DatabaseSpec, subject: int) -> None:
    """Classes that were recorded but whose every run is shorter than the windows: an error that says so, rather
    than a class that looks never recorded."""
    if not too_short:
        return
    period_ms = 1000 / params.frame_rate_hz
    detail = ", ".join(f"{classes[c]} (longest {frames * period_ms:g} ms)" for c, frames in too_short.items())
    windows = ", ".join(f"{name}: {w['offset_ms']:g} + {w['length_ms']:g} ms" for name, w in params.windows.items())
    raise InputError(
        f"{spec.name} s{subject}: {detail} were recorded, but no repetition is long enough for the windows "
        f"preprocess.windows ({windows}; offset + length): shorten the windows or their offsets"
    )


def manifest_digests(path: Path) -> dict[str, str]:
    """File name → SHA-256 of every file a download manifest records."""
    return {member["name"]: member["sha256"] for member in read_manifest(Path(path))["members"]}


def classes_order(exercises: list[str]) -> list[str]:
    """Selected exercises in catalogue order, the order of the class axis."""
    names = class_names(exercises)
    return list(dict.fromkeys(name[0] for name in names[1:]))
