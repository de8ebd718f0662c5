"""Stream metrics: every scored stretch's causal decisions, for many gesture subsets and vote lengths at once.

The straightforward way (:func:`.stream_metrics_reference.straightforward_stream_metrics`, kept as the reference
the tests compare with) calls the controller's rule as first written
(:func:`..learning.decisions.decide_summing_every_frame`) once per subset × vote length × stretch and walks each
movement run in Python. Here many stretches are laid end to end and decided at once (the vote restarting at each) by
:func:`..learning.batched_decisions.decide_subsets` (the vote's float64 score sums only where a vote is tied), the
decisions of a chunk of subsets are one tensor [subset, frame], and the onset delays and steady-state decision
changes are reductions over frames grouped by their movement run. The arithmetic is
:func:`..learning.decisions.decide`'s, in the same order, so the decisions are the same bits and every metric equals
the reference's.

Metrics per (k, subset, vote) over the frames whose true class is rest or a chosen gesture: accuracy over all of
them, over movement frames and over rest frames; the rest false-activation rate (rest frames decided as a
gesture); the onset delay of each chosen movement (from the relabelled onset to the first frame from which the
decision stays correct for ``STABLE_MS``; median and 90th percentile, and the share never reached); decision
changes per second during steady movement (from ``STEADY_AFTER_MS`` after the onset to the end: chattering). The
frames in the guard band (``guard``, :func:`..learning.stream_sampling.guard_mask`): ``guard_frames``, accuracy over
them (``guard_accuracy``) and over the others (``settled_accuracy``; NaN where there are none).

The field's online metrics beside them (libemg's ``AER`` and ``INS``, docs/realtime.md): ``active_error_rate``, of the
scored frames decided as a gesture the share decided wrong (NaN where none is); ``instability``, the decision changes
between consecutive scored frames of a stretch less the truth's, floored at 0 over the row's sum, per scored frame;
``onset_within_250ms``, the share of chosen movements whose decision is right on some frame fewer than
``ONSET_EVENT_MS`` after the onset (an event detected, whether or not it stays; NaN where there is no onset).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..core.units import ms_to_frames
from ..data.ninapro import REST
from ..data.preprocess import find_runs
from ..learning.batched_decisions import decide_subsets
from ..learning.decision_rules import VOTE

STABLE_MS = 100  # a decision counts as reached once it stays right this long
STEADY_AFTER_MS = 1000  # steady movement starts this long after the onset
# Rest this close to a movement (the release after it, the cue before the relabelled onset) is transition rest;
# the rest is quiet rest, where a resting hand must stay still.
TRANSITION_MS = 500
# A movement counts as detected (an event) when some decision in its first 250 ms names it: the field's
# event-detection window (docs/realtime.md), not a requirement that the decision stays, as the onset delay's.
ONSET_EVENT_MS = 250
GROUP_FRAMES = 2**16  # frames of short stretches decided together: few calls, and [subset, frame] tensors stay small


def allowed_masks(classes: list[str], subsets: dict[int, torch.Tensor]) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """Every (k, trial) in order, and its [class] mask: the chosen gestures plus rest."""
    keys, masks = [], []
    for k, chosen in subsets.items():
        for trial, gestures in enumerate(chosen):
            allowed = torch.zeros(len(classes), dtype=torch.bool)
            allowed[1:] = gestures
            allowed[classes.index(REST)] = True
            keys.append((k, trial))
            masks.append(allowed)
    return keys, torch.stack(masks) if masks else torch.zeros((0, len(classes)), dtype=torch.bool)


@dataclass(frozen=True)
class _Runs:
    """A stretch's truth as maximal runs of one class, and each frame's run."""

    value: torch.Tensor  # [run] class
    of_frame: torch.Tensor  # [frame] run index
    offset: torch.Tensor  # [frame] frames since its run started
    left: torch.Tensor  # [frame] frames until its run ends (1 on its last frame)
    transition: torch.Tensor  # [frame] rest within the transition span after or before a movement of its stretch
    stretch_start: torch.Tensor  # [frame] the first frame of its stretch

    @classmethod
    def of(cls, truth: np.ndarray, stretch: np.ndarray, transition_frames: int = 0) -> _Runs:
        """Runs of ``truth`` that also end where ``stretch`` (each frame's stretch number) changes."""
        starts, stops, _ = find_runs(stretch * (int(truth.max(initial=0)) + 1) + truth)
        lengths = torch.from_numpy(stops - starts)
        of_frame = torch.repeat_interleave(torch.arange(len(starts)), lengths)
        offset = torch.arange(len(truth)) - torch.from_numpy(starts)[of_frame]
        value, left = torch.from_numpy(truth[starts]), lengths[of_frame] - offset
        run_stretch = torch.from_numpy(stretch[starts])
        same = run_stretch[1:] == run_stretch[:-1]  # run r and run r + 1 lie in one stretch
        after_movement, before_movement = (
            torch.zeros(len(starts), dtype=torch.bool),
            torch.zeros_like(value, dtype=bool),
        )
        after_movement[1:] = same & (value[:-1] != 0)
        before_movement[:-1] = same & (value[1:] != 0)
        near = (after_movement[of_frame] & (offset < transition_frames)) | (
            before_movement[of_frame] & (left <= transition_frames)
        )
        first = torch.ones(len(truth), dtype=torch.bool)
        first[1:] = torch.from_numpy(stretch[1:] != stretch[:-1])
        return cls(value, of_frame, offset, left, near & (value[of_frame] == 0), first)


def onset_delays(right: torch.Tensor, runs: _Runs, stable: int) -> torch.Tensor:
    """[subset, run] frames from each run's start to the first frame from which the decision stays right for
    ``stable`` frames within the run (NaN when it never does)."""
    n_subsets, n_frames = right.shape
    running = torch.zeros((n_subsets, n_frames + 1), dtype=torch.int32)
    running[:, 1:] = right.cumsum(1)
    ahead = torch.arange(n_frames) + stable
    fits = runs.left >= stable  # the stable stretch ends inside the run
    window = running[:, ahead.clamp(max=n_frames)] - running[:, :n_frames]
    reached = fits & (window == stable)
    never = torch.iinfo(torch.int64).max
    candidate = torch.where(reached, runs.offset, never)
    first = torch.full((n_subsets, len(runs.value)), never, dtype=torch.int64)
    first.scatter_reduce_(1, runs.of_frame.expand(n_subsets, -1), candidate, "amin")
    return torch.where(first == never, torch.nan, first.double())


def false_activation_starts(false: torch.Tensor, stretch_start: torch.Tensor) -> torch.Tensor:
    """[subset, frame] the first frame of each false activation: a rest frame decided as a gesture whose previous
    frame (in its stretch) was not one."""
    previous = torch.zeros_like(false)
    previous[:, 1:] = false[:, :-1]
    return false & (~previous | stretch_start)


def detected_onsets(right: torch.Tensor, runs: _Runs, within: int) -> torch.Tensor:
    """[subset, run] True where the decision is right on some frame fewer than ``within`` frames after the run starts
    (within the run): the movement detected as an event, whether or not the decision then stays."""
    early_hits = (right & (runs.offset < within)).to(torch.int32)
    hits = torch.zeros((len(right), len(runs.value)), dtype=torch.int32)
    hits.index_add_(1, runs.of_frame, early_hits)
    return hits > 0


def online_counts(decisions, truth, keep, runs, rest, chosen_movement, within) -> dict:
    """Per subset: the counts behind the field's online metrics (active error, instability, onsets detected within
    ``within`` frames) over the scored frames ``keep`` [subset, frame] of one group of stretches."""
    active = keep & (decisions != rest)
    # Consecutive frames of one stretch, both scored: between them a change of decision is either needed (the
    # truth changed too) or an unstable one. A stretch's first frame follows nothing (the controller restarts).
    pairs = keep.clone()
    pairs[:, 1:] &= keep[:, :-1]
    pairs &= ~runs.stretch_start
    decision_changed = torch.zeros_like(keep)
    decision_changed[:, 1:] = decisions[:, 1:] != decisions[:, :-1]
    truth_changed = torch.zeros_like(runs.stretch_start)
    truth_changed[1:] = truth[1:] != truth[:-1]
    detected = detected_onsets(decisions == truth, runs, within)
    return {
        "active": active.sum(1),
        "active_wrong": (active & (decisions != truth)).sum(1),
        "decision_changes": (decision_changed & pairs).sum(1),
        "truth_changes": (truth_changed & pairs).sum(1),
        "onsets": chosen_movement.sum(1),
        "onsets_detected": (detected & chosen_movement).sum(1),
    }


def _stretch_counts(decisions, truth, runs, allowed, rest, stable, skip, guard, within):
    """Per subset of one stretch: the frame counts and the onset delays of its chosen movements (``guard``: [frame]
    True inside the guard band)."""
    truth_t = torch.from_numpy(truth)
    right = decisions == truth_t
    keep = allowed[:, truth_t]  # [subset, frame]: rest and the chosen gestures, what this user does
    in_guard = torch.from_numpy(guard)
    is_rest = truth_t == rest
    movement = keep & ~is_rest
    changed = torch.zeros_like(right)
    changed[:, 1:] = decisions[:, 1:] != decisions[:, :-1]
    # Steady movement: the frames from `skip` after a chosen movement's onset to its end, each compared with the one
    # before it, both inside the run (so inside the stretch).
    steady = allowed[:, truth_t] & (truth_t != 0) & (runs.offset >= skip + 1)
    counts = {
        "right": (right & keep).sum(1),
        "guard": (keep & in_guard).sum(1),
        "guard_right": (right & keep & in_guard).sum(1),
        "settled": (keep & ~in_guard).sum(1),
        "settled_right": (right & keep & ~in_guard).sum(1),
        "movement_right": (right & movement).sum(1),
        "rest_right": (right & is_rest).sum(1),
        "movement": movement.sum(1),
        "rests": is_rest.sum().expand(len(decisions)),
        "false": ((decisions != rest) & is_rest).sum(1),
        "transition": runs.transition.sum().expand(len(decisions)),
        "transition_false": ((decisions != rest) & runs.transition).sum(1),
        "events": false_activation_starts((decisions != rest) & is_rest, runs.stretch_start).sum(1),
        "changes": (changed & steady).sum(1),
        "steady": steady.sum(1),
    }
    chosen_movement = allowed[:, runs.value] & (runs.value != 0)  # [subset, run]
    counts |= online_counts(decisions, truth_t, keep, runs, rest, chosen_movement, within)
    delays = onset_delays(right, runs, stable).masked_fill(~chosen_movement, -1.0)  # -1: not this user's onset
    return counts, delays


def _stretch_groups(lengths: list[int]) -> list[list[int]]:
    """Consecutive stretches in groups of about ``GROUP_FRAMES`` frames (a longer stretch alone)."""
    groups, frames = [], GROUP_FRAMES
    for index, length in enumerate(lengths):
        if frames + length > GROUP_FRAMES:
            groups.append([])
            frames = 0
        groups[-1].append(index)
        frames += length
    return groups


def stream_metrics(
    scored: list,
    classes: list[str],
    subsets: dict[int, torch.Tensor],
    vote_frames: list[int],
    frame_ms: float,
    guard: np.ndarray | None = None,
    rule=None,
) -> pd.DataFrame:
    """One row per (k, subset, vote) over every scored stretch ``(subject, positions, logits, truth)``; ``guard``
    ([stream frame] bool, read at each stretch's positions; None: no guard band) marks the guard band. ``rule``
    (:class:`..learning.decision_rules.Hysteresis`; None: the vote) decides instead of the vote."""
    keys, allowed = allowed_masks(classes, subsets)
    rate_hz = 1000 / frame_ms
    rest, stable = classes.index(REST), ms_to_frames(STABLE_MS, rate_hz)
    skip, transition = ms_to_frames(STEADY_AFTER_MS, rate_hz), ms_to_frames(TRANSITION_MS, rate_hz)
    within = ms_to_frames(ONSET_EVENT_MS, rate_hz)
    guard = None if guard is None else np.asarray(guard, dtype=bool)
    totals = {votes: {} for votes in vote_frames}
    delays = {votes: [] for votes in vote_frames}
    for subject, positions, logits, _ in scored:
        if not torch.isfinite(logits).all():
            # NaN orders differently in an argmax over all classes and over a subset's columns: no decision is
            # defined, and a model that scores NaN is broken, not merely inaccurate.
            raise ValueError(
                f"stream of subject {subject} (frames {positions[0]}-{positions[-1]}): the model scored NaN or "
                "infinity; check the model file (retrain it) and the stream tensors (reconvert the subject)"
            )
    # Real recordings cut a job's stream into hundreds of short stretches (each repetition of each movement):
    # consecutive stretches are decided together, laid end to end with the vote restarting at each one.
    for group in _stretch_groups([len(truth) for *_, truth in scored]):
        logits = torch.cat([scored[i][2] for i in group])
        truth = np.concatenate([scored[i][3] for i in group])
        lengths = np.array([len(scored[i][3]) for i in group])
        in_guard = np.zeros(len(truth), bool) if guard is None else np.concatenate([guard[scored[i][1]] for i in group])
        runs = _Runs.of(truth, np.repeat(np.arange(len(group)), lengths), transition)
        starts = torch.from_numpy(np.concatenate(([0], lengths.cumsum()[:-1])))
        decided = (
            decide_subsets(logits, allowed, vote_frames, starts)
            if rule is None
            else rule.decide_subsets(logits, allowed, vote_frames, starts, rest)
        )
        for votes in vote_frames:
            counts, stretch_delays = _stretch_counts(
                decided[votes], truth, runs, allowed, rest, stable, skip, in_guard, within
            )
            for name, value in counts.items():
                totals[votes][name] = totals[votes].get(name, 0) + value
            delays[votes].append(stretch_delays)
    rows = []
    for row, (k, trial) in enumerate(keys):
        for votes in vote_frames:
            total = {name: int(value[row]) for name, value in totals[votes].items()}
            rows.append({"k": k, "trial": trial, "vote_frames": votes, "vote_ms": votes * frame_ms} | total)
    table = pd.DataFrame(rows)
    if table.empty:
        return _metric_frame(table, np.zeros((0, 0)), frame_ms)
    # Rows run subset-major, votes inside: each row's delays over every stretch (the onsets of its chosen movements).
    every = [torch.cat(delays[votes], 1) for votes in vote_frames]
    matrix = torch.stack(every, 1).reshape(len(keys) * len(vote_frames), -1).numpy()
    return _metric_frame(table, matrix, frame_ms)


def _metric_frame(counts: pd.DataFrame, delays: np.ndarray, frame_ms: float) -> pd.DataFrame:
    """The metrics from the summed counts and each row's onset delays (-1: no onset of this row; NaN: missed)."""
    columns = ["k", "trial", "vote_frames", "vote_ms", "accuracy", "movement_accuracy", "rest_accuracy"]
    columns += ["rest_false_activation", "quiet_rest_false_activation", "transition_rest_false_activation"]
    columns += ["false_activations_per_min", "onset_delay_p50_ms", "onset_delay_p90_ms", "onsets_missed"]
    columns += ["changes_per_s", "active_error_rate", "instability", "onset_within_250ms"]
    columns += ["frames", "guard_frames", "guard_accuracy", "settled_accuracy"]
    if counts.empty:
        return pd.DataFrame(columns=columns)
    onsets = delays >= 0
    reached = np.where(onsets, delays, np.nan)  # NaN: missed or not an onset of this row
    n_onsets = onsets.sum(1) + np.isnan(delays).sum(1)
    n_reached = np.isfinite(reached).sum(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without a reached onset: NaN, as intended
        p50 = np.nanmedian(reached, axis=1)
        p90 = np.nanpercentile(reached, 90, axis=1)
    c = counts
    table = pd.DataFrame(
        {
            "k": c["k"],
            "trial": c["trial"],
            "vote_frames": c["vote_frames"],
            "vote_ms": c["vote_ms"],
            "accuracy": [r / max(m + s, 1) for r, m, s in zip(c["right"], c["movement"], c["rests"], strict=True)],
            "movement_accuracy": [r / max(m, 1) for r, m in zip(c["movement_right"], c["movement"], strict=True)],
            "rest_accuracy": [r / max(s, 1) for r, s in zip(c["rest_right"], c["rests"], strict=True)],
            "rest_false_activation": [f / max(s, 1) for f, s in zip(c["false"], c["rests"], strict=True)],
            "quiet_rest_false_activation": [
                (f - tf) / max(s - t, 1)
                for f, tf, s, t in zip(c["false"], c["transition_false"], c["rests"], c["transition"], strict=True)
            ],
            "transition_rest_false_activation": [
                tf / max(t, 1) for tf, t in zip(c["transition_false"], c["transition"], strict=True)
            ],
            "false_activations_per_min": [
                e / max(s, 1) * 60000 / frame_ms for e, s in zip(c["events"], c["rests"], strict=True)
            ],
            "onset_delay_p50_ms": [float(p) * frame_ms if n else np.nan for p, n in zip(p50, n_reached, strict=True)],
            "onset_delay_p90_ms": [float(p) * frame_ms if n else np.nan for p, n in zip(p90, n_reached, strict=True)],
            "onsets_missed": [(o - n) / max(o, 1) for o, n in zip(n_onsets, n_reached, strict=True)],
            "changes_per_s": [x / max(f, 1) * 1000 / frame_ms for x, f in zip(c["changes"], c["steady"], strict=True)],
            "active_error_rate": [w / a if a else np.nan for w, a in zip(c["active_wrong"], c["active"], strict=True)],
            # Summed over every stretch before the floor: the rate of a row's stream, as libemg's over one file.
            "instability": [
                max(d - t, 0) / (m + s) if m + s else np.nan
                for d, t, m, s in zip(c["decision_changes"], c["truth_changes"], c["movement"], c["rests"], strict=True)
            ],
            "onset_within_250ms": [
                d / o if o else np.nan for d, o in zip(c["onsets_detected"], c["onsets"], strict=True)
            ],
            "frames": [m + s for m, s in zip(c["movement"], c["rests"], strict=True)],
            "guard_frames": c["guard"],
            "guard_accuracy": [r / n if n else np.nan for r, n in zip(c["guard_right"], c["guard"], strict=True)],
            "settled_accuracy": [r / n if n else np.nan for r, n in zip(c["settled_right"], c["settled"], strict=True)],
        }
    )
    return table[columns]


POOLED = "all"  # the subject column of rows over every test subject's frames


def per_subject_metrics(
    scored: list,
    raw,
    subsets: dict,
    vote_frames: list[int],
    frame_ms: float,
    guard: np.ndarray | None = None,
    rule=None,
) -> list:
    """Each test subject's own stream metrics (at the subset sizes given: the headline k = K), so that a summary can
    give subject means with intervals, not only pooled frames; decided by ``rule`` (None: the votes). ``raw``: the
    data scored (its ``classes`` and ``subject_names``)."""
    subjects = sorted({subject for subject, *_ in scored})
    return [
        stream_metrics(
            [s for s in scored if s[0] == subject], raw.classes, subsets, vote_frames, frame_ms, guard, rule=rule
        ).assign(subject=raw.subject_names[subject])
        for subject in subjects
    ]


def rule_rows(table: pd.DataFrame, rule) -> pd.DataFrame:
    """Rows decided by the vote (``rule`` None: as they always were, rule ``vote``) or by the model's rule (its
    name; vote_frames 0 and vote_ms empty: no vote)."""
    if rule is None:
        return table.assign(rule=VOTE)
    return table.assign(rule=rule.rule, vote_frames=0, vote_ms=np.nan)


def decided_rows(scored, raw, subsets: dict, vote_frames, frame_ms, guard, rule, per_subject: dict | None = None):
    """The pooled rows of every subset and each subject's at ``per_subject`` (default: k = K's subset), by the votes
    or by ``rule``."""
    n_gestures, votes = len(raw.classes) - 1, vote_frames if rule is None else [0]
    per_subject = {n_gestures: subsets[n_gestures]} if per_subject is None else per_subject
    pooled = stream_metrics(scored, raw.classes, subsets, votes, frame_ms, guard, rule=rule).assign(subject=POOLED)
    each = per_subject_metrics(scored, raw, per_subject, votes, frame_ms, guard, rule)
    return rule_rows(pd.concat([pooled, *each], ignore_index=True), rule)
