"""``model.pt``: the one home of its format."""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import InputError
from .dataset import Normalisation
from .models import ModelConfig, build_model


def load_model_file(path: Path) -> dict:
    """A network's ``model.pt`` with its ``network`` (eval mode) and ``normalisation_`` built."""
    saved = torch.load(Path(path), map_location="cpu", weights_only=False)
    if "state_dict" not in saved:
        raise InputError(f"{path}: not a network's model.pt (an LDA model cannot run in the controller)")
    model = build_model(ModelConfig(**saved["model_config"]))
    model.load_state_dict(saved["state_dict"])
    return saved | {"network": model.eval(), "normalisation_": Normalisation.from_state_dict(saved["normalisation"])}
