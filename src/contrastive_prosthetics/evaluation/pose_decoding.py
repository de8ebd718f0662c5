"""Pose decoding scored: how closely a pose-decoding model's decoded pose (``pose_decoder``) follows the glove on
frames it never trained on.

From its ``logits.pt`` (:mod:`..learning.logits`): every test frame's decoded pose and true glove, both in the
subject's standardised units (:mod:`..learning.glove`: each sensor centred and scaled by the subject's own training
repetitions, so that 1 is the spread of that person's glove and numbers compare across people). The frames are the
test repetitions' segment frames, the same the classification is scored on, each subject's grouped into sets:

    seen     the trained gestures' frames in the held-out test repetitions
    unseen   a zero-shot fold's held-out gestures' frames: neither their EMG nor their glove was trained on
    rest     the test repetitions' rest segments, apart: a still hand is easy, and its many frames would flatter
             the gestures' numbers

``pose_decoding.tsv`` has a row per subject and set (columns: :data:`.tables.OPTIONAL_COLUMNS`):

    mse               the squared error over the set's frames and the sensors with a target, standardised units
    mean_pose_mse     the same for a decoder that always says the subject's training mean (0): decoding nothing
    mean_correlation  Pearson's r of decoded and true pose over the set's frames, per sensor, averaged over sensors
    correlation_N     glove sensor N's r (1-based; NaN: the sensor has no target, or no spread in the set)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..core.atomic import atomic_write_frame
from ..core.errors import InputError
from ..data.ninapro import REST
from ..learning.logits import read_logits
from .tables import OPTIONAL_COLUMNS

SETS = ("seen", "unseen", "rest")


def frame_sets(payload: dict) -> torch.Tensor:
    """[frame] each frame's set, an index into :data:`SETS`, from its true class."""
    unseen = torch.tensor([payload["classes"].index(name) for name in payload.get("unseen") or []], dtype=torch.long)
    label = payload["label"]
    return torch.where(label == payload["classes"].index(REST), 2, torch.isin(label, unseen).long())


def pose_scores(pose: torch.Tensor, glove: torch.Tensor) -> dict:
    """The numbers of one set of frames (decoded ``pose`` and true ``glove`` [frame, sensor], NaN: no target)."""
    target = torch.isfinite(glove)
    truth = torch.nan_to_num(glove)
    count = target.sum(0)  # [sensor]
    squared = torch.where(target, (pose - truth) ** 2, 0.0).sum()
    cells = target.sum().clamp(min=1)
    mean_pose, mean_truth = (torch.where(target, values, 0.0).sum(0) / count.clamp(min=1) for values in (pose, truth))
    centred_pose = torch.where(target, pose - mean_pose, 0.0)
    centred_truth = torch.where(target, truth - mean_truth, 0.0)
    spread = (centred_pose**2).sum(0) * (centred_truth**2).sum(0)
    correlation = torch.where(
        (count > 1) & (spread > 0), (centred_pose * centred_truth).sum(0) / spread.sqrt().clamp(min=1e-30), torch.nan
    )
    return {
        "frames": len(glove),
        "mse": float(squared / cells) if target.any() else float("nan"),
        "mean_pose_mse": float((truth**2).sum() / cells) if target.any() else float("nan"),
        "mean_correlation": float(correlation.nanmean()),
        **{f"correlation_{sensor + 1}": float(r) for sensor, r in enumerate(correlation.tolist())},
    }


def pose_decoding_table(payload: dict) -> pd.DataFrame:
    """One row per subject and set (see the module) of a pose-decoding model's logits payload."""
    if "pose" not in payload:
        raise InputError(
            f"{payload['model']}/{payload['fold']}: its logits.pt holds no decoded pose: give a model with a "
            "pose_decoder, trained by this version"
        )
    leading = {key: payload[key] for key in ("model", "adabn", "adaptation", "fold", "window")}
    sets = frame_sets(payload)
    rows = []
    for subject in payload["subject"].unique().tolist():  # a few subjects × sets: each scored vectorised
        for index, name in enumerate(SETS):
            chosen = (payload["subject"] == subject) & (sets == index)
            if chosen.any():
                scores = pose_scores(payload["pose"][chosen].double(), payload["glove"][chosen].double())
                rows.append(leading | {"subject": payload["subjects"][subject], "set": name} | scores)
    return pd.DataFrame(rows, columns=OPTIONAL_COLUMNS["pose_decoding"])


def evaluate_pose_decoding(logits_path: Path, out_path: Path) -> None:
    """Write ``pose_decoding.tsv`` of one pose-decoding model × fold × window."""
    atomic_write_frame(pose_decoding_table(read_logits(logits_path)), Path(out_path))
