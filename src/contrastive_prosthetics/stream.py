"""Continuous-stream evaluation: what the controller decides on every frame of the test recordings.

A prosthesis never sees clean segments: it reads the continuous recording, rest and transitions included. Every
frame of each test subject's test repetitions (the stream conversion keeps) is scored causally, one frame at a
time, by :class:`.realtime.FrameScorer` (the controller's own code) with the model's adaptation state, among
chosen gestures + rest (the same subsets as the subset-size evaluation, at k = K and a few small k), then
majority-voted causally over the last N frames for several N (:func:`.realtime.decide`). The controller restarts
(its vote emptied) at the start of every scored stretch of the recording.

AdaBN state: ``cross_fitted`` models adapt each test repetition on the subject's recording during the other test
repetitions, as offline; ``scored_frames`` and ``batch_statistics`` models on the scored repetition's segments
(their optimistic protocols have no causal counterpart).

Metrics per (k, subset, vote) over the frames whose true class is rest or a chosen gesture: accuracy over all of
them, over movement frames and over rest frames; the rest false-activation rate (rest frames decided as a
gesture); the onset delay of each chosen movement (from the relabelled onset to the first frame from which the
decision stays correct for ``STABLE_MS``; median and 90th percentile, and the share never reached); decision
changes per second during steady movement (from ``STEADY_AFTER_MS`` after the onset to the end: chattering).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .adaptation import adaptation_frames
from .atomic import atomic_write_frame
from .dataset import DB23
from .folds import fold_selections
from .models import adapt_batchnorm
from .ninapro import REST
from .preprocess import find_runs
from .realtime import FrameScorer, decide, load_model_file
from .subsets import draw_subsets
from .tables import OPTIONAL_COLUMNS as STREAM_COLUMNS

STABLE_MS = 100  # a decision counts as reached once it stays right this long
STEADY_AFTER_MS = 1000  # steady movement starts this long after the onset


def scored_stretches(data: DB23, subject: int, repetitions: list[int]) -> list[np.ndarray]:
    """Stream positions of the subject's test repetitions, as runs of consecutive frames."""
    streams = data.streams
    mask = (streams.subject == subject) & torch.isin(streams.repetition, torch.tensor(repetitions))
    positions = mask.nonzero().squeeze(1).numpy()
    if not len(positions):
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    return np.split(positions, breaks)


def adapted_model(saved: dict, normalised: DB23, subject: int, repetition: int, pool: list[int], limit: int):
    """The network with its adaptation state for one subject's repetition."""
    model = saved["network"]
    if not saved["adabn"]:
        return model
    adapted = copy.deepcopy(model)
    context = model.config.context
    if saved["adaptation"] == "cross_fitted":
        frames = adaptation_frames(normalised, subject, repetition, pool, context, limit)
    else:  # the scored repetition's segments
        selection = normalised.select(subjects=[normalised.subject_names[subject]], repetitions=[repetition])
        frames = torch.cat([x for x, _ in normalised.frames(selection, context=context)])
    adapt_batchnorm(adapted, frames)
    return adapted.eval()


def stream_logits(saved: dict, raw: DB23, normalised: DB23, test_pool: dict, limit: int) -> tuple[list, float]:
    """Per test subject and scored stretch: (subject, positions, logits); and the median seconds per frame."""
    context = saved["network"].config.context
    out, seconds = [], []
    for subject, repetitions in test_pool.items():
        live = raw.channel_mask[subject]
        for repetition in repetitions:
            model = adapted_model(saved, normalised, subject, repetition, repetitions, limit)
            scorer = FrameScorer(model, saved["normalisation_"], live, len(raw.classes))
            for positions in scored_stretches(raw, subject, [repetition]):
                frames = raw.stream_context(torch.from_numpy(positions), context)
                start = time.perf_counter()
                logits = scorer(frames)
                seconds.append((time.perf_counter() - start) / len(positions))
                out.append((subject, positions, logits))
    return out, float(np.median(seconds)) if seconds else float("nan")


def onset_delays(decisions: np.ndarray, truth: np.ndarray, allowed: np.ndarray, stable: int) -> list[float]:
    """Frames from each chosen movement's onset to the first frame from which the decision stays right for
    ``stable`` frames (NaN when it never does before the movement ends)."""
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


def steady_changes(decisions: np.ndarray, truth: np.ndarray, allowed: np.ndarray, skip: int) -> tuple[int, int]:
    """(decision changes, frames) during steady movement: each chosen movement from ``skip`` frames after its
    onset to its end."""
    changes = frames = 0
    starts, stops, values = find_runs(truth)
    for start, stop, value in zip(starts, stops, values, strict=True):
        if value == 0 or not allowed[value] or stop - start <= skip + 1:
            continue
        steady = decisions[start + skip : stop]
        changes += int((steady[1:] != steady[:-1]).sum())
        frames += len(steady) - 1
    return changes, frames


def stream_metrics(
    scored: list, classes: list[str], subsets: dict[int, torch.Tensor], vote_frames: list[int], frame_ms: float
) -> pd.DataFrame:
    """One row per (k, subset, vote) over every scored stretch (see the module's docstring)."""
    rest = classes.index(REST)
    rows = []
    for k, chosen in subsets.items():
        for trial, gestures in enumerate(chosen):
            allowed = torch.zeros(len(classes), dtype=torch.bool)
            allowed[1:] = gestures
            allowed[rest] = True
            mask = allowed.numpy()
            for votes in vote_frames:
                right = movement_right = rest_right = movement = rests = false = changes = steady = 0
                delays = []
                for _, _, logits, truth in scored:
                    decisions = decide(logits, allowed, votes).numpy()
                    keep = mask[truth]  # frames of rest and of chosen gestures: what this user does
                    is_rest = truth == rest
                    right += int((decisions == truth)[keep].sum())
                    movement_right += int((decisions == truth)[keep & ~is_rest].sum())
                    rest_right += int((decisions == truth)[is_rest].sum())
                    movement += int((keep & ~is_rest).sum())
                    rests += int(is_rest.sum())
                    false += int((decisions[is_rest] != rest).sum())
                    delays += onset_delays(decisions, truth, mask, round(STABLE_MS / frame_ms))
                    c, f = steady_changes(decisions, truth, mask, round(STEADY_AFTER_MS / frame_ms))
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
                        "onset_delay_p50_ms": float(np.median(reached)) * frame_ms if reached.size else np.nan,
                        "onset_delay_p90_ms": float(np.percentile(reached, 90)) * frame_ms if reached.size else np.nan,
                        "onsets_missed": (len(delays) - reached.size) / max(len(delays), 1),
                        "changes_per_s": changes / max(steady, 1) * 1000 / frame_ms,
                        "frames": movement + rests,
                    }
                )
    return pd.DataFrame(rows)


def evaluate_stream(
    model_path: Path,
    tensor_paths: list[Path],
    fold_name: str,
    fold: dict,
    out_dir: Path,
    *,
    subset_sizes: list[int],
    trials: int,
    subset_trials: int,
    vote_ms: list[float],
    seed: int,
    adaptation_limit: int,
) -> pd.DataFrame:
    """Score the test repetitions' streams with one trained network and write ``stream_metrics.tsv`` and
    ``stream_timing.tsv`` (seconds per decision, not bit-identical across runs) into ``out_dir``. The subsets
    are the first ``trials`` (at most all) of the ``subset_trials`` the subset-size evaluation draws with
    ``seed``."""
    saved = load_model_file(model_path)
    raw = DB23.load(tensor_paths, device="cpu", with_streams=True, window=saved["window"])
    normalised = raw.normalised(saved["normalisation_"])
    selections = fold_selections(raw, fold, fold_name)
    logits, seconds = stream_logits(saved, raw, normalised, selections.test_pool, adaptation_limit)
    truth_of = raw.streams.classes.numpy()
    scored = [(subject, positions, scores, truth_of[positions]) for subject, positions, scores in logits]
    n_gestures = len(raw.classes) - 1
    sizes = sorted({k for k in subset_sizes if k <= n_gestures} | {n_gestures})
    drawn = draw_subsets(n_gestures, subset_trials, seed)
    subsets = {k: chosen[: min(trials, subset_trials)] for k, chosen in drawn.items() if k in sizes}
    frame_ms = 1000 / raw.frame_rate_hz
    vote_frames = sorted({round(ms / frame_ms) for ms in vote_ms})
    table = stream_metrics(scored, raw.classes, subsets, vote_frames, frame_ms)
    leading = {key: saved[key] for key in ("model", "adabn", "adaptation", "fold", "window")}
    table = table.assign(**leading)[STREAM_COLUMNS["stream_metrics"]]
    out_dir = Path(out_dir)
    atomic_write_frame(table, out_dir / "stream_metrics.tsv")
    rms_ms = saved["preprocess"]["rms_window_ms"] if saved.get("preprocess") else float("nan")
    timing = pd.DataFrame([leading | {"compute_ms": 1000 * seconds, "rms_window_ms": rms_ms, "frame_ms": frame_ms}])
    atomic_write_frame(timing[STREAM_COLUMNS["stream_timing"]], out_dir / "stream_timing.tsv")
    return table
