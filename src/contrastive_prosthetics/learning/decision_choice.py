"""The decision rule's settings chosen on the validation streams at the end of training (``evaluation.decision``).

For the hysteresis rule (:mod:`.decision_rules`) every setting of the configuration's grid gets its own rest offset
meeting ``evaluation.rest_false_activation_target`` on the validation streams (on top of the vote's calibrated rest
bias, which the model's scorer adds: :func:`.rest_bias.calibrate_rest_bias` with the rule), every gesture allowed;
the setting with the shortest median onset delay there is kept (ties: the first in the grid), logged beside the
vote's delay at its own bias, and saved in model.pt (``decision``), which every decision path reads. Only the
validation streams are read, never a test frame.

The onset delay is the stream metrics' (``evaluation/stream_metrics.py``, which this stage may not import): from
the start of a movement run to the first frame from which the decision stays right for ``STABLE_MS`` inside it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.units import ms_to_frames
from ..data.ninapro import REST
from .batched_decisions import decide_stretches
from .decision_rules import Hysteresis, decide_rule_subsets, rule_grid
from .rest_bias import RestCalibration, _LaidEndToEnd, calibrate_rest_bias, per_user_biases, rest_calibration
from .training_settings import TrainingSettings

if TYPE_CHECKING:
    from .onset_gate import OnsetGate
    from .train import Setting

log = logging.getLogger(__name__)
STABLE_MS = 100  # as evaluation/stream_metrics.py's: a decision counts as reached once it stays right this long


def onset_delays(decisions: np.ndarray, truth: np.ndarray, starts: np.ndarray, rest: int, stable: int) -> np.ndarray:
    """Frames from the start of each movement run (a run of one gesture in the truth, inside one stretch laid end
    to end from ``starts``) to the first frame from which the decision stays right for ``stable`` frames within the
    run; NaN where it never does."""
    boundary = np.zeros(len(truth), dtype=bool)
    boundary[starts] = True
    boundary[1:] |= truth[1:] != truth[:-1]
    first = np.flatnonzero(boundary)
    ends = np.append(first[1:], len(truth))
    right = np.concatenate(([0], np.cumsum(decisions == truth)))
    delays = []
    for begin, end in zip(first.tolist(), ends.tolist(), strict=True):
        if truth[begin] == rest:
            continue
        offsets = np.arange(begin, end - stable + 1)
        held = right[offsets + stable] - right[offsets] == stable
        delays.append(float(np.argmax(held)) if held.any() else np.nan)
    return np.array(delays)


def _scores(decisions: torch.Tensor, laid: _LaidEndToEnd, rest: int, stable: int, frame_ms: float) -> dict:
    truth, decided = laid.truth.numpy(), decisions.numpy()
    delays = onset_delays(decided, truth, laid.starts.numpy(), rest, stable)
    reached = delays[np.isfinite(delays)]
    at_rest = truth == rest
    return {
        "onset_delay_p50_ms": float(np.median(reached)) * frame_ms if len(reached) else np.inf,
        "onsets_missed": float(np.isnan(delays).mean()) if len(delays) else 0.0,
        "rest_false_activation": float((decided[at_rest] != rest).mean()) if at_rest.any() else 0.0,
    }


def choose_decision(
    stretches: list, classes: list[str], settings: TrainingSettings, frame_rate_hz: float, rest_bias: float
) -> Hysteresis | None:
    """The rule to decide with (None: the vote), chosen on validation ``stretches`` (logits [frame, class] without
    a bias, truth [frame]) as the module says; ``rest_bias`` is the vote's calibrated bias, which the scorer adds to
    rest's float32 logit before any rule decides."""
    grid = rule_grid(settings.decision, frame_rate_hz)
    if not grid or not stretches:
        return None
    rest, frame_ms, target = classes.index(REST), 1000.0 / frame_rate_hz, settings.rest_false_activation_target
    bias = torch.zeros(len(classes))
    bias[rest] = rest_bias  # as the scorer adds it (.stream_scoring.class_bias)
    biased = [(logits + bias, truth) for logits, truth in stretches]
    laid, stable = _LaidEndToEnd.of(biased), ms_to_frames(STABLE_MS, frame_rate_hz)
    every_class = torch.ones(len(classes), dtype=torch.bool)
    vote_frames = ms_to_frames(settings.vote_window_ms, frame_rate_hz)
    vote = _scores(decide_stretches(laid.logits, every_class, vote_frames, laid.starts), laid, rest, stable, frame_ms)
    rows = []
    for rule in grid:
        offset = 0.0 if target is None else calibrate_rest_bias(biased, rest, 0, target, rule).bias
        rule = rule.with_offset(offset)
        decided = decide_rule_subsets(rule, laid.logits, every_class[None], laid.starts, rest)[0]
        rows.append((rule, _scores(decided, laid, rest, stable, frame_ms)))
    chosen, scores = min(rows, key=lambda row: row[1]["onset_delay_p50_ms"])  # the first of equal delays
    table = "\n".join(f"  {rule}: {row}" for rule, row in rows)
    log.info("decision rule grid on the validation streams (vote %s: %s):\n%s", settings.vote_window_ms, vote, table)
    log.info("decision rule chosen: %s (%s)", chosen, scores)
    return chosen


def calibrations(
    stretches: list, classes: list[str], settings: TrainingSettings, frame_rate_hz: float, subjects: list[str]
) -> tuple[RestCalibration | None, Hysteresis | None]:
    """The rest calibration (:func:`.rest_bias.rest_calibration`; with ``evaluation.rest_promise: per_user`` each
    validation subject's own bias too, ``subjects`` naming each stretch's, :func:`.rest_bias.per_user_biases`) and
    the decision rule (:func:`choose_decision`, on top of the pooled bias) of validation ``stretches``: what the end
    of training saves in model.pt, networks and LDA alike."""
    calibration = rest_calibration(stretches, classes, settings, frame_rate_hz)
    if calibration is not None and settings.rest_promise == "per_user":
        vote_frames = ms_to_frames(settings.vote_window_ms, frame_rate_hz)
        own = per_user_biases(
            stretches, subjects, classes.index(REST), vote_frames, calibration.target, calibration.bias
        )
        calibration = replace(calibration, per_subject=own)
        log.info("per-user rest biases (never below the pooled %.4f): %s", calibration.bias, own)
    bias = 0.0 if calibration is None else calibration.bias
    return calibration, choose_decision(stretches, classes, settings, frame_rate_hz, bias)


def setting_calibrations(
    setting: Setting, model: torch.nn.Module, gate: OnsetGate | None, memo: dict | None = None
) -> tuple[RestCalibration | None, Hysteresis | None]:
    """:func:`calibrations` on the validation selection's streams, with the onset ``gate`` in front (scored once for
    both; not at all when there is neither a target nor a rule to choose)."""
    settings, rate = setting.settings, setting.data.frame_rate_hz
    if settings.rest_false_activation_target is None and not rule_grid(settings.decision, rate):
        return None, None
    scored = setting.validation_streams(model, gate, memo)
    names = [""] * len(scored)  # whose each stretch is: what a per-user promise reads
    if settings.rest_promise == "per_user":
        names = [setting.data.subject_names[int(setting.data.streams.subject[int(p[0])])] for p, _, _ in scored]
    return calibrations([(logits, truth) for _, logits, truth in scored], setting.data.classes, settings, rate, names)
