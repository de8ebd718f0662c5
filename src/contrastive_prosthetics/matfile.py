"""Reading and validating NinaPro .mat files, with errors that name the file, the field and what to do.

A source is a path to a ``.mat`` file or ``archive.zip::member.mat`` for a file still inside a NinaPro zip
(the ``local`` source reads archives in place instead of extracting gigabytes). Files are only ever read:
the raw data stay byte-for-byte as they were.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

log = logging.getLogger(__name__)

ARCHIVE_SEPARATOR = "::"
LABEL_FIELDS = ("stimulus", "restimulus", "repetition", "rerepetition")
REQUIRED_FIELDS = ("emg", "restimulus", "rerepetition")


class MatFileError(ValueError):
    """A raw file that cannot be used as it is; the message says which file, which field and what to do."""


@dataclass(frozen=True)
class Recording:
    """One NinaPro file's signals, checked and aligned (equal lengths, signed integer labels)."""

    source: str
    sha256: str
    size: int
    emg: np.ndarray  # (samples, channels) float64
    glove: np.ndarray  # (samples, 22) float64, NaN where the file has no glove data
    stimulus: np.ndarray  # (samples,) int16; the cue. Falls back to restimulus when absent
    restimulus: np.ndarray  # (samples,) int16; the relabelled movement, which segments are cut from
    rerepetition: np.ndarray  # (samples,) int16


def read_source_bytes(source: str | Path) -> bytes:
    """The bytes of a .mat file, or of a member of a zip given as ``archive.zip::member``."""
    source = str(source)
    if ARCHIVE_SEPARATOR in source:
        archive, member = source.split(ARCHIVE_SEPARATOR, 1)
        try:
            with zipfile.ZipFile(archive) as zipped:
                return zipped.read(member)
        except (zipfile.BadZipFile, KeyError, OSError) as error:
            raise MatFileError(f"{source}: cannot read {member} from the archive ({error}); re-download it") from None
    try:
        return Path(source).read_bytes()
    except OSError as error:
        raise MatFileError(f"{source}: cannot be read ({error.strerror}); check data.source and the path") from None


def _load_v5(data: bytes, source: str) -> dict[str, np.ndarray]:
    try:
        return scipy.io.loadmat(io.BytesIO(data))
    except NotImplementedError:  # MATLAB v7.3 files are HDF5 containers
        return _load_v73(data, source)
    except Exception as error:  # scipy raises ValueError, TypeError, zlib.error, ... for damaged files
        raise MatFileError(
            f"{source}: cannot be read as a MATLAB file ({type(error).__name__}: {error}); "
            "it is probably truncated or corrupt: delete it and download it again"
        ) from None


def _load_v73(data: bytes, source: str) -> dict[str, np.ndarray]:
    import h5py

    try:
        with h5py.File(io.BytesIO(data), "r") as handle:
            # HDF5 stores MATLAB's column-major arrays transposed.
            return {name: np.asarray(handle[name]).T for name in handle if isinstance(handle[name], h5py.Dataset)}
    except OSError as error:
        raise MatFileError(f"{source}: cannot be read as a MATLAB v7.3 file ({error}); download it again") from None


def _labels(fields: dict, name: str, source: str) -> np.ndarray:
    values = np.asarray(fields[name])
    if values.ndim != 2 or 1 not in values.shape:
        raise MatFileError(f"{source}: field '{name}' has shape {values.shape}; NinaPro labels are (samples, 1)")
    return values.reshape(-1).astype(np.int16)  # uint8 in the files: subtraction must not wrap around


def load_recording(source: str | Path, n_channels: int, *, max_length_mismatch: int) -> Recording:
    """Read one NinaPro file, validate it and return its aligned signals.

    Real DB2 files carry label vectors a few samples longer or shorter than ``emg``; up to
    ``max_length_mismatch`` samples are truncated with a warning, more is an error.
    """
    source = str(source)
    data = read_source_bytes(source)
    fields = _load_v5(data, source)
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
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
    labels = {name: _labels(fields, name, source) for name in LABEL_FIELDS if name in fields}
    labels.setdefault("stimulus", labels["restimulus"])
    glove = np.asarray(fields["glove"], dtype=np.float64) if "glove" in fields else np.full((len(emg), 22), np.nan)

    lengths = {"emg": len(emg), "glove": len(glove)} | {name: len(values) for name, values in labels.items()}
    shortest, longest = min(lengths.values()), max(lengths.values())
    if longest - shortest > max_length_mismatch:
        raise MatFileError(
            f"{source}: fields differ in length by {longest - shortest} samples ({lengths}), more than "
            f"preprocess.max_length_mismatch = {max_length_mismatch}; the file is damaged: download it again"
        )
    if longest != shortest:
        log.warning("%s: fields differ in length %s; truncating all to %d samples", source, lengths, shortest)

    emg = emg[:shortest]
    bad = ~np.isfinite(emg)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise MatFileError(
            f"{source}: field 'emg' holds {int(bad.sum())} NaN/Inf values (first at sample {row}, channel {column}); "
            "the recording is damaged: download it again or leave this subject out of the config"
        )
    return Recording(
        source=source,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        emg=emg,
        glove=glove[:shortest],
        stimulus=labels["stimulus"][:shortest],
        restimulus=labels["restimulus"][:shortest],
        rerepetition=labels["rerepetition"][:shortest],
    )
