"""Synthetic NinaPro recordings: MATLAB v5 files with NinaPro's variables, shapes, dtypes and label numbering.

This is the pipeline's embedded default dataset: no machine that runs the tests can download the real databases,
so the generator has to be realistic enough that band-pass filtering, moving-RMS features, cutting by
``restimulus`` × ``rerepetition`` and a per-frame classifier behave as they do on real data. Downstream code reads
these files exactly as it reads real ones.

Protocol (per file, i.e. per subject × exercise)
    A leading rest, then every movement of the exercise in catalogue order, each repeated
    ``spec.repetitions`` times: ``movement_s`` of cue (``stimulus`` = the file's label, ``repetition`` = 1..R)
    followed by ``rest_s`` of rest (both 0). Movements the subject never performed
    (``spec.missing_movements``) are left out; the remaining ones keep their label numbers. The relabelled
    tracks (``restimulus``/``rerepetition``) mark the movement the subject actually made: it starts after a
    reaction delay of 0.1-0.3 s and ends 0.05-0.2 s before the cue does, so it lies inside the cue. EMG and glove
    follow the relabelled movement, not the cue. During rest ``rerepetition`` is 0 (as in the real DB1/DB2 files)
    or, with ``rerepetition_in_rest="repetition"``, the number of the last repetition made (1 before the first).

Signal model
    Muscle-synergy envelopes driving band-limited noise through a subject-specific volume conduction, glove poses,
    drift, amputees: :mod:`.synthetic_signals` documents every part.

Randomness
    Class prototypes come from ``SeedSequence([seed])``; a subject's session (electrode placement, anatomy,
    neutral pose) from ``SeedSequence([seed, database, subject, 0])``; everything specific to one file from
    ``SeedSequence([seed, database, subject, file index])``, split into one stream per component. A file therefore
    does not depend on which other files are generated, and the same seed gives byte-identical files (with the
    same numpy, scipy and zlib): the MAT header's creation date is replaced by a fixed text.

Files
    MATLAB v5, one per subject × exercise, named ``spec.file_name``, with NinaPro's variables: ``emg`` float64
    (N, channels), ``glove`` float64 (N, 22), ``stimulus``/``restimulus``/``repetition``/``rerepetition`` uint8
    (N, 1), ``subject`` and ``exercise`` (the file index) 1×1 double. scipy.io.savemat encodes the variables;
    compression (``compress``) is zlib level 1 in MATLAB's miCOMPRESSED elements. Written atomically (temporary
    file, then rename).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import scipy.io
import scipy.signal

from ..core.atomic import atomic_write
from ..core.errors import InputError
from .ninapro import DatabaseSpec, movement_names
from .synthetic_signals import (
    EARLY_END_S,
    OTTO_BOCK_SATURATION_V,
    REACTION_DELAY_S,
    Protocol,
    apply_electrode_drift,
    class_prototypes,
    digitise,
    glove_angles,
    muscle_envelopes,
    otto_bock_emg,
    seed_sequence,
    subject_session,
    surface_emg,
)

MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by: contrastive-prosthetics synthetic"
MAT_HEADER_TEXT_BYTES = 116
MAT_HEADER_BYTES = 128
MI_COMPRESSED = 15  # MAT v5 data type of a zlib-compressed element

# ---------------------------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class SyntheticParams:
    movement_s: float = 1.5  # cued movement duration per repetition (NinaPro real: 5 s)
    rest_s: float = 1.0  # rest between repetitions (NinaPro real: 3 s)
    separability: float = 1.0  # 0 = all classes share one activation pattern, larger = more distinct
    rerepetition_in_rest: str = "zero"  # "zero" (real DB1/DB2) or "repetition" (the last repetition's number)
    dead_electrodes: tuple[int, ...] = ()  # 0-based columns written flat in addition to spec.missing_electrodes
    mains_hz: float = 50.0  # 0 switches mains interference off
    compress: bool = True  # MATLAB and NinaPro write compressed v5 files

    def __post_init__(self) -> None:
        object.__setattr__(self, "dead_electrodes", tuple(self.dead_electrodes))  # a JSON list from the config
        shortest = REACTION_DELAY_S[1] + EARLY_END_S[1] + 0.3  # leaves at least 0.3 s of relabelled movement
        if self.movement_s < shortest:
            raise InputError(f"synthetic movement_s must be at least {shortest:g} s, not {self.movement_s}")
        if self.rest_s <= 0:
            raise InputError(f"synthetic rest_s must be positive, not {self.rest_s}")
        if self.separability < 0:
            raise InputError(f"synthetic separability must be >= 0, not {self.separability}")
        if self.rerepetition_in_rest not in ("zero", "repetition"):
            raise InputError(
                f"synthetic rerepetition_in_rest must be 'zero' or 'repetition', not {self.rerepetition_in_rest!r}"
            )
        if self.mains_hz < 0:
            raise InputError(f"synthetic mains_hz must be >= 0, not {self.mains_hz}")


def generate_recording(
    spec: DatabaseSpec, subject: int, exercise: str, params: SyntheticParams, seed: int
) -> dict[str, np.ndarray]:
    """One subject × exercise recording as NinaPro's MATLAB variables (see the module docstring)."""
    spec.check_subject(subject)
    file_index = spec.file_index(exercise)
    fs = spec.sampling_rate_hz
    dead = _dead_electrodes(spec, subject, params)
    if not spec.already_rectified and params.mains_hz >= fs / 2:
        raise InputError(f"mains_hz {params.mains_hz} is above the Nyquist frequency of {spec.name} ({fs / 2} Hz)")

    prototypes = class_prototypes(seed, params.separability)
    session = subject_session(spec, subject, seed, params.separability)
    streams = [np.random.default_rng(s) for s in seed_sequence(seed, spec, subject, file_index).spawn(6)]
    timing_rng, envelope_rng, emg_rng, noise_rng, drift_rng, glove_rng = streams

    protocol = _lay_out_protocol(spec, subject, exercise, params, fs, timing_rng)
    envelopes = muscle_envelopes(protocol, prototypes, session, spec.amputee, fs, envelope_rng)
    if spec.already_rectified:
        emg = otto_bock_emg(envelopes, session, fs, noise_rng)
    else:
        emg = surface_emg(envelopes, session, fs, params.mains_hz, emg_rng, noise_rng)
    del envelopes
    apply_electrode_drift(emg, protocol, drift_rng)
    if spec.already_rectified:
        np.minimum(emg, OTTO_BOCK_SATURATION_V, out=emg)  # the electrode's output stage saturates
    else:
        digitise(emg)
    emg[list(dead)] = 0.0
    glove = glove_angles(protocol, prototypes, session, fs, glove_rng)

    labels = _label_tracks(protocol, params.rerepetition_in_rest)
    # Channel-major arrays transposed: Fortran-ordered (N, channels), which savemat writes without a copy.
    return {
        "emg": emg.T,
        "stimulus": labels["stimulus"],
        "glove": glove.T,
        "subject": np.array([[subject]], dtype=np.float64),
        "exercise": np.array([[file_index]], dtype=np.float64),
        "repetition": labels["repetition"],
        "restimulus": labels["restimulus"],
        "rerepetition": labels["rerepetition"],
    }


def write_subject_file(
    spec: DatabaseSpec, subject: int, exercise: str, path: Path, params: SyntheticParams, seed: int
) -> Path:
    """Generate one recording and write it to ``path`` atomically; returns ``path``."""
    path = Path(path)
    variables = generate_recording(spec, subject, exercise, params, seed)
    atomic_write(path, lambda stream: _write_mat(stream, variables, params.compress))
    return path


def write_subject(
    spec: DatabaseSpec, subject: int, exercises: list[str], out_dir: Path, params: SyntheticParams, seed: int
) -> list[Path]:
    """One file per exercise in ``out_dir``, named as NinaPro names it (``spec.file_name``)."""
    out_dir = Path(out_dir)
    return [
        write_subject_file(spec, subject, exercise, out_dir / spec.file_name(subject, exercise), params, seed)
        for exercise in exercises
    ]


def _dead_electrodes(spec: DatabaseSpec, subject: int, params: SyntheticParams) -> tuple[int, ...]:
    dead = tuple(sorted(set(spec.missing_electrodes.get(subject, ())) | set(params.dead_electrodes)))
    out_of_range = [c for c in dead if not 0 <= c < spec.n_channels]
    if out_of_range:
        raise InputError(f"dead electrodes {out_of_range} are outside {spec.name}'s columns 0-{spec.n_channels - 1}")
    return dead


# ---------------------------------------------------------------------------------------------------------------
# Protocol and labels


def _lay_out_protocol(
    spec: DatabaseSpec, subject: int, exercise: str, params: SyntheticParams, fs: float, rng: np.random.Generator
) -> Protocol:
    first_label = spec.first_label[spec.file_index(exercise)]
    missing = set(spec.missing_movements.get(subject, ()))
    names = movement_names(exercise)
    performed = [(name, first_label + i) for i, name in enumerate(names) if name not in missing]
    reps = spec.repetitions
    n_movement, n_rest = round(params.movement_s * fs), round(params.rest_s * fs)
    n_total = len(performed) * reps

    cue_start = n_rest + np.arange(n_total) * (n_movement + n_rest)  # a leading rest, then cue + rest blocks
    cue_end = cue_start + n_movement
    start = cue_start + np.round(rng.uniform(*REACTION_DELAY_S, size=n_total) * fs).astype(int)
    end = cue_end - np.round(rng.uniform(*EARLY_END_S, size=n_total) * fs).astype(int)
    return Protocol(
        n_samples=n_rest + n_total * (n_movement + n_rest),
        movement=[name for name, _ in performed for _ in range(reps)],
        label=np.repeat([label for _, label in performed], reps),
        number=np.tile(np.arange(1, reps + 1), len(performed)),
        cue_start=cue_start,
        cue_end=cue_end,
        start=start,
        end=end,
    )


def _label_tracks(protocol: Protocol, rerepetition_in_rest: str) -> dict[str, np.ndarray]:
    """NinaPro's four label columns, uint8 (N, 1)."""
    names = ("stimulus", "repetition", "restimulus", "rerepetition")
    tracks = {name: np.zeros(protocol.n_samples, dtype=np.uint8) for name in names}
    for i in range(len(protocol.label)):
        cue = slice(protocol.cue_start[i], protocol.cue_end[i])
        moving = slice(protocol.start[i], protocol.end[i])
        tracks["stimulus"][cue], tracks["repetition"][cue] = protocol.label[i], protocol.number[i]
        tracks["restimulus"][moving], tracks["rerepetition"][moving] = protocol.label[i], protocol.number[i]
    if rerepetition_in_rest == "repetition":
        tracks["rerepetition"] = _carry_last_repetition(tracks["rerepetition"])
    return {name: track[:, None] for name, track in tracks.items()}


def _carry_last_repetition(rerepetition: np.ndarray) -> np.ndarray:
    """Rest samples take the number of the last repetition made; rest before the first movement takes 1."""
    positions = np.where(rerepetition > 0, np.arange(rerepetition.size), 0)
    last_moving = np.maximum.accumulate(positions)
    carried = rerepetition[last_moving]
    return np.where(carried > 0, carried, 1).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Writing


def _write_mat(stream: BinaryIO, variables: dict[str, np.ndarray], compress: bool) -> None:
    """A MATLAB v5 file whose bytes depend on the variables only.

    scipy.io.savemat writes each variable (uncompressed, format 5); its header text, which carries the creation
    date, is replaced by a fixed one. Compression is done here, as savemat would do it (one zlib stream per
    variable in a miCOMPRESSED element), but at zlib level 1: on digitised EMG savemat's level 6 takes about six
    times as long for a file only about 15 % smaller.
    """
    header_written = False
    for name, value in variables.items():
        single = io.BytesIO()
        scipy.io.savemat(single, {name: value}, format="5", do_compression=False, oned_as="column")
        with single.getbuffer() as written:
            if not header_written:
                # Keep savemat's version and byte-order marks, which follow the text.
                stream.write(MAT_HEADER_TEXT.ljust(MAT_HEADER_TEXT_BYTES, b" "))
                stream.write(written[MAT_HEADER_TEXT_BYTES:MAT_HEADER_BYTES])
                header_written = True
            element = written[MAT_HEADER_BYTES:]
            if compress:
                packed = zlib.compress(element, level=1)
                stream.write(np.array([MI_COMPRESSED, len(packed)], dtype=np.uint32).tobytes())
                stream.write(packed)
            else:
                stream.write(element)
