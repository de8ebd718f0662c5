"""The start an AdaBN model trained on other people offers a new user it has read nothing of (model.pt's
``calibration_free``; the calibration curve's ``none`` and :func:`..realtime.controller.calibration_free_start`).

An AdaBN model's running statistics after training are those of its last batches, one training subject each: no
one's. A user who has recorded nothing yet gets the statistics of the training subjects pooled, and a rest bias set
for them on people the model was not trained on: the validation subjects, scored with those statistics as they are
(no adaptation: they too are people the model read nothing of).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from ..core.errors import InputError
from .adaptation import pooled_network
from .models import batchnorm_statistics, set_batchnorm_statistics
from .rest_bias import setting_rest_calibration

if TYPE_CHECKING:
    from .onset_gate import OnsetGate
    from .train import Setting


def calibration_free(setting: Setting, model: torch.nn.Module, gate: OnsetGate | None, fold: dict) -> dict | None:
    """How an AdaBN model trained on other people starts for a new user it has read nothing of (``subjects`` folds;
    None otherwise): batch-norm statistics pooled over the training subjects (:func:`.adaptation.pooled_network`)
    and the rest bias that meets the target on the validation subjects scored with those statistics as they are
    (no adaptation: they too are people the model read nothing of)."""
    if not setting.adabn or fold["scheme"] != "subjects":
        return None
    limit = setting.settings.adaptation_frames
    pooled = pooled_network(model, setting.data, setting.selections.train, setting.config.context, limit)
    calibration = setting_rest_calibration(replace(setting, adabn=False, adaptation="none"), pooled, gate)
    return {
        "batchnorm": batchnorm_statistics(pooled),
        "rest_bias": 0.0 if calibration is None else calibration.bias,
        "calibration": None if calibration is None else calibration.as_dict(),
    }


def calibration_free_start(saved: dict, source: str) -> dict:
    """``saved`` (a model.pt as loaded) as its calibration-free start for a user it has read nothing of: the batch-norm
    statistics pooled over its training subjects and the rest bias set on its validation subjects under them
    (``calibration_free``, written by :func:`calibration_free` for an AdaBN model on a subjects fold), fixed
    (``adabn`` false): what the controller, ``calibrate --calibration-free`` and the calibration curve's ``none`` run.
    ``source`` names the file in the error when it has none."""
    free = saved.get("calibration_free")
    if free is None:
        raise InputError(
            f"{source}: field calibration_free is missing or None: only an AdaBN model trained on other people (a "
            "subjects fold) by this version has a calibration-free start; train it again, or adapt it to the user "
            "(--unlabelled, --adapt-on)"
        )
    network = copy.deepcopy(saved["network"])
    set_batchnorm_statistics(network, free["batchnorm"])
    fixed = {"adabn": False, "adaptation": "none", "adaptation_protocol": "none", "rest_bias": free["rest_bias"]}
    fixed["calibration"] = free["calibration"]
    return saved | {"network": network} | fixed
