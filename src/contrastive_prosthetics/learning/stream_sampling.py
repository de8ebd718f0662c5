"""Training on what the controller sees: groups of one frame of every class, drawn from the continuous recording.

The segment sampler (:mod:`.sampling`) draws from clean one-second windows: one rest window per repetition and the
movement frames right after the relabelled onset. A controller reads every frame: the whole of every rest run
(quiet rest, the release after a movement, the cue before the relabelled onset) and every movement frame to its
end. This sampler draws from every frame of the selected subjects' selected repetitions in the continuous stream,
labelled with its relabelled class, except a guard band of ``guard_frames`` at each side of every change of label:
there the label itself is uncertain (the relabelling moves onsets by tens of milliseconds), and a model forced to
decide them would learn the labelling's noise. Evaluation reports the guard frames on their own.

The batch keeps the segment sampler's shape, one frame of every selected class per group, so that the contrastive
loss (a similarity matrix over the group's classes) is unchanged; what changes is where each class's frame comes
from. Rest is one class among K, as before: the stream's larger share of rest is the controller's prior, which the
calibrated rest bias (:mod:`.rest_bias`) sets on validation streams, not the loss.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..core.errors import InputError
from ..core.units import ms_to_frames
from ..data.ninapro import REST
from .dataset import DB23, Selection
from .sampling import ContrastiveBatch


def guard_width(guard_ms: float, frame_rate_hz: float) -> int:
    """``training.guard_ms`` in frames: the guard band's width on each side of a change of label."""
    return ms_to_frames(guard_ms, frame_rate_hz)


def guard_mask(
    classes: torch.Tensor, subject: torch.Tensor, guard_frames: int, onset_frames: int | None = None, rest: int = 0
) -> torch.Tensor:
    """[frame] True for frames within ``guard_frames`` of a change of label (or of subject) on either side: the
    first and the last ``guard_frames`` frames of every run of one label; with ``onset_frames``, the first frames of a
    movement run (a class other than ``rest``) are guarded for that many instead, so that the onset's ramp can be
    trained on (0) while the release and the rest around it stay guarded."""
    n = len(classes)
    onset_frames = guard_frames if onset_frames is None else onset_frames
    if max(guard_frames, onset_frames) <= 0 or n == 0:
        return torch.zeros(n, dtype=torch.bool, device=classes.device)
    position = torch.arange(n, device=classes.device)
    starts = torch.ones(n, dtype=torch.bool, device=classes.device)
    starts[1:] = (classes[1:] != classes[:-1]) | (subject[1:] != subject[:-1])
    ends = torch.roll(starts, -1)
    ends[-1] = True
    run_start = torch.where(starts, position, 0).cummax(0).values
    run_end = torch.where(ends, position, n).flip(0).cummin(0).values.flip(0)  # the run's last frame
    head = torch.where(classes == rest, guard_frames, onset_frames)  # a run's first frames: its own class decides
    return (position - run_start < head) | (run_end - position < guard_frames)


def stream_training_positions(
    data: DB23, selection: Selection, guard_frames: int, onset_frames: int | None = None
) -> torch.Tensor:
    """Stream positions training draws from (the sampler below, and the LDA baseline): the selection's subjects
    during its repetitions, labelled with one of its classes, outside the guard band (:func:`guard_mask`)."""
    streams = data.streams
    device = streams.frames.device
    repetitions = (selection.repetitions + 1).to(device)  # the stream's repetitions are 1-based
    eligible = (
        torch.isin(streams.subject, selection.subjects.to(device))
        & torch.isin(streams.repetition, repetitions)
        & torch.isin(streams.classes, selection.classes.to(device))
        & ~guard_mask(streams.classes, streams.subject, guard_frames, onset_frames, data.classes.index(REST))
    )
    return eligible.nonzero().squeeze(1)


class StreamSampler:
    """Draws B groups holding one stream frame of every selected class (see the module). The interface and the
    batch are :class:`.sampling.ContrastiveSampler`'s: ``per_subject`` draws a whole batch from one subject;
    ``context`` > 1 adds the frames before each; ``reference_frames`` adds the subject's unlabelled recording."""

    def __init__(
        self,
        data: DB23,
        selection: Selection,
        groups: int,
        seed: int,
        per_subject: bool = False,
        context: int = 1,
        reference_frames: int = 0,
        guard_frames: int = 0,
        onset_guard_frames: int | None = None,
    ):
        if data.streams is None:
            raise InputError("training on the stream needs the streams: load DB23 with with_streams=True")
        streams = data.streams
        device = streams.frames.device
        self.data, self.groups, self.per_subject, self.context = data, groups, per_subject, context
        self.classes = selection.classes.to(data.device)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        subjects, classes = selection.subjects.to(device), selection.classes.to(device)
        repetitions = (selection.repetitions + 1).to(device)  # the stream's repetitions are 1-based
        timely = torch.isin(streams.subject, subjects) & torch.isin(streams.repetition, repetitions)
        positions = stream_training_positions(data, selection, guard_frames, onset_guard_frames)
        # Each eligible frame's (subject row, class column) among the selection's, as one sort key.
        subject_row = torch.full((len(data.subject_names),), -1, dtype=torch.long, device=device)
        subject_row[subjects] = torch.arange(len(subjects), device=device)
        class_column = torch.full((len(data.classes),), -1, dtype=torch.long, device=device)
        class_column[classes] = torch.arange(len(classes), device=device)
        rows = subject_row[streams.subject[positions]] if per_subject else torch.zeros_like(positions)
        key = rows * len(classes) + class_column[streams.classes[positions].long()]
        order = torch.argsort(key, stable=True)  # time order inside each (subject, class)
        self.positions = positions[order]
        n_rows = len(subjects) if per_subject else 1
        self.counts = torch.bincount(key, minlength=n_rows * len(classes)).view(n_rows, len(classes))
        self.offsets = (torch.cumsum(self.counts.reshape(-1), 0) - self.counts.reshape(-1)).view_as(self.counts)
        usable = (self.counts > 0).any(1)
        if not usable.any():
            raise InputError(
                "the selection's repetitions hold no stream frame outside the guard band: nothing to sample "
                "(training.guard_ms too long for these recordings?)"
            )
        self.subjects = subjects[usable] if per_subject else subjects
        self.counts, self.offsets = self.counts[usable], self.offsets[usable]
        self.reference_frames = reference_frames if per_subject else 0
        if self.reference_frames:
            self.recordings = [((streams.subject == s) & timely).nonzero().squeeze(1) for s in self.subjects.tolist()]

    def draw(self) -> ContrastiveBatch:
        shape = (self.groups, len(self.classes))
        device = self.positions.device
        uniform = torch.rand(shape, generator=self.generator, device=device)
        row = torch.randint(len(self.counts), (1,), generator=self.generator, device=device) if self.per_subject else 0
        counts, offsets = self.counts[row].reshape(-1), self.offsets[row].reshape(-1)  # [C']
        present = (counts > 0).expand(shape)
        slot = offsets + (uniform * counts).long().clamp(max=(counts - 1).clamp(min=0))
        # An absent class's slot points anywhere valid: a placeholder the model never encodes (``present``).
        position = self.positions.take(torch.where(present, slot, 0))
        subjects = self.data.streams.subject.take(position)
        x = self.data.stream_context(position, self.context)
        reference = None
        if self.reference_frames:
            recording = self.recordings[int(row)]
            pick = (torch.rand(self.reference_frames, generator=self.generator, device=device) * len(recording)).long()
            reference = self.data.stream_context(recording[pick], self.context).to(self.data.device)
        glove = None if self.data.streams.glove is None else self.data.streams.glove[position].to(self.data.device)
        return ContrastiveBatch(
            x=x.to(self.data.device),
            classes=self.classes,
            present=present.to(self.data.device),
            subjects=subjects.to(self.data.device),
            reference=reference,
            glove=glove,
        )

    def __iter__(self) -> Iterator[ContrastiveBatch]:
        while True:
            yield self.draw()
