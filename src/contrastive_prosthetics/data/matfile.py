"""Reading and validating NinaPro .mat files, with errors that name the file, the field and what to do.

A source is a path to a ``.mat`` file or ``archive.zip::member.mat`` for a file still inside a NinaPro zip
(the ``local`` source reads archives in place instead of extracting gigabytes). Files are only ever read:
the raw data stay byte-for-byte as they were.
"""

from __future__ import annotations

import hashlib
import io
import logging
import mmap
import os
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import scipy.io

from ..core.errors import InputError
from .matmap import compressed_rows, mapped_variables
from .ninapro import GLOVE_CHANNELS

log = logging.getLogger(__name__)

ARCHIVE_SEPARATOR = "::"
LABEL_FIELDS = ("stimulus", "restimulus", "repetition", "rerepetition")
REQUIRED_FIELDS = ("emg", "restimulus", "rerepetition")


class MatFileError(InputError):
    """A raw file that cannot be used as it is; the message says which file, which field and what to do."""


@dataclass(frozen=True)
class Recording:
    """One NinaPro file's signals, checked and aligned (equal lengths, signed integer labels)."""

    source: str
    sha256: str  # "" when read with hash_file=False (the caller checks the digest)
    size: int
    emg: np.ndarray  # (samples, channels) float64
    glove: np.ndarray | None  # (samples, 22) float64, NaN where the file has no glove data; None: deferred
    stimulus: np.ndarray  # (samples,) int16; the cue. Falls back to restimulus when absent
    restimulus: np.ndarray  # (samples,) int16; the relabelled movement, which segments are cut from
    rerepetition: np.ndarray  # (samples,) int16
    glove_shape: tuple[int, ...]  # the glove's shape in the file (checked when a deferred glove is read)


def _open_source(source: str) -> tuple[BinaryIO, Callable[[], None]]:
    """A readable binary stream over the source and a function that closes everything it opened."""
    if ARCHIVE_SEPARATOR in source:
        archive, member = source.split(ARCHIVE_SEPARATOR, 1)
        try:
            with zipfile.ZipFile(archive) as zipped:
                stream = io.BytesIO(zipped.read(member))  # loadmat seeks; a zip member stream seeks slowly
        except (zipfile.BadZipFile, KeyError, OSError) as error:
            raise MatFileError(f"{source}: cannot read {member} from the archive ({error}); re-download it") from None
        return stream, stream.close
    try:
        stream = open(source, "rb")
    except OSError as error:
        raise MatFileError(f"{source}: cannot be read ({error.strerror}); check data.source and the path") from None
    return stream, stream.close


def _digest(source: str) -> tuple[str, int]:
    """SHA-256 and size of the source's bytes, computed beside the parser.

    A file is hashed through a memory map in one call, which releases the GIL for the whole file, so the
    hash runs on the second core while loadmat parses; chunked reads would queue behind the parser's GIL.
    """
    if ARCHIVE_SEPARATOR not in source:
        try:
            with open(source, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size == 0:
                    return hashlib.sha256(b"").hexdigest(), 0
                with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    return hashlib.sha256(mapped).hexdigest(), size
        except OSError as error:
            raise MatFileError(f"{source}: cannot be read ({error.strerror}); check data.source and the path") from None
    stream, close = _open_source(source)
    try:
        return hashlib.file_digest(stream, "sha256").hexdigest(), stream.tell()
    finally:
        close()


def _parse(source: str, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """The variables ``names`` of a source (all when None); loadmat skips the others without decompressing them."""
    stream, close = _open_source(source)
    try:
        return scipy.io.loadmat(stream, variable_names=names)
    except NotImplementedError:  # MATLAB v7.3 files are HDF5 containers
        stream.seek(0)
        return _load_v73(stream, source, names)
    except Exception as error:  # scipy raises ValueError, TypeError, zlib.error, ... for damaged files
        raise MatFileError(
            f"{source}: cannot be read as a MATLAB file ({type(error).__name__}: {error}); "
            "it is probably truncated or corrupt: delete it and download it again"
        ) from None
    finally:
        close()


def _load_v73(stream: BinaryIO, source: str, names: list[str] | None = None) -> dict[str, np.ndarray]:
    import h5py

    try:
        with h5py.File(stream, "r") as handle:
            # HDF5 stores MATLAB's column-major arrays transposed.
            return {
                name: np.asarray(handle[name]).T
                for name in handle
                if isinstance(handle[name], h5py.Dataset) and (names is None or name in names)
            }
    except OSError as error:
        raise MatFileError(f"{source}: cannot be read as a MATLAB v7.3 file ({error}); download it again") from None


def _shapes(source: str) -> dict[str, tuple[int, ...]]:
    """Each variable's shape, from the headers alone (v5 files; {} for others, which are then read whole)."""
    if ARCHIVE_SEPARATOR in source:
        return {}
    try:
        return {name: shape for name, shape, _ in scipy.io.whosmat(source)}
    except Exception:  # v7.3, damaged, ...: the full parse reports what is wrong
        return {}


def checked_digest(source: str, expected_sha256: str | None = None) -> tuple[str, int]:
    """SHA-256 and size of a source, checked against ``expected_sha256`` (recorded when it was downloaded)."""
    sha256, size = _digest(source)
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise MatFileError(
            f"{source}: sha256 {sha256} differs from {expected_sha256} recorded when it was downloaded; "
            "the file changed on disk: delete the subject's folder and run again to re-download"
        )
    return sha256, size


def read_fields(
    source: str, expected_sha256: str | None = None, names: list[str] | None = None, hash_file: bool = True
) -> tuple[dict[str, np.ndarray], str, int]:
    """Parse a source's variables ``names`` (all when None) and hash the whole file at the same time (two cores,
    one pass of wall time); check the digest. ``hash_file=False`` parses only (digest "" and size 0): the
    caller checks the digest itself, with :func:`checked_digest`.

    A digest that differs from ``expected_sha256`` is reported in preference to any parse error, since it
    explains it.
    """
    if not hash_file:
        return _parse(source, names), "", 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(checked_digest, source, expected_sha256)
        try:
            fields, parse_error = _parse(source, names), None
        except MatFileError as error:
            fields, parse_error = {}, error
        sha256, size = digest.result()  # a mismatch is raised here, before the parse error it explains
    if parse_error is not None:
        raise parse_error
    return fields, sha256, size


def _labels(fields: dict, name: str, source: str) -> np.ndarray:
    values = np.asarray(fields[name])
    if values.ndim != 2 or 1 not in values.shape:
        raise MatFileError(f"{source}: field '{name}' has shape {values.shape}; NinaPro labels are (samples, 1)")
    return values.reshape(-1).astype(np.int16)  # uint8 in the files: subtraction must not wrap around


def load_recording(
    source: str | Path,
    n_channels: int,
    *,
    max_length_mismatch: int,
    expected_sha256: str | None = None,
    defer_glove: bool = False,
    hash_file: bool = True,
) -> Recording:
    """Read one NinaPro file, validate it and return its aligned signals.

    Real DB2 files carry label vectors a few samples longer or shorter than ``emg``; up to
    ``max_length_mismatch`` samples are truncated with a warning, more is an error. ``expected_sha256``
    (recorded when the file was downloaded) is checked before the file is parsed. ``defer_glove`` leaves the
    glove (the largest variable of a DB2 file) unread, to be read later with :func:`load_glove`, so that the EMG
    can be processed while it is read; its shape is checked now, from the file's headers. Sources whose headers
    cannot be read apart (archive members, v7.3 files) are read whole. In uncompressed files EMG and glove are
    memory maps of the file (:mod:`.matmap`), so deferring costs nothing there. ``hash_file=False`` leaves the
    digest to the caller (see :func:`read_fields`), so that it can run beside the processing.
    """
    source = str(source)
    fields, shapes, deferred, sha256, size = _read_variables(source, expected_sha256, defer_glove, hash_file)
    emg = _checked_emg(source, fields, n_channels)
    labels = {name: _labels(fields, name, source) for name in LABEL_FIELDS if name in fields}
    labels.setdefault("stimulus", labels["restimulus"])
    glove, glove_shape = _glove(source, fields, shapes, deferred, len(emg))
    lengths = {"emg": len(emg), "glove": glove_shape[0]} | {name: len(values) for name, values in labels.items()}
    shortest = _common_length(source, lengths, max_length_mismatch)
    emg = emg[:shortest]
    _check_finite(source, emg)
    return Recording(
        source=source,
        sha256=sha256,
        size=size,
        emg=emg,
        glove=None if glove is None else glove[:shortest],
        stimulus=labels["stimulus"][:shortest],
        restimulus=labels["restimulus"][:shortest],
        rerepetition=labels["rerepetition"][:shortest],
        glove_shape=glove_shape,
    )


def _read_variables(
    source: str, expected_sha256: str | None, defer_glove: bool, hash_file: bool
) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, ...]], bool, str, int]:
    """(the file's variables, their shapes from its headers ({} when not read), whether the glove was deferred,
    sha256, size): see :func:`load_recording`."""
    # EMG and glove of an uncompressed file are mapped, not copied (see .matmap); loadmat reads the rest.
    mapped = mapped_variables(source, ["emg", "glove"]) if ARCHIVE_SEPARATOR not in source else {}
    shapes = _shapes(source) if defer_glove or mapped else {}
    skipped = set(mapped) | ({"glove"} if defer_glove else set())
    names = [name for name in shapes if name not in skipped] if shapes else None
    fields, sha256, size = read_fields(source, expected_sha256, names, hash_file)
    fields.update(mapped)
    deferred = names is not None and "glove" in shapes and "glove" not in fields
    return fields, shapes, deferred, sha256, size


def _checked_emg(
    source: str, fields: dict[str, np.ndarray], n_channels: int, required: tuple[str, ...] = REQUIRED_FIELDS
) -> np.ndarray:
    """The EMG (samples, channels) float64, once the file is known to hold every ``required`` field and as many EMG
    channels as the database has."""
    missing = [name for name in required if name not in fields]
    if missing:
        present = sorted(k for k in fields if not k.startswith("__"))
        raise MatFileError(
            f"{source}: missing field(s) {missing} (the file has {present}); "
            "this is not a NinaPro recording, or a wrong or damaged download"
        )
    emg = np.asarray(fields["emg"], dtype=np.float64)
    if emg.ndim != 2 or emg.shape[1] != n_channels:
        raise MatFileError(
            f"{source}: field 'emg' has shape {emg.shape}, expected (samples, {n_channels}); "
            "is the file from the database named in the config?"
        )
    return emg


def _glove(
    source: str, fields: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], deferred: bool, n_samples: int
) -> tuple[np.ndarray | None, tuple[int, ...]]:
    """(the glove, or None when deferred; its shape in the file, checked). A file without one has NaN angles: no
    glove data, which the conversion masks."""
    if deferred:
        glove, glove_shape = None, shapes["glove"]
    elif "glove" in fields:
        glove = np.asarray(fields["glove"], dtype=np.float64)
        glove_shape = glove.shape
    else:
        glove, glove_shape = np.full((n_samples, GLOVE_CHANNELS), np.nan), (n_samples, GLOVE_CHANNELS)
    _check_glove_shape(source, glove_shape)
    return glove, glove_shape


def _common_length(source: str, lengths: dict[str, int], max_length_mismatch: int) -> int:
    """The length every field is truncated to: the shortest, when they differ by no more than
    ``max_length_mismatch`` samples (real DB2 files do, by a few)."""
    shortest, longest = min(lengths.values()), max(lengths.values())
    if longest - shortest > max_length_mismatch:
        raise MatFileError(
            f"{source}: fields differ in length by {longest - shortest} samples ({lengths}), more than "
            f"preprocess.max_length_mismatch = {max_length_mismatch}; the file is damaged: download it again"
        )
    if longest != shortest:
        log.warning("%s: fields differ in length %s; truncating all to %d samples", source, lengths, shortest)
    return shortest


def _check_finite(source: str, emg: np.ndarray) -> None:
    """An error naming the first NaN or Inf sample of the EMG: a damaged recording."""
    # A sum is finite exactly when every value is (barring overflow, which the full check below catches),
    # and costs no 50 MB mask on the common, clean path.
    bad = ~np.isfinite(emg) if not np.isfinite(emg.sum()) else None
    if bad is not None and bad.any():
        row, column = np.argwhere(bad)[0]
        raise MatFileError(
            f"{source}: field 'emg' holds {int(bad.sum())} NaN/Inf values (first at sample {row}, channel {column}); "
            "the recording is damaged: download it again or leave this subject out of the config"
        )


def load_emg(source: str | Path, n_channels: int) -> np.ndarray:
    """A NinaPro-format file's EMG (samples, channels) float64 alone, checked as :func:`load_recording` checks it;
    the file's labels are not read and need not be there (a user's unlabelled recording)."""
    source = str(source)
    mapped = mapped_variables(source, ["emg"]) if ARCHIVE_SEPARATOR not in source else {}
    fields = mapped or read_fields(source, names=["emg"], hash_file=False)[0]
    emg = _checked_emg(source, fields, n_channels, required=("emg",))
    _check_finite(source, emg)
    return emg


def load_glove(recording: Recording) -> np.ndarray:
    """The glove of a recording read with ``defer_glove`` (as read, when it was not), truncated as its other
    fields were: (samples, 22) float64."""
    if recording.glove is not None:
        return recording.glove
    glove = np.asarray(_parse(recording.source, ["glove"])["glove"], dtype=np.float64)
    _check_unchanged_glove(recording, glove.shape)
    return glove[: len(recording.emg)]


def glove_rows(recording: Recording, rows: np.ndarray) -> np.ndarray:
    """The glove of a recording at ``rows`` (sorted sample indices), (len(rows), 22) float64. A deferred glove of
    a compressed file is decompressed in chunks keeping only those rows (:func:`.matmap.compressed_rows`), so the
    whole array is never allocated; otherwise it is read as :func:`load_glove` reads it."""
    if recording.glove is None and ARCHIVE_SEPARATOR not in recording.source:
        streamed = compressed_rows(recording.source, "glove", rows)
        if streamed is not None:
            values, shape = streamed
            _check_unchanged_glove(recording, shape)
            return values
    return load_glove(recording)[rows]


def _check_unchanged_glove(recording: Recording, shape: tuple[int, ...]) -> None:
    """A deferred glove must have the shape its header gave when the rest of the file was read."""
    if shape != recording.glove_shape:
        raise MatFileError(
            f"{recording.source}: field 'glove' has shape {shape} but its header said "
            f"{recording.glove_shape}; the file changed while it was read: run again"
        )


def _check_glove_shape(source: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 2 or shape[1] != GLOVE_CHANNELS:
        raise MatFileError(
            f"{source}: field 'glove' has shape {tuple(shape)}, expected (samples, {GLOVE_CHANNELS}) joint angles "
            "of a CyberGlove; remove the field or fix the file"
        )
