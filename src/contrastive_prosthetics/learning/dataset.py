"""DB23: every converted subject in one tensor, with selections and normalisation (batches: :mod:`.sampling`).

    >>> from contrastive_prosthetics.learning.dataset import DB23
    >>> data = DB23.load(["results/tensors/db2/s1.pt", "results/tensors/db3/s1.pt"])  # doctest: +SKIP
    >>> data.emg.shape                     # [subject, class, rep, frame, channel]   # doctest: +SKIP
    torch.Size([2, 41, 6, 100, 12])
    >>> train = data.select(repetitions=[1, 3, 4])                                   # doctest: +SKIP
    >>> norm = data.normalisation(train)   # from the training selection only       # doctest: +SKIP
    >>> from contrastive_prosthetics.learning.sampling import ContrastiveSampler                   # doctest: +SKIP
    >>> sampler = ContrastiveSampler(data.normalised(norm), train, groups=256, seed=0)  # doctest: +SKIP
    >>> batch = sampler.draw()             # batch.x: [group, class, channel]       # doctest: +SKIP
    >>> test = data.select(repetitions=[2, 5])                                      # doctest: +SKIP
    >>> for x, index in data.frames(test, batch_size=65536): ...                    # doctest: +SKIP

Subjects are named ``"db2/s1"``, classes by their catalogue names (``"rest"``, ``"B1"``, ...), repetitions are
1-based as in NinaPro. Subjects from databases with fewer channels or repetitions (DB1: 10 electrodes, 10
repetitions; DB2/DB3: 12 and 6) are padded, and the padding is masked (``channel_mask``, ``valid``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..core.errors import InputError
from ..data.tensor_file import check_streams, first_window, read_tensor_file, window_of
from .streams import Streams, concatenate_streams


def choose_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; ``cpu``/``cuda``/``cuda:1`` force a device."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device: {preference}, but this machine has no CUDA device; set device: auto or cpu")
    return torch.device(preference)


@dataclass(frozen=True)
class Selection:
    """Indices into DB23's subject, class and repetition axes (0-based)."""

    subjects: torch.Tensor
    classes: torch.Tensor
    repetitions: torch.Tensor


@dataclass(frozen=True)
class Normalisation:
    """Per-channel standardisation, optionally of the log-amplitude, fitted on a training selection.

    The log is taken of ``x + epsilon``, ``epsilon`` per channel: a fraction of the channel's median over the
    training frames, so that quantised envelopes (DB1 moves in steps of ~0.0024, with exact zeros) and volts
    (DB2/DB3) alike get a floor at their own scale rather than far below it.
    """

    mean: torch.Tensor  # [channel]
    std: torch.Tensor  # [channel]
    log_amplitude: bool
    epsilon: torch.Tensor  # [channel]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.log_amplitude:
            x = torch.log(x + self.epsilon.to(x.device))
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """The raw amplitude whose :meth:`apply` is ``z`` (up to rounding; never below zero, as an RMS)."""
        x = z * self.std.to(z.device) + self.mean.to(z.device)
        if self.log_amplitude:
            x = torch.exp(x) - self.epsilon.to(z.device)
        return x.clamp(min=0)

    def state_dict(self) -> dict:
        return {
            "mean": self.mean.cpu(),
            "std": self.std.cpu(),
            "log_amplitude": self.log_amplitude,
            "epsilon": self.epsilon.cpu(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> Normalisation:
        return cls(state["mean"], state["std"], state["log_amplitude"], torch.as_tensor(state["epsilon"]))


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
        streams: Streams | None = None,
    ):
        self.emg, self.valid, self.channel_mask, self.glove = emg, valid, channel_mask, glove
        self.frame_rate_hz = frame_rate_hz  # frames per second along the frame axis
        self.streams = streams  # every subject's continuous stream, when loaded (with_streams)
        self.window = "segments"  # the name of the segment window ``emg`` holds
        self.preprocess: dict | None = None  # the conversion's preprocess parameters, when loaded from files
        self.poses: torch.Tensor | None = None  # [subject, class, rep, 22] hand pose of each cell (CPU)
        self.pose_mask: torch.Tensor | None = None  # [subject, 22] glove sensors with data
        self.features: torch.Tensor | None = None  # [subject, class, rep, frame, channel, 4] Hudgins features
        self.classes = list(classes)
        self.subjects = list(subjects)
        self.device = device  # where batches are delivered
        self.pinned = pinned  # data kept in pinned host memory because it would not fit on the GPU

    def _with(self, emg: torch.Tensor, streams: Streams | None) -> DB23:
        """A copy with other frames (same subjects, classes and masks)."""
        copy = DB23(
            emg,
            self.valid,
            self.channel_mask,
            self.glove,
            self.classes,
            self.subjects,
            self.device,
            self.pinned,
            frame_rate_hz=self.frame_rate_hz,
            streams=streams,
        )
        copy.features, copy.window, copy.preprocess = self.features, self.window, self.preprocess
        copy.poses, copy.pose_mask = self.poses, self.pose_mask
        return copy

    @property
    def storage_device(self) -> torch.device:
        return self.emg.device

    @classmethod
    def load(
        cls,
        paths: Iterable[str | Path],
        device: str = "auto",
        with_glove: bool = False,
        with_features: bool = False,
        with_streams: bool = False,
        window: str | None = None,
        with_stream_glove: bool = False,
    ) -> DB23:
        """The converted subjects at ``paths``, their segments of ``window`` (default: the first window they were
        converted with), on ``device``; glove angles, Hudgins features and the continuous streams (with their glove:
        ``with_stream_glove``) on request."""
        paths = [Path(p) for p in paths]
        if not paths:
            raise InputError("DB23.load needs at least one converted subject file")
        fields = ("emg", *(("glove",) if with_glove else ()), *(("features",) if with_features else ()))
        payloads, window, classes, rate = _read_subjects(
            paths, window, fields, with_streams, with_features, with_stream_glove
        )
        emg, valid, channel_mask, glove = _stack_segments(payloads, len(classes), with_glove)
        subjects = [
            SubjectInfo(p["metadata"]["database"], int(p["metadata"]["subject"]), bool(p["metadata"]["amputee"]))
            for p in payloads
        ]
        n_reps, n_channels = emg.shape[2], emg.shape[4]
        streams = (
            concatenate_streams(payloads, n_channels, n_reps, with_features, with_stream_glove)
            if with_streams
            else None
        )
        data = cls(
            emg, valid, channel_mask, glove, classes, subjects, torch.device("cpu"), frame_rate_hz=rate, streams=streams
        )
        data.window = window
        data.poses, data.pose_mask = _stack_poses(payloads, len(classes), n_reps)
        data.preprocess = payloads[0].get("metadata", {}).get("preprocess")
        if with_features:
            # Classical baselines use these on the CPU (scikit-learn): they stay there.
            data.features = _stack_features(payloads, emg.shape)
        return data.to(choose_device(device))

    def to(self, device: torch.device) -> DB23:
        """Move to ``device``; on a GPU too small for the data, keep it in pinned host memory instead."""
        device = torch.device(device)
        pinned = False
        storage = device
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            size = self.emg.numel() * self.emg.element_size()
            if self.streams is not None:
                size += self.streams.frames.numel() * self.streams.frames.element_size()
            if size > free // 2:
                storage, pinned = torch.device("cpu"), True
        move = (lambda t: t.pin_memory()) if pinned else (lambda t: t.to(storage))
        moved = self._with(move(self.emg), None if self.streams is None else self.streams.to(move))
        moved.valid, moved.channel_mask = move(self.valid), move(self.channel_mask)
        moved.glove = None if self.glove is None else move(self.glove)
        moved.device, moved.pinned = device, pinned
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

    def normalisation(
        self,
        selection: Selection,
        log_amplitude: bool = True,
        epsilon_fraction: float = 0.01,
        floor_quanta: float = 0.0,
    ) -> Normalisation:
        """Per-channel mean and std over the selection's valid frames and live channels (training data only); the
        log floor is ``epsilon_fraction`` of each channel's median there, and at least ``floor_quanta`` times its
        quantisation step (:func:`quantisation_step`: DB1's envelopes move in steps of ~0.0024, and with a floor far
        below one step, one step at rest is ~0.7 log units, as large as a real contraction's change)."""
        weight = (self.selection_mask(selection)[..., None, None] & self.channel_mask[:, None, None, None, :]).to(
            self.emg.dtype
        )
        epsilon = torch.ones(self.emg.shape[-1])
        for channel in range(self.emg.shape[-1]):
            values = self.emg[..., channel][weight[..., channel].expand(self.emg.shape[:-1]) > 0]
            if values.numel() and values.median() > 0:
                epsilon[channel] = epsilon_fraction * values.median().cpu()
                if floor_quanta > 0:
                    epsilon[channel] = max(epsilon[channel], floor_quanta * quantisation_step(values.cpu()))
        epsilon = epsilon.to(self.emg.device)
        x = torch.log(self.emg + epsilon) if log_amplitude else self.emg
        count = (weight.sum(dim=(0, 1, 2, 3)) * self.emg.shape[3]).clamp(min=1)  # [channel]
        mean = (x * weight).sum(dim=(0, 1, 2, 3)) / count
        var = (((x - mean) ** 2) * weight).sum(dim=(0, 1, 2, 3)) / count
        std = var.sqrt()
        std = torch.where(std > 1e-8, std, torch.ones_like(std))  # dead or padded channels: leave at zero
        return Normalisation(mean.cpu(), std.cpu(), log_amplitude, epsilon.cpu())

    def normalised(self, normalisation: Normalisation) -> DB23:
        """A copy whose frames (segments and streams) are normalised once, so samplers deliver ready batches.
        Dead and padded channels are zero."""
        live = self.channel_mask[:, None, None, None, :]
        emg = torch.where(live, normalisation.apply(self.emg), 0.0)
        streams = self.streams
        if streams is not None:
            live_frames = self.channel_mask[streams.subject]
            frames = torch.where(live_frames, normalisation.apply(streams.frames), 0.0)
            streams = replace(streams, frames=frames)
        return self._with(emg, streams)

    def frame_index(self, selection: Selection) -> torch.Tensor:
        """[frame, 4] (subject, class, rep, frame) indices of every frame of the selection, in order."""
        triples = torch.nonzero(self.selection_mask(selection))  # [N, 3] in (subject, class, rep) order
        n_frames = self.emg.shape[3]
        frames = torch.arange(n_frames, device=triples.device)
        expanded = triples.repeat_interleave(n_frames, dim=0)
        return torch.cat((expanded, frames.repeat(len(triples))[:, None]), dim=1)

    def frames_with_context(self, flat: torch.Tensor, context: int) -> torch.Tensor:
        """Segment frames given as flat indices into ``emg`` ([..]) with the ``context`` - 1 stream frames before
        each: [..., context, channel], oldest first (frames before the subject's stream repeat its first one)."""
        n_frames = self.emg.shape[3]
        start = self.streams.segment_start.reshape(-1).take(flat // n_frames)
        return self.stream_context(start + flat % n_frames, context)

    def stream_context(self, position: torch.Tensor, context: int) -> torch.Tensor:
        """Stream frames at ``position`` ([..]): [..., channel] for a context of 1, else [..., context, channel]
        with the frames before each, oldest first (frames before a subject's stream repeat its first one)."""
        streams = self.streams
        if context == 1:
            return streams.frames[position]
        subject = streams.subject.take(position)
        window = position[..., None] + torch.arange(1 - context, 1, device=position.device)
        return streams.frames[torch.maximum(window, streams.offset.take(subject)[..., None])]

    def frames(
        self, selection: Selection, batch_size: int = 65536, context: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every frame of the selection in (subject, class, rep, frame) order, as (x [n, channel], index [n, 4]);
        with ``context`` > 1, x is [n, context, channel]."""
        index = self.frame_index(selection)
        _, n_classes, n_reps, n_frames, n_channels = self.emg.shape
        flat = self.emg.reshape(-1, n_channels)
        linear = ((index[:, 0] * n_classes + index[:, 1]) * n_reps + index[:, 2]) * n_frames + index[:, 3]
        for start in range(0, len(index), batch_size):
            chunk = linear[start : start + batch_size]
            x = flat.index_select(0, chunk) if context == 1 else self.frames_with_context(chunk, context)
            yield x.to(self.device, non_blocking=self.pinned), index[start : start + batch_size].to(self.device)

    def stream_frames(
        self, subject: int, repetitions: Iterable[int], context: int = 1, limit: int | None = None
    ) -> torch.Tensor:
        """The stream frames of one subject (index) within the given 1-based repetitions, in time order, with
        context as in :meth:`frames`: every one, or ``limit`` evenly spaced ones. Chosen by time alone: the
        frames' labels are never read."""
        streams = self.streams
        wanted = torch.as_tensor(sorted(set(repetitions)), device=streams.repetition.device)
        mask = (streams.subject == subject) & torch.isin(streams.repetition, wanted)
        position = evenly_spaced(mask.nonzero().squeeze(1), limit)
        return self.stream_context(position, context).to(self.device, non_blocking=self.pinned)


def evenly_spaced(rows: torch.Tensor, limit: int | None) -> torch.Tensor:
    """``limit`` evenly spaced rows of ``rows`` in order, the first and the last included; all of them when there
    are no more (or no limit): the frames that AdaBN reads of a recording, offline and in calibration alike."""
    if limit is None or len(rows) <= limit:
        return rows
    return rows[torch.linspace(0, len(rows) - 1, limit, device=rows.device).long()]


def quantisation_step(values: torch.Tensor) -> float:
    """The smallest positive difference between distinct values: a quantised signal's step (DB1: ~0.0024), a
    continuous one's is far below any floor that matters (float32 rounding)."""
    distinct = torch.unique(values)
    gaps = distinct[1:] - distinct[:-1]
    return float(gaps.min()) if len(gaps) else 0.0


def _read_subjects(
    paths: list[Path],
    window: str | None,
    fields: tuple[str, ...],
    with_streams: bool,
    with_features: bool = False,
    with_glove: bool = False,
) -> tuple[list[dict], str, list[str], float]:
    """Each file's tensors with the segments of ``window`` (default: the first file's first) at the top, the window,
    and the classes and frame rate every file shares. An error names the file that lacks the window, the segment
    ``fields`` or (``with_streams``) the continuous stream, or that does not fit the others in one tensor."""
    payloads = [read_tensor_file(path) for path in paths]
    window = window or first_window(payloads[0])
    payloads = [window_of(payload, window, fields, path) for path, payload in zip(paths, payloads, strict=True)]
    if with_streams:
        check_streams(paths, payloads, with_features, with_glove)
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
    return payloads, window, classes, rates.pop()


def _stack_segments(
    payloads: list[dict], n_classes: int, with_glove: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(emg, valid, channel_mask, glove or None) of every subject in one tensor each, repetitions and channels padded
    to the most any subject has (the padding invalid and masked); glove channels without data read zero."""
    n_reps = max(p["emg"].shape[1] for p in payloads)
    n_channels = max(p["emg"].shape[3] for p in payloads)
    shape = (len(payloads), n_classes, n_reps, payloads[0]["emg"].shape[2])
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
    return emg, valid, channel_mask, glove


def _stack_poses(payloads: list[dict], n_classes: int, n_reps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([subject, class, rep, 22] hand poses, [subject, 22] glove sensors with data); zeros and no sensor for a
    subject converted before poses were kept."""
    n_sensors = payloads[0]["glove_mask"].shape[0]
    poses = torch.zeros((len(payloads), n_classes, n_reps, n_sensors))
    pose_mask = torch.zeros((len(payloads), n_sensors), dtype=torch.bool)
    for i, payload in enumerate(payloads):
        if "pose" in payload:
            poses[i, :, : payload["pose"].shape[1]] = payload["pose"]
            pose_mask[i] = payload["glove_mask"]
    return poses, pose_mask


def _stack_features(payloads: list[dict], shape: torch.Size) -> torch.Tensor:
    """[subject, class, rep, frame, channel, 4] Hudgins features, padded as the segments of ``shape`` are."""
    features = torch.zeros((*shape, payloads[0]["features"].shape[-1]))
    for i, payload in enumerate(payloads):
        reps, channels = payload["features"].shape[1], payload["features"].shape[3]
        features[i, :, :reps, :, :channels] = payload["features"]
    return features


def _indices(wanted: Iterable | None, available: list[str], what: str) -> list[int]:
    if wanted is None:
        return list(range(len(available)))
    wanted = list(wanted)
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise InputError(f"unknown {what}(s) {unknown}; the data hold {available}")
    return [available.index(w) for w in wanted]


__all__ = ["DB23", "Normalisation", "Selection", "SubjectInfo"]
