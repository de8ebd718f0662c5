"""The one loader of saved torch files: a missing or damaged file is an InputError naming the file, what it should be
and what to do; a module path renamed since the file was written is looked up under its new name."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest
import torch

from contrastive_prosthetics.core.atomic import atomic_torch_save
from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.core.torch_file import load_torch_file

MISSING, UNREADABLE = "not found; make it first", "delete it and make it again"


def test_a_saved_payload_loads_on_the_cpu(tmp_path):
    atomic_torch_save({"x": torch.arange(3)}, tmp_path / "a.pt")
    loaded = load_torch_file(tmp_path / "a.pt", "a test file", MISSING, UNREADABLE)
    assert torch.equal(loaded["x"], torch.arange(3)) and loaded["x"].device.type == "cpu"


def test_a_missing_file_is_named_with_what_to_do(tmp_path):
    with pytest.raises(InputError, match=r"absent\.pt: not found; make it first$"):
        load_torch_file(tmp_path / "absent.pt", "a test file", MISSING, UNREADABLE)


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_truncated_or_foreign_file_is_named_with_what_it_should_be_and_what_to_do(tmp_path, damage):
    path = tmp_path / "a.pt"
    atomic_torch_save({"x": torch.arange(1000)}, path)
    path.write_bytes(path.read_bytes()[:200] if damage == "truncated" else b"not a torch file")
    expected = r"a\.pt: cannot be read as a test file \(\w+: .*\); delete it and make it again"
    with pytest.raises(InputError, match=expected):
        load_torch_file(path, "a test file", MISSING, UNREADABLE)


@dataclass
class Point:
    x: int


def test_a_class_pickled_under_a_renamed_module_loads_from_its_new_home(tmp_path):
    old = types.ModuleType("old_home")
    old.Point = type("Point", (), {"__module__": "old_home", "__qualname__": "Point"})
    sys.modules["old_home"] = old
    try:
        point = old.Point()
        point.x = 3
        atomic_torch_save({"point": point}, tmp_path / "a.pt")
    finally:
        del sys.modules["old_home"]
    with pytest.raises(InputError, match="cannot be read as a test file"):  # the old module is gone
        load_torch_file(tmp_path / "a.pt", "a test file", MISSING, UNREADABLE)
    loaded = load_torch_file(tmp_path / "a.pt", "a test file", MISSING, UNREADABLE, {"old_home": __name__})
    assert isinstance(loaded["point"], Point) and loaded["point"].x == 3
