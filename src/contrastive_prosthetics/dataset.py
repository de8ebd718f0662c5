"""DB23: every converted subject in one tensor, with selections, normalisation and fast batch samplers.

    >>> from contrastive_prosthetics.dataset import DB23
    >>> data = DB23.load(["results/tensors/db2/s1.pt", "results/tensors/db3/s1.pt"])  # doctest: +SKIP
    >>> data.emg.shape                     # [subject, class, rep, frame, channel]   # doctest: +SKIP
    torch.Size([2, 41, 6, 100, 12])
    >>> train = data.select(repetitions=[1, 3, 4])                                   # doctest: +SKIP
    >>> norm = data.normalisation(train)   # from the training selection only       # doctest: +SKIP
    >>> sampler = data.normalised(norm).contrastive_sampler(train, groups=256, seed=0)  # doctest: +SKIP
    >>> batch = sampler.draw()             # batch.x: [group, class, channel]       # doctest: +SKIP
    >>> test = data.select(repetitions=[2, 5])                                      # doctest: +SKIP
    >>> for x, index in data.frames(test, batch_size=65536): ...                    # doctest: +SKIP

Subjects are named ``"db2/s1"``, classes by their catalogue names (``"rest"``, ``"B1"``, ...), repetitions are
1-based as in NinaPro. Subjects from databases with fewer channels or repetitions (DB1: 10 electrodes, 10
repetitions; DB2/DB3: 12 and 6) are padded, and the padding is masked (``channel_mask``, ``valid``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import InputError


def choose_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; ``cpu``/``cuda``/``cuda:1`` force a device."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


@dataclass(frozen=True)
class Selection:
    """Indices into DB23's subject, class and repetition axes (0-based)."""

    subjects: torch.Tensor
    classes: torch.Tensor
    repetitions: torch.Tensor


@dataclass(frozen=True)
class Normalisation:
    """Per-channel standardisation, optionally of the log-amplitude, fitted on a training selection."""

    mean: torch.Tensor  # [channel]
    std: torch.Tensor  # [channel]
    log_amplitude: bool
    epsilon: float

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.log_amplitude:
            x = torch.log(x + self.epsilon)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def state_dict(self) -> dict:
        return {
            "mean": self.mean.cpu(),
            "std": self.std.cpu(),
            "log_amplitude": self.log_amplitude,
            "epsilon": self.epsilon,
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> Normalisation:
        return cls(state["mean"], state["std"], state["log_amplitude"], state["epsilon"])


@dataclass(frozen=True)
class ContrastiveBatch:
    x: torch.Tensor  # [group, class, channel] one frame of every selected class per group
    classes: torch.Tensor  # [class] indices into DB23's class axis
    present: torch.Tensor  # [group, class] False where the group's subject never recorded the class
    subjects: torch.Tensor  # [group, class] indices into DB23's subject axis: where each frame came from


class ContrastiveSampler:
    """Draws B groups holding one frame of every selected class, by tensor indexing from a seeded generator.

    ``per_subject=True`` takes a whole batch from one subject (chosen at random per draw), so batch-norm
    statistics are always those of one person, as AdaBN needs at test time; otherwise every frame's subject
    is drawn independently. Frames from outside the selection (held-out repetitions or subjects) are never
    drawn: only valid (subject, class, repetition) triples of the selection are in the tables.
    """

    def __init__(self, data: DB23, selection: Selection, groups: int, seed: int, per_subject: bool = False):
        self.data = data
        self.groups = groups
        self.per_subject = per_subject
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
        x = self.flat.index_select(0, (chosen + frames).reshape(-1)).view(*shape, -1)
        device = self.data.device
        non_blocking = x.device != device and self.data.pinned
        return ContrastiveBatch(
            x=x.to(device, non_blocking=non_blocking),
            classes=self.classes,
            present=present.to(device),
            subjects=subjects.to(device),
        )

    def __iter__(self) -> Iterator[ContrastiveBatch]:
        while True:
            yield self.draw()


@dataclass(frozen=True)
class SubjectInfo:
    database: str
    subject: int
    amputee: bool

    @property
    def name(self) -> str:
        return f"{self.database}/s{self.subject}"


class DB23:
    """Converted NinaPro subjects as one tensor [subject, class, rep, frame, channel] on one device."""

    def __init__(
        self,
        emg: torch.Tensor,
        valid: torch.Tensor,
        channel_mask: torch.Tensor,
        glove: torch.Tensor | None,
        classes: list[str],
        subjects: list[SubjectInfo],
        device: torch.device,
        pinned: bool = False,
        *,
        frame_rate_hz: float,
    ):
        self.emg, self.valid, self.channel_mask, self.glove = emg, valid, channel_mask, glove
        self.frame_rate_hz = frame_rate_hz  # frames per second along the frame axis
        self.features: torch.Tensor | None = None  # [subject, class, rep, frame, channel, 4] Hudgins features
        self.classes = list(classes)
        self.subjects = list(subjects)
        self.device = device  # where batches are delivered
        self.pinned = pinned  # data kept in pinned host memory because it would not fit on the GPU

    @property
    def storage_device(self) -> torch.device:
        return self.emg.device

    @classmethod
    def load(
        cls, paths: Iterable[str | Path], device: str = "auto", with_glove: bool = False, with_features: bool = False
    ) -> DB23:
        paths = [Path(p) for p in paths]
        if not paths:
            raise InputError("DB23.load needs at least one converted subject file")
        payloads = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
        classes = payloads[0]["classes"]
        for path, payload in zip(paths, payloads, strict=True):
            if payload["classes"] != classes:
                raise InputError(
                    f"{path}: its classes differ from {paths[0]}'s; convert every subject with the same data.exercises"
                )
        rates = {float(p["metadata"]["frame_rate_hz"]) for p in payloads}
        if len(rates) > 1:
            raise InputError(
                f"{paths}: subjects were converted at different frame rates {sorted(rates)} Hz; convert them alike"
            )
        n_frames = {p["emg"].shape[2] for p in payloads}
        if len(n_frames) > 1:
            raise InputError(f"{paths}: subjects have different segment lengths {n_frames}; convert them alike")
        n_reps = max(p["emg"].shape[1] for p in payloads)
        n_channels = max(p["emg"].shape[3] for p in payloads)
        shape = (len(payloads), len(classes), n_reps, n_frames.pop())
        emg = torch.zeros((*shape, n_channels))
        glove = torch.zeros((*shape, payloads[0]["glove"].shape[-1])) if with_glove else None
        valid = torch.zeros(shape[:3], dtype=torch.bool)
        channel_mask = torch.zeros((len(payloads), n_channels), dtype=torch.bool)
        for i, payload in enumerate(payloads):
            reps, channels = payload["emg"].shape[1], payload["emg"].shape[3]
            emg[i, :, :reps, :, :channels] = payload["emg"]
            valid[i, :, :reps] = payload["valid"]
            channel_mask[i, :channels] = payload["channel_mask"]
            if glove is not None:
                glove[i, :, :reps] = payload["glove"] * payload["glove_mask"]
        subjects = [
            SubjectInfo(p["metadata"]["database"], int(p["metadata"]["subject"]), bool(p["metadata"]["amputee"]))
            for p in payloads
        ]
        data = cls(emg, valid, channel_mask, glove, classes, subjects, torch.device("cpu"), frame_rate_hz=rates.pop())
        if with_features:
            # Classical baselines use these on the CPU (scikit-learn): they stay there.
            data.features = torch.zeros((*emg.shape, payloads[0]["features"].shape[-1]))
            for i, payload in enumerate(payloads):
                reps, channels = payload["features"].shape[1], payload["features"].shape[3]
                data.features[i, :, :reps, :, :channels] = payload["features"]
        return data.to(choose_device(device))

    def to(self, device: torch.device) -> DB23:
        """Move to ``device``; on a GPU too small for the data, keep it in pinned host memory instead."""
        device = torch.device(device)
        pinned = False
        storage = device
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if self.emg.numel() * self.emg.element_size() > free // 2:
                storage, pinned = torch.device("cpu"), True
        move = (lambda t: t.pin_memory()) if pinned else (lambda t: t.to(storage))
        glove = None if self.glove is None else move(self.glove)
        moved = DB23(
            move(self.emg),
            move(self.valid),
            move(self.channel_mask),
            glove,
            self.classes,
            self.subjects,
            device,
            pinned,
            frame_rate_hz=self.frame_rate_hz,
        )
        moved.features = self.features
        return moved

    @property
    def subject_names(self) -> list[str]:
        return [s.name for s in self.subjects]

    def select(
        self,
        subjects: Iterable[str] | None = None,
        classes: Iterable[str] | None = None,
        repetitions: Iterable[int] | None = None,
    ) -> Selection:
        """A selection by subject names (``"db2/s1"``), class names and 1-based repetitions; None = all."""
        names = self.subject_names
        subject_index = _indices(subjects, names, "subject")
        class_index = _indices(classes, self.classes, "class")
        n_reps = self.valid.shape[2]
        if repetitions is None:
            rep_index = list(range(n_reps))
        else:
            rep_index = [int(r) - 1 for r in repetitions]
            wrong = [r + 1 for r in rep_index if not 0 <= r < n_reps]
            if wrong:
                raise InputError(f"repetitions {wrong} do not exist; the data hold repetitions 1-{n_reps}")
        return Selection(*(torch.tensor(i, dtype=torch.long) for i in (subject_index, class_index, rep_index)))

    def selection_mask(self, selection: Selection) -> torch.Tensor:
        """[subject, class, rep] True for valid triples inside the selection."""
        mask = torch.zeros_like(self.valid)
        s, c, r = (t.to(self.valid.device) for t in (selection.subjects, selection.classes, selection.repetitions))
        mask[s[:, None, None], c[None, :, None], r[None, None, :]] = True
        return mask & self.valid

    def normalisation(self, selection: Selection, log_amplitude: bool = True, epsilon: float = 1e-6) -> Normalisation:
        """Per-channel mean and std over the selection's valid frames and live channels (training data only)."""
        weight = (self.selection_mask(selection)[..., None, None] & self.channel_mask[:, None, None, None, :]).to(
            self.emg.dtype
        )
        x = torch.log(self.emg + epsilon) if log_amplitude else self.emg
        count = (weight.sum(dim=(0, 1, 2, 3)) * self.emg.shape[3]).clamp(min=1)  # [channel]
        mean = (x * weight).sum(dim=(0, 1, 2, 3)) / count
        var = (((x - mean) ** 2) * weight).sum(dim=(0, 1, 2, 3)) / count
        std = var.sqrt()
        std = torch.where(std > 1e-8, std, torch.ones_like(std))  # dead or padded channels: leave at zero
        return Normalisation(mean.cpu(), std.cpu(), log_amplitude, epsilon)

    def normalised(self, normalisation: Normalisation) -> DB23:
        """A copy whose frames are normalised once, so samplers deliver ready-to-use batches."""
        emg = normalisation.apply(self.emg) * self.channel_mask[:, None, None, None, :]
        return DB23(
            emg,
            self.valid,
            self.channel_mask,
            self.glove,
            self.classes,
            self.subjects,
            self.device,
            self.pinned,
            frame_rate_hz=self.frame_rate_hz,
        )

    def contrastive_sampler(
        self, selection: Selection, groups: int, seed: int, per_subject: bool = False
    ) -> ContrastiveSampler:
        return ContrastiveSampler(self, selection, groups, seed, per_subject)

    def frame_index(self, selection: Selection) -> torch.Tensor:
        """[frame, 4] (subject, class, rep, frame) indices of every frame of the selection, in order."""
        triples = torch.nonzero(self.selection_mask(selection))  # [N, 3] in (subject, class, rep) order
        n_frames = self.emg.shape[3]
        frames = torch.arange(n_frames, device=triples.device)
        expanded = triples.repeat_interleave(n_frames, dim=0)
        return torch.cat((expanded, frames.repeat(len(triples))[:, None]), dim=1)

    def frames(self, selection: Selection, batch_size: int = 65536) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every frame of the selection in (subject, class, rep, frame) order, as (x [n, channel], index [n, 4])."""
        index = self.frame_index(selection)
        _, n_classes, n_reps, n_frames, n_channels = self.emg.shape
        flat = self.emg.reshape(-1, n_channels)
        linear = ((index[:, 0] * n_classes + index[:, 1]) * n_reps + index[:, 2]) * n_frames + index[:, 3]
        for start in range(0, len(index), batch_size):
            x = flat.index_select(0, linear[start : start + batch_size])
            yield x.to(self.device, non_blocking=self.pinned), index[start : start + batch_size].to(self.device)


def _indices(wanted: Iterable | None, available: list[str], what: str) -> list[int]:
    if wanted is None:
        return list(range(len(available)))
    wanted = list(wanted)
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise InputError(f"unknown {what}(s) {unknown}; the data hold {available}")
    return [available.index(w) for w in wanted]


__all__ = ["DB23", "ContrastiveBatch", "ContrastiveSampler", "Normalisation", "Selection", "SubjectInfo"]
