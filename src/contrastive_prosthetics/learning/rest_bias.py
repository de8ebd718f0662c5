"""The rest decision calibrated on validation streams: a bias added to rest's score, so that a resting hand stays at
rest.

A controller runs on a stream that is mostly rest (about 58 % of DB1's test frames), while the network trained on
groups holding one frame of every class, rest one class among K: a plain argmax leaves rest under-weighted, and
the arm moves on many rest frames. The fix that needs no retraining is a prior: one number, added to rest's logit
on every frame before the decision (:func:`.decisions.decide`), chosen on the validation recordings' continuous
streams (never the test ones) as the smallest bias whose rest false activation (rest frames decided as a gesture,
after the vote, with every gesture allowed) is at most the target. The smallest, because a larger bias only costs
movement frames. A negative bias is allowed: a quiet model may give some of its margin back to movements.

The bias is saved in ``model.pt`` and applied by :class:`.inference.FrameScorer`, so stream evaluation, the
controller, replay and the exported model all decide with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.units import ms_to_frames
from ..data.ninapro import REST
from .batched_decisions import decide_stretches
from .dataset import Selection
from .decision_rules import Hysteresis, decide_rule_subsets
from .inference import FrameScorer
from .onset_gate import OnsetGate
from .poses import with_subject_codes
from .stream_scoring import StreamScoring, with_gate
from .training_settings import TrainingSettings

if TYPE_CHECKING:
    from .train import Setting

log = logging.getLogger(__name__)
BISECTION_STEPS = 40  # halvings of the bracket: far below any logit's rounding
# A decision rule's offset is bisected to this width only: each step decides every validation frame one by one
# (the rule's recursion), and a thousandth of a logit moves no decision that matters (18 steps, not 40).
RULE_TOLERANCE = 1e-3
RULE_REACH = 50.0  # beyond the largest margin, a rule's softmax gives every gesture below exp(-50): never entered


@dataclass(frozen=True)
class RestCalibration:
    bias: float  # added to rest's logit on every frame
    target: float  # the rest false activation asked for
    false_activation: float  # on the validation streams, with the bias
    false_activation_before: float  # on the validation streams, without it
    frames: int  # rest frames the rates count
    # evaluation.rest_promise per_user: each validation subject's own bias (never below ``bias``), by name
    per_subject: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class _LaidEndToEnd:
    """Stretches (logits [frame, class], truth [frame]) laid end to end once, to be decided at many biases: the
    controller restarts at each stretch (:func:`.batched_decisions.decide_stretches`)."""

    logits: torch.Tensor
    truth: torch.Tensor
    starts: torch.Tensor

    @classmethod
    def of(cls, stretches: list) -> _LaidEndToEnd:
        lengths = torch.tensor([len(logits) for logits, _ in stretches], dtype=torch.long)
        starts = torch.cumsum(lengths, 0) - lengths
        truth = torch.cat([torch.as_tensor(np.asarray(labels)) for _, labels in stretches])
        return cls(torch.cat([logits for logits, _ in stretches]), truth, starts[lengths > 0])

    def false_activation(
        self, rest: int, vote_frames: int, bias: float, rule: Hysteresis | None = None
    ) -> tuple[float, int]:
        """With the vote (``rule`` None) the bias is added to rest's float32 logits; with a ``rule`` it is the
        rule's own rest offset (:mod:`.decision_rules`), the logits as they are."""
        every_class = torch.ones(self.logits.shape[1], dtype=torch.bool)
        if rule is not None:
            decisions = decide_rule_subsets(rule.with_offset(bias), self.logits, every_class[None], self.starts, rest)[
                0
            ]
        else:
            shifted = self.logits.clone()
            shifted[:, rest] += bias
            decisions = decide_stretches(shifted, every_class, vote_frames, self.starts)
        at_rest = self.truth == rest
        frames = int(at_rest.sum())
        return int((decisions[at_rest] != rest).sum()) / max(frames, 1), frames


def rest_false_activation(stretches: list, rest: int, vote_frames: int, bias: float) -> tuple[float, int]:
    """Rest frames decided as a gesture over every stretch (logits [frame, class], truth [frame]), every class
    allowed, the controller restarting at each stretch; and the number of rest frames."""
    if not stretches:
        return 0.0, 0
    return _LaidEndToEnd.of(stretches).false_activation(rest, vote_frames, bias)


def smallest_meeting(rate_at, reach: float, target: float, tolerance: float = 0.0) -> float:
    """The smallest bias in [-reach, reach] whose rate ``rate_at(bias)`` is at most ``target``, by bisection: the rate
    never rises as the bias grows, and at ``reach`` every frame is decided as rest. ``BISECTION_STEPS`` halvings, or
    fewer once the bracket is narrower than ``tolerance``."""
    low, high = -reach, reach
    for _ in range(BISECTION_STEPS):
        if high - low < tolerance:
            break
        middle = (low + high) / 2
        if rate_at(middle) <= target:
            high = middle
        else:
            low = middle
    return high


def calibrate_rest_bias(
    stretches: list, rest: int, vote_frames: int, target: float, rule: Hysteresis | None = None
) -> RestCalibration:
    """The smallest rest bias meeting ``target`` on the validation ``stretches`` (see the module), by bisection:
    more bias never decides fewer frames as rest, so the rate falls as the bias grows. With a decision ``rule``
    (None: the vote of ``vote_frames``), the rule's own rest offset, on logits that already hold any bias."""
    if not stretches:
        return RestCalibration(0.0, target, 0.0, 0.0, 0)
    laid = _LaidEndToEnd.of(stretches)
    before, frames = laid.false_activation(rest, vote_frames, 0.0, rule)
    if frames == 0:
        return RestCalibration(0.0, target, before, before, 0)
    # Beyond the largest margin, rest wins every frame (or loses every one).
    reach = float((laid.logits - laid.logits[:, rest : rest + 1]).abs().max()) + 1.0
    reach += 0.0 if rule is None else RULE_REACH
    tolerance = 0.0 if rule is None else RULE_TOLERANCE
    high = smallest_meeting(
        lambda bias: laid.false_activation(rest, vote_frames, bias, rule)[0], reach, target, tolerance
    )
    after, _ = laid.false_activation(rest, vote_frames, high, rule)
    return RestCalibration(high, target, after, before, frames)


def shared_margin(users: list[tuple[list, float]], rest: int, vote_frames: int, target: float) -> float:
    """The smallest margin that, added to each user's own bias, makes the users' mean rest false activation meet
    ``target``: ``users`` holds per user (stretches (logits [frame, class], truth [frame]) never fitted, the bias set
    on the ones fitted). The mean of the rates, not of the users' own margins: the rate is convex in the bias, so
    a mean margin leaves the mean rate above the target (one user: that user's own margin, up to the bisection).
    Users without a rest frame are left out; none left: 0."""
    laid = [(_LaidEndToEnd.of(stretches), bias) for stretches, bias in users if stretches]
    laid = [(stretches, bias) for stretches, bias in laid if bool((stretches.truth == rest).any())]
    if not laid:
        return 0.0

    def mean_rate(margin: float) -> float:
        return float(np.mean([s.false_activation(rest, vote_frames, bias + margin)[0] for s, bias in laid]))

    # Beyond every user's largest margin from its own bias, rest wins every frame (or loses every one).
    reach = max(float((s.logits - s.logits[:, rest : rest + 1]).abs().max()) + abs(bias) for s, bias in laid) + 1.0
    return smallest_meeting(mean_rate, reach, target)


def per_user_biases(
    stretches: list, subjects: list[str], rest: int, vote_frames: int, target: float, floor: float
) -> dict[str, float]:
    """Each subject's own rest bias: the smallest meeting ``target`` on their own stretches (``subjects`` names each
    stretch's), never below ``floor`` (the bias meeting it on every subject's pooled): one repetition's rest shows a
    user's quiet moments better than their restless ones, so a quiet user keeps the population's bias and a restless
    one gets more (evaluation.rest_promise: per_user)."""
    by_subject: dict[str, list] = {}
    for stretch, subject in zip(stretches, subjects, strict=True):
        by_subject.setdefault(subject, []).append(stretch)
    return {
        subject: max(calibrate_rest_bias(own, rest, vote_frames, target).bias, floor)
        for subject, own in sorted(by_subject.items())
    }


def subject_rest_bias(saved: dict, subject: str) -> float:
    """The rest bias a model.pt decides a subject's recording with: their own (a per_user promise, for a subject it
    validated on), else the model's."""
    own = (saved.get("calibration") or {}).get("per_subject") or {}
    return float(own.get(subject, saved.get("rest_bias", 0.0)))


def rest_calibration(
    stretches: list, classes: list[str], settings: TrainingSettings, frame_rate_hz: float
) -> RestCalibration | None:
    """The rest bias for ``settings.rest_false_activation_target`` on validation ``stretches`` (logits [frame, class]
    without a bias, truth [frame]), decided with ``settings.vote_window_ms``; None when no target is set. What the
    networks and LDA alike are calibrated with at the end of training."""
    target = settings.rest_false_activation_target
    if target is None:
        return None
    vote = ms_to_frames(settings.vote_window_ms, frame_rate_hz)
    calibration = calibrate_rest_bias(stretches, classes.index(REST), vote, target)
    log.info("rest calibration on the validation streams: %s", calibration)
    return calibration


def validation_streams(
    model: torch.nn.Module,
    *,
    scoring: StreamScoring,
    selection: Selection,
    pool: dict[int, list[int]],
    gate: OnsetGate | None = None,
    memo: dict | None = None,
) -> list[tuple[np.ndarray, torch.Tensor, np.ndarray]]:
    """(positions, logits, truth) of every stretch of the ``selection``'s subjects' recordings during its
    repetitions (the validation ones: never a test frame), scored as the stream evaluation scores test streams
    (``scoring``): the controller's scorer, each stretch with the network's adaptation state
    (:meth:`.stream_scoring.StreamScoring.networks`: from ``pool``, or deployable from the recording before
    it) and each subject's class codes when given, the onset ``gate`` in front (if any), no bias. The stretches are
    those the raw stream holds in these repetitions: a zero-shot fold's held-out frames are outside every one there
    (:func:`.folds.training_view`). ``memo``: adapted statistics of these weights to reuse."""
    raw, context = scoring.raw, model.config.context
    out = []
    for subject in selection.subjects.tolist():
        for repetition in (selection.repetitions + 1).tolist():
            for network, stretches in scoring.networks(model, subject, repetition, pool[subject], memo):
                network = with_subject_codes(network, scoring.codes, subject)
                scorer = FrameScorer(network, scoring.normalisation, raw.channel_mask[subject], len(raw.classes))
                for positions in stretches:
                    index = torch.from_numpy(positions).to(raw.streams.frames.device)
                    logits = with_gate(
                        scorer(raw.stream_context(index, context), batch=4096).cpu(), raw, subject, positions, gate
                    )
                    out.append((positions, logits, raw.streams.classes[index].cpu().numpy()))
    return out


def setting_rest_calibration(
    setting: Setting, model: torch.nn.Module, gate: OnsetGate | None, memo: dict | None = None
) -> RestCalibration | None:
    """The rest bias for ``training.rest_false_activation_target`` on the validation selection's streams, with the
    onset ``gate`` in front (None when no target is set): see :mod:`.rest_bias`."""
    if setting.settings.rest_false_activation_target is None:
        return None
    streams = [(logits, truth) for _, logits, truth in setting.validation_streams(model, gate, memo)]
    return rest_calibration(streams, setting.data.classes, setting.settings, setting.data.frame_rate_hz)
