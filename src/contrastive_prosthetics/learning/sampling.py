"""The contrastive batch sampler: groups of one frame of every selected class, drawn by tensor indexing.

With ``context`` N > 1 every drawn frame comes with the N - 1 frames before it in its recording's continuous
stream (oldest first), as a causal encoder sees them; N = 1 draws single frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..core.errors import InputError

if TYPE_CHECKING:
    from .dataset import DB23, Selection


@dataclass(frozen=True)
class ContrastiveBatch:
    x: torch.Tensor  # [group, class, channel] one frame of every selected class per group ([..., context, channel])
    classes: torch.Tensor  # [class] indices into DB23's class axis
    present: torch.Tensor  # [group, class] False where the group's subject never recorded the class
    subjects: torch.Tensor  # [group, class] indices into DB23's subject axis: where each frame came from
    reference: torch.Tensor | None = None  # [frame, (context,) channel] the subject's unlabelled recording, or None
    # [group, class, sensor] each frame's standardised glove (NaN: no target) when the streams carry it (pose decoding)
    glove: torch.Tensor | None = None


class ContrastiveSampler:
    """Draws B groups holding one frame of every selected class, by tensor indexing from a seeded generator.

    ``per_subject=True`` takes a whole batch from one subject (chosen at random per draw), so batch-norm
    statistics are always those of one person, as AdaBN needs at test time; otherwise every frame's subject
    is drawn independently. Frames from outside the selection (held-out repetitions or subjects) are never
    drawn: only valid (subject, class, repetition) triples of the selection are in the tables. A class the
    batch's subject never recorded is marked absent in ``present``; its slot holds a placeholder frame that
    must not reach the model (:meth:`models.ContrastiveModel.group_logits` encodes present frames only).

    ``reference_frames`` > 0 (per-subject batches only) adds that many frames drawn at random from the batch's
    subject's continuous recording during the selected repetitions, unlabelled: batch norm normalises with their
    statistics, as AdaBN will with the subject's recording at test time.
    """

    def __init__(
        self,
        data: DB23,
        selection: Selection,
        groups: int,
        seed: int,
        per_subject: bool = False,
        context: int = 1,
        reference_frames: int = 0,
    ):
        if context > 1 and data.streams is None:
            raise InputError("a context of more than one frame needs the streams: load DB23 with with_streams=True")
        self.data = data
        self.groups = groups
        self.per_subject = per_subject
        self.context = context
        self.classes = selection.classes.to(data.device)
        self.generator = torch.Generator(device=data.storage_device).manual_seed(seed)
        n_classes, n_reps, n_frames = data.emg.shape[1:4]
        self.n_frames = n_frames
        subjects, classes, reps = (
            t.to(data.storage_device) for t in (selection.subjects, selection.classes, selection.repetitions)
        )
        valid = data.valid[subjects][:, classes][:, :, reps]  # [S', C', R']
        # Frame 0 of each (subject, class, rep) in the flattened [S*C*R*F, channel] view.
        base = (
            (subjects[:, None, None] * n_classes + classes[None, :, None]) * n_reps + reps[None, None, :]
        ) * n_frames
        if per_subject:
            self.counts = valid.sum(-1)  # [S', C']
            # Valid repetitions first, so that index j < count always lands on a valid one.
            order = torch.argsort((~valid).to(torch.int8), dim=-1, stable=True)
            self.table = torch.gather(base, -1, order)  # [S', C', R']
            usable = (self.counts > 0).any(-1)
            if not usable.any():
                raise InputError("the selection holds no valid (subject, class, repetition): nothing to sample")
            self.subjects = subjects[usable]
            self.counts, self.table = self.counts[usable], self.table[usable]
        else:
            pooled_valid = valid.permute(1, 0, 2).reshape(len(classes), -1)  # [C', S'*R']
            pooled_base = base.permute(1, 0, 2).reshape(len(classes), -1)
            self.counts = pooled_valid.sum(-1)  # [C']
            order = torch.argsort((~pooled_valid).to(torch.int8), dim=-1, stable=True)
            self.table = torch.gather(pooled_base, -1, order)
            self.pooled_subject = (pooled_base // (n_classes * n_reps * n_frames)).gather(-1, order)
        if not (self.counts > 0).any():
            raise InputError("the selection holds no valid (subject, class, repetition): nothing to sample")
        self.flat = data.emg.reshape(-1, data.emg.shape[-1])
        self.class_rows = torch.arange(len(classes), device=data.storage_device) * self.table.shape[-1]
        self.reference_frames = reference_frames if per_subject else 0
        if self.reference_frames:
            self._index_recordings(selection)

    def _index_recordings(self, selection: Selection) -> None:
        """Per sampled subject, the stream positions of its recording during the selected repetitions."""
        if self.data.streams is None:
            raise InputError("reference frames need the streams: load DB23 with with_streams=True")
        streams = self.data.streams
        repetitions = (selection.repetitions + 1).to(streams.repetition.device)
        timely = torch.isin(streams.repetition, repetitions)
        positions = [((streams.subject == s) & timely).nonzero().squeeze(1) for s in self.subjects.tolist()]
        self.recording_count = torch.tensor([len(p) for p in positions], device=self.flat.device)
        self.recording_offset = torch.cumsum(self.recording_count, 0) - self.recording_count
        self.recording_positions = torch.cat(positions).to(self.flat.device)

    def draw(self) -> ContrastiveBatch:
        shape = (self.groups, len(self.classes))
        uniform = torch.rand(shape, generator=self.generator, device=self.flat.device)
        frames = torch.randint(self.n_frames, shape, generator=self.generator, device=self.flat.device)
        if self.per_subject:
            which = torch.randint(len(self.subjects), (1,), generator=self.generator, device=self.flat.device)
            counts, table = self.counts[which[0]], self.table[which[0]]  # [C'], [C', R']
            subjects = self.subjects[which].expand(shape)
        else:
            counts, table = self.counts, self.table
        slot = (uniform * counts).long().clamp(max=table.shape[-1] - 1)  # [B, C']
        # Row-major position in the [C', R'] table; ``take`` on a flat view beats ``gather`` several-fold here.
        position = self.class_rows + slot
        chosen = table.reshape(-1).take(position)  # [B, C']
        if not self.per_subject:
            subjects = self.pooled_subject.reshape(-1).take(position)
        present = (counts > 0).expand(shape)
        glove = None
        if self.data.streams is not None and self.data.streams.glove is not None:  # the frames' stream positions
            start = self.data.streams.segment_start.reshape(-1).take((chosen + frames) // self.n_frames)
            glove = self.data.streams.glove[start + (chosen + frames) % self.n_frames].to(self.data.device)
        if self.context == 1:
            x = self.flat.index_select(0, (chosen + frames).reshape(-1)).view(*shape, -1)
        else:
            x = self.data.frames_with_context(chosen + frames, self.context)  # [B, C', N, channel]
        device = self.data.device
        non_blocking = x.device != device and self.data.pinned
        reference = None
        if self.reference_frames:
            uniform = torch.rand(self.reference_frames, generator=self.generator, device=self.flat.device)
            slot = self.recording_offset[which[0]] + (uniform * self.recording_count[which[0]]).long()
            reference = self.data.stream_context(self.recording_positions[slot], self.context)
            reference = reference.to(device, non_blocking=non_blocking)
        return ContrastiveBatch(
            x=x.to(device, non_blocking=non_blocking),
            classes=self.classes,
            present=present.to(device),
            subjects=subjects.to(device),
            reference=reference,
            glove=glove,
        )

    def __iter__(self) -> Iterator[ContrastiveBatch]:
        while True:
            yield self.draw()
