"""Every subject's continuous recording in one tensor, as :class:`.dataset.DB23` holds it beside the segments."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Streams:
    """Every subject's continuous stream of frames, concatenated: what a controller sees, rest and transitions
    included. ``classes`` are the relabelled labels, for evaluation only: adaptation selects frames by subject and
    repetition (stretches of time), never by label."""

    frames: torch.Tensor  # [frame, channel]
    subject: torch.Tensor  # [frame] index into DB23's subject axis
    repetition: torch.Tensor  # [frame] 1-based; 0 outside every repetition
    classes: torch.Tensor  # [frame] relabelled class
    offset: torch.Tensor  # [subject] first frame of each subject
    segment_start: torch.Tensor  # [subject, class, rep] each segment's first frame (-1: not valid)
    # [frame, channel, 4] Hudgins features of each frame, when loaded (with_features): the classical baseline's
    # input, kept on the CPU where scikit-learn reads it.
    features: torch.Tensor | None = None
    # [frame, 22] the glove at each frame, when loaded (with_stream_glove): raw, or each subject's standardised
    # (:mod:`.glove`); NaN where a sensor has no reading. Pose decoding's target.
    glove: torch.Tensor | None = None

    def to(self, move) -> Streams:
        fields = ("frames", "subject", "repetition", "classes", "offset", "segment_start")
        moved = {name: move(getattr(self, name)) for name in fields}
        return replace(self, **moved, glove=None if self.glove is None else move(self.glove))


def concatenate_streams(
    payloads: list[dict], n_channels: int, n_reps: int, with_features: bool = False, with_glove: bool = False
) -> Streams:
    """One Streams over the subjects' files, channels padded to ``n_channels``, repetitions to ``n_reps``; the
    glove's sensors a file lacks (its ``glove_mask``) NaN, as no reading."""
    lengths = torch.tensor([len(p["stream"]) for p in payloads])
    offset = torch.cumsum(lengths, 0) - lengths
    frames = torch.zeros((int(lengths.sum()), n_channels))
    features = (
        torch.zeros((len(frames), n_channels, payloads[0]["stream_features"].shape[-1])) if with_features else None
    )
    segment_start = torch.full((len(payloads), payloads[0]["segment_start"].shape[0], n_reps), -1, dtype=torch.long)
    for i, payload in enumerate(payloads):
        stream, rows = payload["stream"], slice(int(offset[i]), int(offset[i] + lengths[i]))
        frames[rows, : stream.shape[1]] = stream
        if features is not None:
            features[rows, : stream.shape[1]] = payload["stream_features"]
        start = payload["segment_start"]
        segment_start[i, :, : start.shape[1]] = torch.where(start >= 0, start + offset[i], -1)
    return Streams(
        frames=frames,
        subject=torch.arange(len(payloads)).repeat_interleave(lengths),
        repetition=torch.cat([p["stream_repetition"].long() for p in payloads]),
        classes=torch.cat([p["stream_class"].long() for p in payloads]),
        offset=offset,
        segment_start=segment_start,
        features=features,
        glove=torch.cat([_stream_glove(p) for p in payloads]) if with_glove else None,
    )


def _stream_glove(payload: dict) -> torch.Tensor:
    """A file's stream glove, float32, its masked sensors NaN (conversion stores them as zeros)."""
    return torch.where(payload["glove_mask"], payload["stream_glove"].float(), torch.nan)
