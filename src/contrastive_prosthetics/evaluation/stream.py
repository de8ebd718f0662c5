"""Continuous-stream evaluation: what the controller decides on every frame of the test recordings.

A prosthesis never sees clean segments: it reads the continuous recording, rest and transitions included. Every
frame of each test subject's test repetitions (the stream conversion keeps) is scored causally (each frame from
itself and the frames before it) by :class:`..learning.inference.FrameScorer`, the controller's own code, here in large
batches (the same arithmetic; scores equal the controller's one-frame calls to float rounding), with the model's
adaptation state, among chosen gestures + rest (the same subsets as the subset-size evaluation, at k = K and a few
small k), then majority-voted causally over the last N frames for several N (:func:`..learning.decisions.decide`). The
controller restarts (its vote emptied) at the start of every scored stretch of the recording.

AdaBN state: ``cross_fitted`` models adapt each test repetition on the subject's recording during the other test
repetitions, as offline; ``scored_frames`` and ``batch_statistics`` models on the scored repetition's segments
(their optimistic protocols have no causal counterpart).

The metrics per (k, subset, vote), and how they are computed for every subset at once, are
:mod:`.stream_metrics`'s.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core.atomic import atomic_write_frame
from ..learning.dataset import DB23
from ..learning.folds import fold_selections
from ..learning.inference import FrameScorer
from ..learning.model_file import load_model_file
from ..learning.stream_scoring import adapted_network, class_bias, scored_stretches
from .stream_metrics import stream_metrics
from .subsets import draw_subsets
from .tables import OPTIONAL_COLUMNS as STREAM_COLUMNS

TIMED_FRAMES = 500  # frames per job scored one at a time, as the controller does, to time a decision
SCORING_BATCH = 4096  # frames per network call for the rest: the same arithmetic, 30-100x faster


def stream_logits(saved: dict, raw: DB23, normalised: DB23, test_pool: dict, limit: int) -> tuple[list, float]:
    """Per test subject and scored stretch: (subject, positions, logits); and the median seconds per frame that the
    controller's one-frame-at-a-time scoring takes (timed on the first ``TIMED_FRAMES`` frames)."""
    context = saved["network"].config.context
    out, seconds, timed = [], [], 0
    for subject, repetitions in test_pool.items():
        live = raw.channel_mask[subject]
        for repetition in repetitions:
            model = adapted_network(
                saved["network"],
                saved["adabn"],
                saved["adaptation"],
                normalised,
                subject,
                repetition,
                repetitions,
                limit,
            )
            bias = class_bias(raw.classes, saved.get("rest_bias", 0.0))
            scorer = FrameScorer(model, saved["normalisation_"], live, len(raw.classes), bias=bias)
            for positions in scored_stretches(raw, subject, [repetition]):
                frames = raw.stream_context(torch.from_numpy(positions), context)
                if timed < TIMED_FRAMES:
                    sample = frames[: TIMED_FRAMES - timed]
                    start = time.perf_counter()
                    scorer(sample)
                    seconds.append((time.perf_counter() - start) / len(sample))
                    timed += len(sample)
                out.append((subject, positions, scorer(frames, batch=SCORING_BATCH)))
    return out, float(np.median(seconds)) if seconds else float("nan")


POOLED = "all"  # the subject column of rows over every test subject's frames


def per_subject_metrics(scored: list, raw: DB23, subsets: dict, vote_frames: list[int], frame_ms: float) -> list:
    """Each test subject's own stream metrics (at the subset sizes given: the headline k = K), so that a summary can
    give subject means with intervals, not only pooled frames."""
    subjects = sorted({subject for subject, *_ in scored})
    return [
        stream_metrics([s for s in scored if s[0] == subject], raw.classes, subsets, vote_frames, frame_ms).assign(
            subject=raw.subject_names[subject]
        )
        for subject in subjects
    ]


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
    table = pd.concat(
        [
            stream_metrics(scored, raw.classes, subsets, vote_frames, frame_ms).assign(subject=POOLED),
            *per_subject_metrics(scored, raw, {n_gestures: subsets[n_gestures]}, vote_frames, frame_ms),
        ],
        ignore_index=True,
    )
    leading = {key: saved[key] for key in ("model", "adabn", "adaptation", "fold", "window")}
    table = table.assign(**leading)[STREAM_COLUMNS["stream_metrics"]]
    out_dir = Path(out_dir)
    atomic_write_frame(table, out_dir / "stream_metrics.tsv")
    rms_ms = saved["preprocess"]["rms_window_ms"] if saved.get("preprocess") else float("nan")
    timing = pd.DataFrame([leading | {"compute_ms": 1000 * seconds, "rms_window_ms": rms_ms, "frame_ms": frame_ms}])
    atomic_write_frame(timing[STREAM_COLUMNS["stream_timing"]], out_dir / "stream_timing.tsv")
    return table
