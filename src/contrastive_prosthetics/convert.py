"""Convert one subject's NinaPro files into the tensor file the rest of the pipeline reads.

Output (``torch.save`` dict, written atomically):
    emg           float32 [class, rep, frame, channel]   100 Hz RMS frames, zeros where not valid
    valid         bool    [class, rep]                    False for movements/repetitions never recorded
    channel_mask  bool    [channel]                       False for flat (dead or unfitted) electrodes
    glove         float32 [class, rep, frame, 22]        joint angles at each frame's last sample
    glove_mask    bool    [22]                            False for glove channels with missing (NaN) values
    features      float32 [class, rep, frame, channel, 4] Hudgins features (MAV, WL, ZC, SSC) over the
                                                          ``feature_window_ms`` ending at each frame
    feature_names list[str]
    classes       list[str]                               the class axis: rest, then movement names
    metadata      dict                                    database, subject, amputee, rates, parameters, sources

Segments: each movement repetition is the relabelled run (``restimulus``) of that movement, its repetition
number taken from ``rerepetition`` (or, where that is 0, from the run's position); the segment starts
``window_offset_ms`` after the relabelled onset. Rest has no repetition labels worth trusting (files differ
in what ``rerepetition`` holds during rest), so rest runs are assigned to repetitions by position: a rest run
belongs to the repetition of the movement that follows it (the trailing rest to the one before it), and the
rest of repetition r is the first such run of the first exercise file, its segment centred in the run, away
from both transitions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .archives import read_manifest
from .atomic import atomic_torch_save
from .matfile import ARCHIVE_SEPARATOR, MatFileError, Recording, load_recording
from .ninapro import GLOVE_CHANNELS, DatabaseSpec, class_names, movement_names
from .preprocess import HUDGINS_FEATURES, PreprocessParams, find_runs, hop_samples, segment_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    class_index: int
    repetition: int  # 1-based
    start: int  # first sample of the segment


def movement_segments(
    recording: Recording, movements: np.ndarray, class_of_movement: dict[int, int], n_samples: int, repetitions: int
) -> list[Segment]:
    """The longest relabelled run of every (movement, repetition), as a segment of ``n_samples``."""
    starts, stops, values = find_runs(movements)
    chosen: dict[tuple[int, int], tuple[int, int]] = {}
    position: dict[int, int] = {}
    for start, stop, movement in zip(starts, stops, values, strict=True):
        if movement == 0:
            continue
        position[movement] = position.get(movement, 0) + 1
        labelled = int(recording.rerepetition[(start + stop) // 2])
        repetition = labelled if labelled > 0 else position[movement]
        if repetition > repetitions:
            log.warning(
                "%s: movement %d has repetition %d > %d; ignored", recording.source, movement, repetition, repetitions
            )
            continue
        key = (int(movement), repetition)
        if key not in chosen or stop - start > chosen[key][1] - chosen[key][0]:
            chosen[key] = (int(start), int(stop))
    segments = []
    for (movement, repetition), (start, stop) in sorted(chosen.items()):
        if stop - start < n_samples:
            log.warning(
                "%s: movement %d repetition %d lasts %d samples, shorter than the %d-sample window; left invalid",
                recording.source,
                movement,
                repetition,
                stop - start,
                n_samples,
            )
            continue
        segments.append(Segment(class_of_movement[movement], repetition, start))
    return segments


def assign_rest_to_repetitions(movements: np.ndarray, rerepetition: np.ndarray) -> list[tuple[int, int, int]]:
    """Rest runs as (start, stop, repetition): each belongs to the repetition of the movement after it.

    ``rerepetition`` is read only inside movement runs, so files that write 0 during rest and files that
    carry the repetition number there give the same answer.
    """
    starts, stops, values = find_runs(movements)
    run_repetition = np.where(values != 0, rerepetition[(starts + stops) // 2], 0)
    moving = np.flatnonzero(values != 0)
    rests = []
    for run in np.flatnonzero(values == 0):
        after = moving[moving > run]
        before = moving[moving < run]
        neighbour = after[0] if after.size else (before[-1] if before.size else None)
        if neighbour is not None:
            rests.append((int(starts[run]), int(stops[run]), int(run_repetition[neighbour])))
    return rests


def rest_segments(
    recording: Recording, movements: np.ndarray, n_samples: int, repetitions: int, rest_class: int
) -> list[Segment]:
    segments = []
    taken = set()
    for start, stop, repetition in assign_rest_to_repetitions(movements, recording.rerepetition):
        if repetition in taken or not 1 <= repetition <= repetitions or stop - start < n_samples:
            continue
        taken.add(repetition)
        segments.append(Segment(rest_class, repetition, start + (stop - start - n_samples) // 2))
    return segments


def check_no_empty_movement(recording: Recording, stimulus: np.ndarray, movements: np.ndarray, exercise: str) -> None:
    cued = np.bincount(stimulus, minlength=1)[1:] > 0  # labels are small non-negative ints: counting is cheap
    performed = np.bincount(movements, minlength=len(cued) + 1)[1 : len(cued) + 1] > 0
    empty = (np.flatnonzero(cued & ~performed) + 1).tolist()
    if empty:
        names = [movement_names(exercise)[m - 1] for m in empty]
        raise MatFileError(
            f"{recording.source}: movement(s) {names} are cued in 'stimulus' but have no samples in 'restimulus'; "
            "the relabelling of this file is broken: download it again or leave the subject out"
        )


def flat_channels(emg: np.ndarray, stride: int = 97) -> np.ndarray:
    """Channels whose every sample is equal: electrodes that were dead or not fitted.

    A strided look finds the live channels almost for free; only channels that look flat there are checked
    in full.
    """
    flat = np.ptp(emg[::stride], axis=0) == 0
    for channel in np.flatnonzero(flat):
        flat[channel] = np.ptp(emg[:, channel]) == 0
    return flat


def prefetched_recordings(
    spec: DatabaseSpec,
    sources: dict[str, str],
    exercises: list[str],
    params: PreprocessParams,
    expected_sha256: dict[str, str] | None,
) -> Iterator[tuple[str, Recording]]:
    """(exercise, recording) in class-axis order, reading the next file while the caller processes this one.

    Reading dominates conversion; overlapping it with the processing of the previous file hides most of the
    processing on a two-core machine. At most two recordings are in memory at once.
    """

    def load(exercise: str) -> Recording:
        name = Path(sources[exercise].split(ARCHIVE_SEPARATOR)[-1]).name
        return load_recording(
            sources[exercise],
            spec.n_channels,
            max_length_mismatch=params.max_length_mismatch,
            expected_sha256=(expected_sha256 or {}).get(name),
        )

    order = classes_order(exercises)
    with ThreadPoolExecutor(max_workers=1) as reader:
        upcoming = reader.submit(load, order[0])
        for index, exercise in enumerate(order):
            recording = upcoming.result()
            upcoming = reader.submit(load, order[index + 1]) if index + 1 < len(order) else None
            yield exercise, recording
            del recording


def convert_subject(
    spec: DatabaseSpec,
    subject: int,
    sources: dict[str, str],
    exercises: list[str],
    params: PreprocessParams,
    out_path: Path | None = None,
    expected_sha256: dict[str, str] | None = None,
    manifest: Path | None = None,
) -> dict:
    """Read one subject's files (``sources``: exercise → path) and return (and optionally save) its tensors.

    ``expected_sha256`` (file name → digest) and the digests recorded in a download ``manifest`` are checked
    against what is read.
    """
    spec.check_subject(subject)
    if manifest is not None:
        expected_sha256 = {**manifest_digests(manifest), **(expected_sha256 or {})}
    classes = class_names(exercises)
    n_frames = params.frames_per_segment()
    hop = hop_samples(spec.sampling_rate_hz, params)
    n_samples = n_frames * hop
    offset = round(params.window_offset_ms * spec.sampling_rate_hz / 1000)
    shape = (len(classes), spec.repetitions, n_frames)
    emg = np.zeros((*shape, spec.n_channels), np.float32)
    glove = np.zeros((*shape, GLOVE_CHANNELS), np.float32)
    features = np.zeros((*shape, spec.n_channels, len(HUDGINS_FEATURES)), np.float32)
    valid = np.zeros(shape[:2], bool)
    live_channels = np.ones(spec.n_channels, bool)
    sources_metadata = []

    for file_number, (exercise, recording) in enumerate(
        prefetched_recordings(spec, sources, exercises, params, expected_sha256)
    ):
        sources_metadata.append(
            {"exercise": exercise, "file": recording.source, "sha256": recording.sha256, "size": recording.size}
        )
        movements = spec.global_labels(exercise, recording.restimulus, recording.source)
        cued = spec.global_labels(exercise, recording.stimulus, recording.source)
        check_no_empty_movement(recording, cued, movements, exercise)
        class_of_movement = {m: classes.index(name) for m, name in enumerate(movement_names(exercise), start=1)}
        segments = movement_segments(recording, movements, class_of_movement, n_samples + offset, spec.repetitions)
        segments = [Segment(s.class_index, s.repetition, s.start + offset) for s in segments]
        if file_number == 0:
            segments += rest_segments(recording, movements, n_samples, spec.repetitions, classes.index("rest"))
        if not segments:
            continue
        first_frame_ends = np.array([s.start + hop - 1 for s in segments])
        frames, frame_features = segment_frames(
            recording.emg, first_frame_ends, n_frames, spec.sampling_rate_hz, params, spec.already_rectified
        )
        frame_ends = first_frame_ends[:, None] + np.arange(n_frames) * hop
        class_index = np.array([s.class_index for s in segments])
        repetition_index = np.array([s.repetition - 1 for s in segments])
        emg[class_index, repetition_index] = frames
        features[class_index, repetition_index] = frame_features
        glove[class_index, repetition_index] = recording.glove[frame_ends]
        valid[class_index, repetition_index] = True
        live_channels &= ~flat_channels(recording.emg)

    for missing in spec.missing_electrodes.get(subject, ()):
        live_channels[missing] = False
    glove_mask = np.isfinite(glove[valid]).all(axis=(0, 1)) if valid.any() else np.zeros(GLOVE_CHANNELS, bool)
    glove[..., ~glove_mask] = 0.0
    emg[..., ~live_channels] = 0.0
    features[..., ~live_channels, :] = 0.0
    if not live_channels.all():
        log.info("%s s%d: flat electrode(s) %s masked", spec.name, subject, np.flatnonzero(~live_channels).tolist())
    absent = [f"{classes[c]}/rep{r + 1}" for c, r in zip(*np.nonzero(~valid), strict=True)]
    if absent:
        log.info("%s s%d: %d (class, repetition) pairs not recorded: %s", spec.name, subject, len(absent), absent)

    payload = {
        "emg": torch.from_numpy(emg),
        "valid": torch.from_numpy(valid),
        "channel_mask": torch.from_numpy(live_channels),
        "glove": torch.from_numpy(glove),
        "glove_mask": torch.from_numpy(glove_mask),
        "features": torch.from_numpy(features),
        "feature_names": list(HUDGINS_FEATURES),
        "classes": classes,
        "metadata": {
            "database": spec.name,
            "subject": subject,
            "amputee": spec.amputee,
            "sampling_rate_hz": spec.sampling_rate_hz,
            "frame_rate_hz": params.frame_rate_hz,
            "filtered": not spec.already_rectified,
            "preprocess": params.as_dict(),
            "exercises": list(classes_order(exercises)),
            "sources": sources_metadata,
            "version": __version__,
        },
    }
    if out_path is not None:
        atomic_torch_save(payload, Path(out_path))
    return payload


def manifest_digests(path: Path) -> dict[str, str]:
    """File name → SHA-256 of every file a download manifest records."""
    return {member["name"]: member["sha256"] for member in read_manifest(Path(path))["members"]}


def classes_order(exercises: list[str]) -> list[str]:
    """Selected exercises in catalogue order, the order of the class axis."""
    names = class_names(exercises)
    return list(dict.fromkeys(name[0] for name in names[1:]))
