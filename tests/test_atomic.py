"""The one atomic writer: complete files only, the permissions the umask gives any new file."""

from __future__ import annotations

import os
import stat

import pytest
from conftest import DEFAULT_CONFIG

from contrastive_prosthetics.core.atomic import atomic_torch_save, atomic_write, atomic_write_text, atomic_write_tsv
from contrastive_prosthetics.data.archives import FileRecord, write_manifest
from contrastive_prosthetics.data.ninapro import DB1
from contrastive_prosthetics.data.synthetic import SyntheticParams, write_subject_file

WRITERS = {
    "text": lambda path: atomic_write_text(path, "x"),
    "tensor": lambda path: atomic_torch_save({"a": 1}, path),
    "table": lambda path: atomic_write_tsv([{"a": 1}], path),
    "manifest": lambda path: write_manifest(path, FileRecord("a.zip", 1, "0" * 64), "http://x/a.zip", []),
    "synthetic .mat": lambda path: write_subject_file(
        DB1, 1, "A", path, SyntheticParams(**DEFAULT_CONFIG["synthetic"]), seed=0
    ),
}


@pytest.fixture
def umask():
    def set_umask(value: int) -> None:
        os.umask(value)

    previous = os.umask(0o022)
    yield set_umask
    os.umask(previous)


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_outputs_get_the_permissions_the_umask_gives_a_new_file(tmp_path, umask, writer, mask):
    umask(mask)
    WRITERS[writer](tmp_path / "out")
    with open(tmp_path / "plain", "w"):
        pass
    mode = stat.S_IMODE((tmp_path / "out").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o666 & ~mask


def test_an_interrupted_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    def fail(stream):
        stream.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "out", fail)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_whole(tmp_path):
    atomic_write_text(tmp_path / "out", "old contents")
    atomic_write_text(tmp_path / "out", "new")
    assert (tmp_path / "out").read_text() == "new" and len(list(tmp_path.iterdir())) == 1
