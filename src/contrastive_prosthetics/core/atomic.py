"""The one atomic writer: every output is either absent or complete, never half-written, whatever interrupts
the job (tensors, models, tables, figures, synthetic .mat files, extracted downloads, manifests).

The content goes to a temporary file beside the target, which is renamed over it only once complete. The
temporary file is created with mode 0666 filtered by the process's umask, the permissions any new file gets
(``tempfile.mkstemp`` would make it readable by its owner only, which breaks shared project folders on
clusters).
"""

from __future__ import annotations

import csv
import io
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

NEW_FILE_MODE = 0o666  # what open(path, "w") asks for; the umask takes away the rest


def _create_temporary(path: Path) -> tuple[int, Path]:
    """An exclusively created, empty file beside ``path``: (descriptor, path)."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE), temporary
        except FileExistsError:  # another writer drew the same name: draw again
            continue


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write`` on a binary stream over a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _create_temporary(path)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(payload: dict, path: Path) -> None:
    import torch  # here, so that writers of .mat files and manifests do not load torch

    # Saving through a stream (not a path) names the archive's records "archive/..." rather than after the
    # temporary file, so equal payloads give byte-identical files.
    atomic_write(path, lambda stream: torch.save(payload, stream))


def atomic_write_tsv(rows: list[dict], path: Path) -> None:
    """Rows of equal keys as a tab-separated table with a header."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def atomic_write_frame(frame, path: Path) -> None:
    """A pandas DataFrame as a tab-separated table with a header and no index."""
    atomic_write(path, lambda stream: frame.to_csv(stream, sep="\t", index=False))
