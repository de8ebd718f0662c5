"""Large numeric variables of an uncompressed MATLAB v5 file, mapped from the file instead of copied.

``scipy.io.loadmat`` copies every array into fresh memory. For an uncompressed DB2 file (about 530 MB) the
kernel must then fault in and zero one page per 4 KiB, which costs more than the copy itself. An uncompressed,
real, numeric variable is one column-major block in the file, so a read-only memory map of that block holds the
same values, bit for bit, read from the page cache only where they are used: conversion reads each EMG channel
once and the glove at the frame ends only.

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
from scipy.io.matlab import _mio5, _mio5_params
from scipy.io.matlab._miobase import _get_matfile_version

# MATLAB class → (the data element type that stores it unconverted, numpy type).
_STORED_AS = {
    _mio5_params.mxDOUBLE_CLASS: (_mio5_params.miDOUBLE, "f8"),
    _mio5_params.mxSINGLE_CLASS: (_mio5_params.miSINGLE, "f4"),
    _mio5_params.mxINT16_CLASS: (_mio5_params.miINT16, "i2"),
    _mio5_params.mxUINT8_CLASS: (_mio5_params.miUINT8, "u1"),
}
_TAG_BYTES = 8


def mapped_variables(path: str, names: list[str]) -> dict[str, np.ndarray]:
    """The variables among ``names`` that can be mapped (possibly none), as read-only memory maps of the file;
    the caller reads the others, and any variable of a file this cannot parse, with loadmat."""
    try:
        with open(path, "rb") as handle:
            if _get_matfile_version(handle)[0] != 1:  # v4 and v7.3 (HDF5) files are not v5
                return {}
            return _mapped(path, handle, set(names))
    except Exception:  # a damaged or unusual file: loadmat reads it, or says what is wrong with it
        return {}


def _mapped(path: str, handle, wanted: set[str]) -> dict[str, np.ndarray]:
    reader = _mio5.MatFile5Reader(handle)
    handle.seek(0)
    reader.initialize_read()
    reader.read_file_header()
    order = reader.byte_order
    size = os.fstat(handle.fileno()).st_size
    found = {}
    while wanted - found.keys() and handle.tell() + _TAG_BYTES <= size:
        start = handle.tell()
        element_type, length = np.frombuffer(handle.read(_TAG_BYTES), dtype=f"{order}u4")
        if element_type != _mio5_params.miMATRIX:  # miCOMPRESSED (or anything else): loadmat's job
            handle.seek(start + _TAG_BYTES + int(length))
            continue
        handle.seek(start)
        header, next_position = reader.read_var_header()
        name = header.name.decode("latin1")
        if name in wanted and header.mclass in _STORED_AS and not header.is_logical:
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
        handle.seek(next_position)
    return found
