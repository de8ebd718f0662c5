"""The glove as pose decoding's target: each subject's glove standardised by its own statistics, and each class
described by other people's gloves.

A glove's readings differ between people (hand size, how the glove sits, its calibration), so a pose compares across
people only in each person's own units: every subject's glove is standardised per sensor by the mean and standard
deviation of that subject's own stream frames during the fold's training repetitions (:func:`glove_normalisation`:
never a test repetition; in a zero-shot fold's training view never a held-out gesture's stretch either). A sensor
the subject's file lacks, or one that never moved, has no statistics and no target (NaN).

A class's description for subject s (:func:`pose_descriptions`) is its mean standardised glove over the stream frames
labelled with it of every training subject but s, in the training repetitions: s's own glove never describes a
class to s, and no one's EMG takes part. An unseen gesture's frames of the other subjects count here (the zero-shot
premise: it is described by other people's hands, as :mod:`.poses` describes it to the class encoder).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from .dataset import DB23, Selection
from .streams import Streams


@dataclass(frozen=True)
class GloveNormalisation:
    """Per subject and sensor, the statistics its glove is standardised with (:func:`glove_normalisation`)."""

    mean: torch.Tensor  # [subject, sensor]
    std: torch.Tensor  # [subject, sensor] (1 where unusable)
    usable: torch.Tensor  # [subject, sensor] a sensor with readings and spread in the subject's training frames

    def apply(self, glove: torch.Tensor, subject: torch.Tensor) -> torch.Tensor:
        """Raw glove frames [frame, sensor] of the subjects ``subject`` [frame], standardised; NaN where the sensor
        is unusable for that subject or has no reading."""
        subject = subject.to(self.mean.device)
        standardised = (glove.to(self.mean.device) - self.mean[subject]) / self.std[subject]
        return torch.where(self.usable[subject], standardised, torch.nan)


def _training_rows(streams: Streams, selection: Selection) -> torch.Tensor:
    """[frame] True for the selection's subjects' frames during its repetitions."""
    device = streams.subject.device
    repetitions = (selection.repetitions + 1).to(device)  # the stream's repetitions are 1-based
    return torch.isin(streams.subject, selection.subjects.to(device)) & torch.isin(streams.repetition, repetitions)


def glove_normalisation(streams: Streams, selection: Selection, n_subjects: int) -> GloveNormalisation:
    """Each subject's per-sensor mean and standard deviation over its stream glove during the selection's
    repetitions (a subject outside the selection's subjects, or a sensor with fewer than two readings or no spread
    there: unusable). Sums in float64, so that the statistics do not depend on the frames' order of magnitude."""
    if streams.glove is None:
        raise ValueError("the streams carry no glove: load DB23 with with_stream_glove=True")
    rows = _training_rows(streams, selection)
    glove, who = streams.glove[rows].double(), streams.subject[rows]
    seen = torch.isfinite(glove)
    count = glove.new_zeros(n_subjects, glove.shape[1]).index_add_(0, who, seen.double())
    mean = glove.new_zeros(count.shape).index_add_(0, who, torch.where(seen, glove, 0.0)) / count.clamp(min=1)
    centred = torch.where(seen, glove - mean[who], 0.0)
    std = (glove.new_zeros(count.shape).index_add_(0, who, centred**2) / count.clamp(min=1)).sqrt()
    usable = (count > 1) & (std > 1e-6)
    return GloveNormalisation(mean.float(), torch.where(usable, std, 1.0).float(), usable)


def with_standardised_glove(data: DB23, normalisation: GloveNormalisation) -> DB23:
    """A copy of ``data`` whose streams' glove is standardised (:meth:`GloveNormalisation.apply`): what the pose head
    is trained on and scored against."""
    streams = data.streams
    glove = normalisation.apply(streams.glove, streams.subject).to(streams.glove.device)
    view = copy.copy(data)
    view.streams = replace(streams, glove=glove)
    return view


def pose_descriptions(
    streams: Streams, normalisation: GloveNormalisation, selection: Selection, n_classes: int
) -> torch.Tensor:
    """[subject, class, sensor] row s: every class's mean standardised glove over the frames labelled with it of the
    selection's subjects but s, during its repetitions (NaN where none of them has a reading): what subject s's
    decoded pose is matched to. ``streams``: with every repetition labelled (not a zero-shot training view, which
    hides the unseen gestures' stretches that describe them)."""
    rows = _training_rows(streams, selection)
    who = streams.subject[rows]
    standardised = normalisation.apply(streams.glove[rows], who).double()
    seen = torch.isfinite(standardised)
    key = (who * n_classes + streams.classes[rows]).to(standardised.device)
    n_subjects = normalisation.mean.shape[0]
    cells = standardised.new_zeros(n_subjects * n_classes, standardised.shape[1])
    total = cells.index_add(0, key, torch.where(seen, standardised, 0.0)).view(n_subjects, n_classes, -1)
    count = cells.index_add(0, key, seen.double()).view(n_subjects, n_classes, -1)
    others = count.sum(0) - count
    return torch.where(others > 0, (total.sum(0) - total) / others.clamp(min=1), torch.nan).float()


class PoseReadout(nn.Module):
    """A pose-decoding model read for its decoded pose: frames → [frame, sensor] standardised glove. Its encoder (and
    so every batch norm) is the model's, so that adapting it (AdaBN) adapts the same layers to the same statistics,
    and scoring code that takes a model (:func:`.adaptation.predict`) scores it unchanged."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config

    @property
    def emg_encoder(self) -> nn.Module:
        return self.model.emg_encoder

    def forward(self, x: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.decode_pose(x)


@dataclass(frozen=True)
class DecodedPoses:
    """What logits.pt keeps of pose decoding (:mod:`.logits`): per test frame, in the logits' order, the decoded
    and the true standardised glove; per subject, every class's description."""

    pose: torch.Tensor  # [frame, sensor]
    glove: torch.Tensor  # [frame, sensor] NaN: no target
    descriptions: torch.Tensor  # [subject, class, sensor]


def decoded_test_poses(setting, model: nn.Module, index: torch.Tensor, memo: dict) -> DecodedPoses | None:
    """The test frames' decoded poses (scored as their logits were, AdaBN statistics from ``memo``: the same
    adaptation) and their true standardised glove at each segment frame; None for a model without a pose head.
    ``index``: the logits' (subject, class, rep, frame) rows, which the poses must follow."""
    if getattr(model, "pose_head", None) is None:
        return None
    test = setting.selections
    poses, pose_index = replace(setting, subject_codes=None).scores(PoseReadout(model), test.test, test.test_pool, memo)
    if not torch.equal(pose_index, index):
        raise AssertionError("decoded poses and logits scored different frames")  # a bug, not the user's
    streams = setting.data.streams
    start = streams.segment_start[index[:, 0], index[:, 1], index[:, 2]]
    truth = streams.glove[(start + index[:, 3]).to(streams.glove.device)]
    return DecodedPoses(poses.float().cpu(), truth.float().cpu(), setting.pose_descriptions.cpu())


def decoding_view(loaded: DB23, raw: DB23, data: DB23, train: Selection) -> tuple[DB23, torch.Tensor]:
    """A pose-decoding model's data: ``data`` (the training view, normalised) with each subject's glove standardised
    by the statistics of ``raw`` (the training view: no test repetition, no held-out stretch) over the training
    repetitions, and every subject's class descriptions from the other training subjects in ``loaded`` (every
    stretch labelled)."""
    normalisation = glove_normalisation(raw.streams, train, len(raw.subjects))
    descriptions = pose_descriptions(loaded.streams, normalisation, train, len(loaded.classes))
    return with_standardised_glove(data, normalisation), descriptions
