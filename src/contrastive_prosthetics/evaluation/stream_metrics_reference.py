"""The straightforward stream metrics :func:`.stream_metrics.stream_metrics` is tested against (and ``python -m bench
stream`` times): the controller's rule as first written (:func:`..learning.decisions.decide_summing_every_frame`)
called once per subset × vote length × stretch, each movement run walked in Python. Kept apart from the vectorised
path so that the two share no arithmetic beyond the decision rule and :func:`..data.preprocess.find_runs`."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import torch

from ..core.units import ms_to_frames
from ..data.ninapro import REST
from ..data.preprocess import find_runs
from ..learning.decisions import decide_summing_every_frame
from .stream_metrics import ONSET_EVENT_MS, STABLE_MS, STEADY_AFTER_MS, TRANSITION_MS


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


def _reference_online_counts(decisions: np.ndarray, truth: np.ndarray, keep: np.ndarray, rest: int, within: int):
    """The counts of the field's online metrics in one stretch, run by run and frame pair by frame pair."""
    active = keep & (decisions != rest)
    counts = {"active": int(active.sum()), "active_wrong": int((decisions != truth)[active].sum())}
    both_scored = keep[1:] & keep[:-1]
    counts["decision_changes"] = int((decisions[1:] != decisions[:-1])[both_scored].sum())
    counts["truth_changes"] = int((truth[1:] != truth[:-1])[both_scored].sum())
    counts["onsets"] = counts["onsets_detected"] = 0
    starts, stops, values = find_runs(truth)
    for start, stop, value in zip(starts, stops, values, strict=True):
        if value == 0 or not keep[start]:
            continue
        counts["onsets"] += 1
        counts["onsets_detected"] += int((decisions[start : min(start + within, stop)] == value).any())
    return counts


def _reference_counts(decisions, truth, mask, in_guard, rest, rate_hz) -> tuple[dict, list]:
    """One stretch's frame counts and the onset delays of its chosen movements."""
    keep, right, is_rest = mask[truth], decisions == truth, truth == rest
    near = _reference_transition_rest(truth, ms_to_frames(TRANSITION_MS, rate_hz))
    wrong = (decisions != rest) & is_rest
    changes, steady = _reference_steady_changes(decisions, truth, mask, ms_to_frames(STEADY_AFTER_MS, rate_hz))
    counts = {
        "guarded": int((keep & in_guard).sum()),
        "guard_right": int(right[keep & in_guard].sum()),
        "settled": int((keep & ~in_guard).sum()),
        "settled_right": int(right[keep & ~in_guard].sum()),
        "right": int(right[keep].sum()),
        "movement_right": int(right[keep & ~is_rest].sum()),
        "rest_right": int(right[is_rest].sum()),
        "movement": int((keep & ~is_rest).sum()),
        "rests": int(is_rest.sum()),
        "false": int((decisions[is_rest] != rest).sum()),
        "transition": int(near.sum()),
        "transition_false": int((decisions[near] != rest).sum()),
        "events": int((wrong & ~np.concatenate(([False], wrong[:-1]))).sum()),
        "changes": changes,
        "steady": steady,
    }
    counts |= _reference_online_counts(decisions, truth, keep, rest, ms_to_frames(ONSET_EVENT_MS, rate_hz))
    return counts, _reference_onset_delays(decisions, truth, mask, ms_to_frames(STABLE_MS, rate_hz))


def _reference_metrics(c: Counter, delays: list, frame_ms: float) -> dict:
    """A row's metrics from its counts summed over every stretch and its onset delays (NaN: missed)."""
    reached = np.array([d for d in delays if not np.isnan(d)])
    frames = c["movement"] + c["rests"]
    return {
        "accuracy": c["right"] / max(frames, 1),
        "movement_accuracy": c["movement_right"] / max(c["movement"], 1),
        "rest_accuracy": c["rest_right"] / max(c["rests"], 1),
        "rest_false_activation": c["false"] / max(c["rests"], 1),
        "quiet_rest_false_activation": (c["false"] - c["transition_false"]) / max(c["rests"] - c["transition"], 1),
        "transition_rest_false_activation": c["transition_false"] / max(c["transition"], 1),
        "false_activations_per_min": c["events"] / max(c["rests"], 1) * 60000 / frame_ms,
        "onset_delay_p50_ms": float(np.median(reached)) * frame_ms if reached.size else np.nan,
        "onset_delay_p90_ms": float(np.percentile(reached, 90)) * frame_ms if reached.size else np.nan,
        "onsets_missed": (len(delays) - reached.size) / max(len(delays), 1),
        "changes_per_s": c["changes"] / max(c["steady"], 1) * 1000 / frame_ms,
        "active_error_rate": c["active_wrong"] / c["active"] if c["active"] else np.nan,
        "instability": max(c["decision_changes"] - c["truth_changes"], 0) / frames if frames else np.nan,
        "onset_within_250ms": c["onsets_detected"] / c["onsets"] if c["onsets"] else np.nan,
        "frames": frames,
        "guard_frames": c["guarded"],
        "guard_accuracy": c["guard_right"] / c["guarded"] if c["guarded"] else np.nan,
        "settled_accuracy": c["settled_right"] / c["settled"] if c["settled"] else np.nan,
    }


def straightforward_stream_metrics(
    scored: list,
    classes: list[str],
    subsets: dict[int, torch.Tensor],
    vote_frames: list[int],
    frame_ms: float,
    guard: np.ndarray | None = None,
) -> pd.DataFrame:
    """The reference :func:`.stream_metrics.stream_metrics` is tested against: the rule as first written
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
                total, delays = Counter(), []
                for _, positions, logits, truth in scored:
                    decisions = decide_summing_every_frame(logits, allowed, votes).numpy()
                    in_guard = np.zeros(len(truth), bool) if guard is None else guard[positions]
                    counts, stretch_delays = _reference_counts(decisions, truth, mask, in_guard, rest, rate_hz)
                    total.update(counts)
                    delays += stretch_delays
                row = {"k": k, "trial": trial, "vote_frames": votes, "vote_ms": votes * frame_ms}
                rows.append(row | _reference_metrics(total, delays, frame_ms))
    return pd.DataFrame(rows)
