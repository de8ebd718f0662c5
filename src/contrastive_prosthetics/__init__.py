"""contrastive-prosthetics: contrastive sEMG gesture classifiers for prosthesis control on NinaPro.

The public API, importable from here::

    from contrastive_prosthetics import DB23, ContrastiveSampler, ContrastiveModel, Controller

The package is one folder per stage, each importing only from the stages before it: ``core`` (errors, atomic
writes), ``data`` (NinaPro files → tensor files), ``learning`` (the DB23 data API, models, training, AdaBN, LDA),
``evaluation`` (decisions, subset sizes, streams, zero-shot, tables), ``report`` (figures), ``realtime`` (the
controller, export, replay); ``cli`` and ``config`` on top. The names below load their stage on first use, so that
``import contrastive_prosthetics`` (and a dry run of the workflow) does not import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name → the module that defines it
PUBLIC_API = {
    "DB23": "learning.dataset",
    "Selection": "learning.dataset",
    "Normalisation": "learning.dataset",
    "ContrastiveSampler": "learning.sampling",
    "ContrastiveModel": "learning.models",
    "ClassifierModel": "learning.models",
    "ModelConfig": "learning.models",
    "build_model": "learning.models",
    "adapt_batchnorm": "learning.models",
    "load_model_file": "learning.model_file",
    "FrameScorer": "learning.inference",
    "decide": "learning.decisions",
    "Controller": "realtime.controller",
    "InputError": "core.errors",
}
__all__ = ["__version__", *PUBLIC_API]


def __getattr__(name: str):
    if name not in PUBLIC_API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{PUBLIC_API[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
