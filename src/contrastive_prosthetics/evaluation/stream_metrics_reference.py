"""The straightforward stream metrics :func:`.stream_metrics.stream_metrics` is tested against (and ``python -m bench
stream`` times): the controller's rule as first written (:func:`..learning.decisions.decide_summing_every_frame`)
called once per subset × vote length × stretch, each movement run walked in Python. Kept apart from the vectorised
path so that the two share no arithmetic beyond the decision rule and :func:`..data.preprocess.find_runs`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..core.units import ms_to_frames
from ..data.ninapro import REST
from ..data.preprocess import find_runs
from ..learning.decisions import decide_summing_every_frame
from .stream_metrics import STABLE_MS, STEADY_AFTER_MS, TRANSITION_MS


def _reference_onset_delays(decisions: np.ndarray, truth: np.ndarray, allowed: np.ndarray, stable: int) -> list:
    delays = []
    starts, stops, values = find_runs(truth)
    for start, stop, value in zip(starts, stops, values, strict=True):
        if value == 0 or not allowed[value]:
            continue
        right = decisions[start:stop] == value
        run = np.convolve(right.astype(int), np.ones(stable, int), mode="valid") == stable  # right for `stable`
        reached = np.flatnonzero(run)
        delays.append(float(reached[0]) if reached.size else np.nan)
    return delays


def _reference_steady_changes(decisions: np.ndarray, truth: np.ndarray, allowed: np.ndarray, skip: int) -> tuple:
    changes = frames = 0
    starts, stops, values = find_runs(truth)
    for start, stop, value in zip(starts, stops, values, strict=True):
        if value == 0 or not allowed[value] or stop - start <= skip + 1:
            continue
        steady = decisions[start + skip : stop]
        changes += int((steady[1:] != steady[:-1]).sum())
        frames += len(steady) - 1
    return changes, frames


def _reference_transition_rest(truth: np.ndarray, span: int) -> np.ndarray:
    """Rest frames within ``span`` frames after a movement run ends or before one starts, run by run."""
    near = np.zeros(len(truth), dtype=bool)
    starts, stops, values = find_runs(truth)
    for run, (start, stop, value) in enumerate(zip(starts, stops, values, strict=True)):
        if value != 0:
            continue
        if run > 0:  # the release after the movement before
            near[start : min(start + span, stop)] = True
        if run < len(starts) - 1:  # the cue before the movement after
            near[max(stop - span, start) : stop] = True
    return near


def straightforward_stream_metrics(
    scored: list,
    classes: list[str],
    subsets: dict[int, torch.Tensor],
    vote_frames: list[int],
    frame_ms: float,
    guard: np.ndarray | None = None,
) -> pd.DataFrame:
    """The reference :func:`stream_metrics` is tested against: the rule as first written
    (:func:`..learning.decisions.decide_summing_every_frame`) per subset × vote × stretch, each movement run walked in
    Python (``python -m bench stream`` compares their speed)."""
    rest, rate_hz = classes.index(REST), 1000 / frame_ms
    guard = None if guard is None else np.asarray(guard, dtype=bool)
    rows = []
    for k, chosen in subsets.items():
        for trial, gestures in enumerate(chosen):
            allowed = torch.zeros(len(classes), dtype=torch.bool)
            allowed[1:] = gestures
            allowed[rest] = True
            mask = allowed.numpy()
            for votes in vote_frames:
                right = movement_right = rest_right = movement = rests = false = changes = steady = 0
                transition = transition_false = events = guarded = guard_right = settled = settled_right = 0
                delays = []
                for _, positions, logits, truth in scored:
                    decisions = decide_summing_every_frame(logits, allowed, votes).numpy()
                    keep = mask[truth]
                    in_guard = np.zeros(len(truth), bool) if guard is None else guard[positions]
                    guarded += int((keep & in_guard).sum())
                    guard_right += int((decisions == truth)[keep & in_guard].sum())
                    settled += int((keep & ~in_guard).sum())
                    settled_right += int((decisions == truth)[keep & ~in_guard].sum())
                    is_rest = truth == rest
                    right += int((decisions == truth)[keep].sum())
                    movement_right += int((decisions == truth)[keep & ~is_rest].sum())
                    rest_right += int((decisions == truth)[is_rest].sum())
                    movement += int((keep & ~is_rest).sum())
                    rests += int(is_rest.sum())
                    false += int((decisions[is_rest] != rest).sum())
                    near = _reference_transition_rest(truth, ms_to_frames(TRANSITION_MS, rate_hz))
                    transition += int(near.sum())
                    transition_false += int((decisions[near] != rest).sum())
                    wrong = (decisions != rest) & is_rest
                    events += int((wrong & ~np.concatenate(([False], wrong[:-1]))).sum())
                    delays += _reference_onset_delays(decisions, truth, mask, ms_to_frames(STABLE_MS, rate_hz))
                    c, f = _reference_steady_changes(decisions, truth, mask, ms_to_frames(STEADY_AFTER_MS, rate_hz))
                    changes, steady = changes + c, steady + f
                reached = np.array([d for d in delays if not np.isnan(d)])
                rows.append(
                    {
                        "k": k,
                        "trial": trial,
                        "vote_frames": votes,
                        "vote_ms": votes * frame_ms,
                        "accuracy": right / max(movement + rests, 1),
                        "movement_accuracy": movement_right / max(movement, 1),
                        "rest_accuracy": rest_right / max(rests, 1),
                        "rest_false_activation": false / max(rests, 1),
                        "quiet_rest_false_activation": (false - transition_false) / max(rests - transition, 1),
                        "transition_rest_false_activation": transition_false / max(transition, 1),
                        "false_activations_per_min": events / max(rests, 1) * 60000 / frame_ms,
                        "onset_delay_p50_ms": float(np.median(reached)) * frame_ms if reached.size else np.nan,
                        "onset_delay_p90_ms": float(np.percentile(reached, 90)) * frame_ms if reached.size else np.nan,
                        "onsets_missed": (len(delays) - reached.size) / max(len(delays), 1),
                        "changes_per_s": changes / max(steady, 1) * 1000 / frame_ms,
                        "frames": movement + rests,
                        "guard_frames": guarded,
                        "guard_accuracy": guard_right / guarded if guarded else np.nan,
                        "settled_accuracy": settled_right / settled if settled else np.nan,
                    }
                )
    return pd.DataFrame(rows)
