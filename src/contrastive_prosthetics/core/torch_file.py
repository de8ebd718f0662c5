"""The one loader of a saved torch file (tensor files, model.pt, logits.pt): on the CPU, with a missing or
unreadable file turned into an :class:`.errors.InputError` that names the file, what it should be and what to do.

``renamed_modules`` maps a module path pickled by an older version to the module that holds its classes now, so
that files written before a module was renamed keep loading.
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path

import torch

from .errors import InputError


def _renaming_pickle(renamed_modules: dict[str, str]) -> types.ModuleType:
    """A stand-in for the ``pickle`` module whose unpickler looks classes up under their module's new path."""

    class RenamingUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            return super().find_class(renamed_modules.get(module, module), name)

    module = types.ModuleType("renaming_pickle")  # torch.load asks its pickle module for a __name__
    module.Unpickler = RenamingUnpickler
    module.load = lambda stream, **settings: RenamingUnpickler(stream, **settings).load()
    return module


def load_torch_file(
    path: Path, what: str, missing: str, unreadable: str, renamed_modules: dict[str, str] | None = None
):
    """What ``torch.save`` wrote to ``path``, loaded on the CPU. A missing file: an ``InputError`` saying
    ``"<path>: <missing>"``; one torch cannot read (truncated, foreign): ``"<path>: cannot be read as <what>
    (<error>); <unreadable>"``."""
    path = Path(path)
    pickle_module = _renaming_pickle(renamed_modules) if renamed_modules else None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=pickle_module)
    except FileNotFoundError:
        raise InputError(f"{path}: {missing}") from None
    except Exception as error:  # a truncated or foreign file: torch raises several kinds
        raise InputError(f"{path}: cannot be read as {what} ({type(error).__name__}: {error}); {unreadable}") from None
