"""Large numeric variables of MATLAB v5 files without loadmat's whole copies: mapped, or streamed by rows.

``scipy.io.loadmat`` copies every array into fresh memory. For an uncompressed DB2 file (about 530 MB) the
kernel must then fault in and zero one page per 4 KiB, which costs more than the copy itself. An uncompressed,
real, numeric variable is one column-major block in the file, so a read-only memory map of that block holds the
same values, bit for bit, read from the page cache only where they are used: conversion reads each EMG channel
once and the glove at the frame ends only. In a compressed file the glove (the largest variable of a DB2 file)
cannot be mapped, but it can be decompressed in small chunks that keep only the rows conversion needs, so the
whole array is never allocated.

Only plain 2-D arrays stored as their own class's type are mapped (a double array stored as doubles, ...).
Everything else is left to loadmat: compressed variables (as MATLAB writes by default), complex, sparse,
logical or cell arrays, and arrays that MATLAB stored in a narrower type than their class. The variable headers
are parsed by scipy's own v5 reader (``scipy.io.matlab._mio5``, private to the scipy version pinned in
requirements.lock; a test compares the mapped arrays with loadmat's on every run). A mapped file must not be
truncated while it is read: NinaPro's raw files are only ever read.
"""

from __future__ import annotations

import os

import numpy as np
from scipy.io.matlab import _mio5, _mio5_params, _streams
from scipy.io.matlab._miobase import _get_matfile_version

# MATLAB class → (the data element type that stores it unconverted, numpy type).
_STORED_AS = {
    _mio5_params.mxDOUBLE_CLASS: (_mio5_params.miDOUBLE, "f8"),
    _mio5_params.mxSINGLE_CLASS: (_mio5_params.miSINGLE, "f4"),
    _mio5_params.mxINT16_CLASS: (_mio5_params.miINT16, "i2"),
    _mio5_params.mxUINT8_CLASS: (_mio5_params.miUINT8, "u1"),
}
_TAG_BYTES = 8
_CHUNK_VALUES = 1 << 17  # 1 MiB of doubles per decompressed chunk: small enough to stay in cache


def mapped_variables(path: str, names: list[str]) -> dict[str, np.ndarray]:
    """The variables among ``names`` that can be mapped (possibly none), as read-only memory maps of the file;
    the caller reads the others, and any variable of a file this cannot parse, with loadmat."""
    return _read_v5(path, lambda handle: _mapped(path, handle, set(names)), {})


def compressed_rows(path: str, name: str, rows: np.ndarray) -> tuple[np.ndarray, tuple[int, int]] | None:
    """Rows ``rows`` (sorted, within the array) of the compressed 2-D double variable ``name``, decompressed in
    chunks and never held whole, with the variable's shape; None when it is not such a variable (the caller
    reads it with loadmat)."""
    return _read_v5(path, lambda handle: _compressed_rows(handle, name, np.asarray(rows, dtype=np.int64)), None)


def _read_v5(path: str, read, otherwise):
    """``read(handle)`` on a v5 file; ``otherwise`` for other versions and for any file it cannot parse."""
    try:
        with open(path, "rb") as handle:
            if _get_matfile_version(handle)[0] != 1:  # v4 and v7.3 (HDF5) files are not v5
                return otherwise
            return read(handle)
    except Exception:  # a damaged or unusual file: loadmat reads it, or says what is wrong with it
        return otherwise


def _elements(handle):
    """(reader, start, type, length) of each top-level data element (one per variable), the handle just after
    the element's tag; whatever the caller reads, the next element is found from the tag."""
    reader = _mio5.MatFile5Reader(handle)
    handle.seek(0)
    reader.initialize_read()
    reader.read_file_header()
    size = os.fstat(handle.fileno()).st_size
    while handle.tell() + _TAG_BYTES <= size:
        start = handle.tell()
        element_type, length = np.frombuffer(handle.read(_TAG_BYTES), dtype=f"{reader.byte_order}u4")
        yield reader, start, int(element_type), int(length)
        handle.seek(start + _TAG_BYTES + int(length))


def _mapped(path: str, handle, wanted: set[str]) -> dict[str, np.ndarray]:
    found = {}
    for reader, start, element_type, _ in _elements(handle):
        if not wanted - found.keys():
            break
        if element_type != _mio5_params.miMATRIX:  # miCOMPRESSED (or anything else): loadmat's job
            continue
        handle.seek(start)
        header, next_position = reader.read_var_header()
        name = header.name.decode("latin1")
        if name in wanted and header.mclass in _STORED_AS and not header.is_logical:
            order = reader.byte_order
            stored_type, code = _STORED_AS[header.mclass]
            element_type, length = np.frombuffer(handle.read(_TAG_BYTES), dtype=f"{order}u4")
            shape = tuple(int(d) for d in header.dims)
            dtype = np.dtype(f"{order}{code}")
            offset = handle.tell()
            padded_end = offset + -(-int(length) // _TAG_BYTES) * _TAG_BYTES
            # The real part ends the variable: a complex one has its imaginary part after it.
            if (
                element_type == stored_type
                and len(shape) == 2
                and length == np.prod(shape) * dtype.itemsize
                and padded_end == next_position
            ):
                found[name] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F")
    return found


def _compressed_rows(handle, name: str, rows: np.ndarray) -> tuple[np.ndarray, tuple[int, int]] | None:
    for reader, _, element_type, length in _elements(handle):
        if element_type != _mio5_params.miCOMPRESSED:
            continue
        # What read_var_header does for a compressed variable, keeping hold of the decompressing stream.
        stream = _streams.ZlibInputStream(handle, length)
        reader._matrix_reader.set_stream(stream)
        matrix_type, _ = reader._matrix_reader.read_full_tag()
        if matrix_type == _mio5_params.miMATRIX:
            header = reader._matrix_reader.read_header(False)
            if header.name.decode("latin1") == name:
                return _rows_of(stream, header, reader.byte_order, rows)
    return None


def _rows_of(stream, header, order: str, rows: np.ndarray) -> tuple[np.ndarray, tuple[int, int]] | None:
    shape = tuple(int(d) for d in header.dims)
    if header.mclass != _mio5_params.mxDOUBLE_CLASS or header.is_logical or len(shape) != 2:
        return None
    element_type, length = np.frombuffer(stream.read(_TAG_BYTES), dtype=f"{order}u4")
    n, columns = shape
    if element_type != _mio5_params.miDOUBLE or length != n * columns * 8 or (len(rows) and rows[-1] >= n):
        return None
    # Column-major: value k is row k % n of column k // n. The wanted values' positions, in file order.
    wanted = (np.arange(columns)[:, None] * n + rows[None, :]).ravel()
    picked = np.empty(len(wanted))
    for first in range(0, n * columns, _CHUNK_VALUES):
        count = min(_CHUNK_VALUES, n * columns - first)
        values = np.frombuffer(stream.read(count * 8), dtype=f"{order}f8")
        lo, hi = np.searchsorted(wanted, (first, first + count))
        picked[lo:hi] = values[wanted[lo:hi] - first]
    if not stream.all_data_read():  # more than the real part: a complex array, which loadmat must read
        return None
    return picked.reshape(columns, len(rows)).T, shape
