"""Continuous-stream evaluation: what the controller decides on every frame of the test recordings.

A prosthesis never sees clean segments: it reads the continuous recording, rest and transitions included. Every
frame of each test subject's test repetitions (the stream conversion keeps) is scored causally (each frame from
itself and the frames before it) by :class:`..learning.inference.FrameScorer`, the controller's own code, here in large
batches (the same arithmetic; scores equal the controller's one-frame calls to float rounding), with the model's
adaptation state, the onset gate of :mod:`..learning.onset_gate` in front when the model has one, among chosen
gestures + rest (the same subsets as the subset-size evaluation, at k = K and a few
small k), then majority-voted causally over the last N frames for several N (:func:`..learning.decisions.decide`). The
controller restarts (its vote emptied) at the start of every scored stretch of the recording.

The LDA baseline is scored on the same frames from the causal Hudgins features conversion keeps for every stream
frame (:func:`..learning.lda.lda_stream_logits`), with its own calibrated rest bias: the same decisions, votes
and metrics, so that networks and LDA compare at the same rest false activation.

AdaBN state: ``cross_fitted`` models adapt each test repetition on the subject's recording during the other test
repetitions, as offline; ``scored_frames`` and ``batch_statistics`` models on the scored repetition's segments
(their optimistic protocols have no causal counterpart).

Class codes: a pose class encoder in a zero-shot fold scores each test subject with that subject's prototypes
(:func:`..learning.poses.subject_prototypes`: an unseen gesture described by the other training subjects' gloves,
:func:`..learning.poses.with_subject_codes`), as its segment logits were scored at training, not with the new user's
prototypes model.pt carries.

The guard band: the frames within ``training.guard_ms`` of a change of label, which training leaves out
(:func:`..learning.stream_sampling.guard_mask` over the whole stream, as training computes it), are counted on their
own (``guard_frames``, ``guard_accuracy``; ``settled_accuracy`` over the others).

The metrics per (k, subset, vote), and how they are computed for every subset at once, are
:mod:`.stream_metrics`'s.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core.atomic import atomic_write_frame
from ..core.errors import InputError
from ..core.units import ms_to_frames
from ..learning.dataset import DB23, Selection
from ..learning.decision_rules import Hysteresis
from ..learning.folds import fold_selections, setup_repetitions
from ..learning.inference import FrameScorer
from ..learning.lda import lda_stream_logits
from ..learning.model_file import guard_ms_of, load_model_file, read_model_file
from ..learning.onset_gate import OnsetGate
from ..learning.poses import fold_codes, with_subject_codes
from ..learning.rest_bias import subject_rest_bias
from ..learning.stream_sampling import guard_mask, guard_width
from ..learning.stream_scoring import StreamScoring, class_bias, with_gate
from .stream_metrics import decided_rows, rule_rows
from .stream_tradeoff import tradeoff_table
from .subsets import draw_subsets
from .tables import OPTIONAL_COLUMNS as STREAM_COLUMNS
from .zero_shot_stream import zero_shot_stream_table

log = logging.getLogger(__name__)
TIMED_FRAMES = 500  # frames per job scored one at a time, as the controller does, to time a decision
SCORING_BATCH = 4096  # frames per network call for the rest: the same arithmetic, 30-100x faster


def stream_logits(
    saved: dict,
    raw: DB23,
    normalised: DB23,
    test_pool: dict,
    limit: int,
    codes: torch.Tensor | None = None,
    setup: dict | None = None,
) -> tuple[list, float]:
    """Per test subject and scored stretch: (subject, positions, logits); and the median seconds per frame that the
    controller's one-frame-at-a-time scoring takes (timed on the first ``TIMED_FRAMES`` frames). ``codes``
    ([subject, class, code], :func:`subject_codes`), when given, are the class codes each subject is scored with."""
    context = saved["network"].config.context
    gate = OnsetGate.from_dict(saved.get("onset_gate"))
    scoring = model_scoring(saved, raw, normalised, limit, setup)
    memo = {}  # a user's setup statistics, or the past's at one update, adapted once for every stretch they score
    out, seconds, timed = [], [], 0
    for subject, repetitions in test_pool.items():
        live = raw.channel_mask[subject]
        bias = class_bias(raw.classes, subject_rest_bias(saved, raw.subject_names[subject]))
        for repetition in repetitions:
            for model, stretches in scoring.networks(saved["network"], subject, repetition, repetitions, memo):
                model = with_subject_codes(model, codes, subject)
                scorer = FrameScorer(model, saved["normalisation_"], live, len(raw.classes), bias=bias)
                for positions in stretches:
                    frames = raw.stream_context(torch.from_numpy(positions), context)
                    if timed < TIMED_FRAMES:
                        sample = frames[: TIMED_FRAMES - timed]
                        start = time.perf_counter()
                        scorer(sample)
                        seconds.append((time.perf_counter() - start) / len(sample))
                        timed += len(sample)
                    scores = with_gate(scorer(frames, batch=SCORING_BATCH), raw, subject, positions, gate)
                    out.append((subject, positions, scores))
    return out, float(np.median(seconds)) if seconds else float("nan")


def model_scoring(saved: dict, raw: DB23, normalised: DB23, limit: int, setup: dict | None = None) -> StreamScoring:
    """How a trained network's test streams are scored: its adaptation under the protocol model.pt was calibrated
    for (``adaptation_protocol``; files from before it: transductive, as they were): ``setup`` the test users'
    repetitions recorded before use (:func:`..learning.folds.setup_repetitions`), else any of the user's recording
    before each stretch."""
    update_s = saved.get("adaptation_update_s") or 0.0
    return StreamScoring(
        raw=raw,
        normalised=normalised,
        normalisation=saved["normalisation_"],
        adabn=saved["adabn"],
        adaptation=saved["adaptation"],
        adaptation_frames=limit,
        protocol=saved.get("adaptation_protocol") or "transductive",
        update_frames=max(1, ms_to_frames(1000 * update_s, raw.frame_rate_hz)),
        setup=setup or {},
    )


def scored_test_streams(model_path: Path, tensor_paths: list[Path], fold_name: str, fold: dict, limit: int):
    """(model.pt as saved, the data with streams, the test streams' scores, seconds per frame) for a network's or
    an LDA model's model.pt."""
    saved = read_model_file(model_path)
    lda = "estimators" in saved
    if not lda:
        saved = load_model_file(model_path)
    raw = DB23.load(tensor_paths, device="cpu", with_streams=True, with_features=lda, window=saved["window"])
    selections = fold_selections(raw, fold, fold_name)
    if lda:
        logits, seconds = lda_stream_logits(saved, raw, selections.test_pool, TIMED_FRAMES)
    else:
        normalised = raw.normalised(saved["normalisation_"])
        codes = subject_codes(saved, raw, selections.train, fold, model_path)
        setup = setup_repetitions(selections, with_validation=True)
        logits, seconds = stream_logits(saved, raw, normalised, selections.test_pool, limit, codes, setup)
    return saved, raw, logits, seconds


def subject_codes(saved: dict, raw: DB23, train: Selection, fold: dict, model_path: Path) -> torch.Tensor | None:
    """[subject, class, 22] the pose prototypes each subject is scored with, as training scored the test segments
    (:func:`..learning.poses.fold_codes`: the training subjects' training repetitions, every class, as training), for a
    pose class encoder in a fold with ``unseen`` gestures; None otherwise (the codes model.pt carries). The new user's
    prototypes computed from the same cells must be those model.pt carries: else the tensors are not the ones it was
    trained on."""
    unseen = [raw.classes.index(gesture) for gesture in fold.get("unseen", [])]
    if saved["model_config"].get("class_encoder") != "pose" or not unseen:
        return None
    new_user, codes, _ = fold_codes(raw, train, unseen)
    stored = saved.get("pose_prototypes")
    if stored is not None and not torch.allclose(new_user, stored.float(), 1e-4, 1e-5):
        raise InputError(
            f"{model_path}: its pose prototypes differ from the training cells' of these tensors (fold "
            f"{saved['fold']}): the tensors changed since training; train again"
        )
    return codes


def stream_guard(raw: DB23, guard_ms: float) -> np.ndarray:
    """[stream frame] True inside the guard band of ``training.guard_ms``: the frames training leaves out
    (:func:`..learning.stream_sampling.guard_mask` over the whole stream)."""
    streams = raw.streams
    return guard_mask(streams.classes, streams.subject, guard_width(guard_ms, raw.frame_rate_hz)).cpu().numpy()


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
    oracle_path: Path | None = None,
) -> pd.DataFrame:
    """Score the test repetitions' streams with one trained network or LDA model and write ``stream_metrics.tsv``,
    ``stream_tradeoff.tsv`` (:mod:`.stream_tradeoff`), ``stream_timing.tsv`` (seconds per decision, not
    bit-identical across runs) and ``zero_shot_stream.tsv`` (:func:`zero_shot_streams`; ``oracle_path``: the oracle's
    model.pt of a zero-shot fold) into ``out_dir``. The subsets are the first ``trials`` (at most all) of the
    ``subset_trials`` the subset-size evaluation draws with ``seed``; at k = K, the one subset of every gesture,
    scored once. The guard band is the model's (``training.guard_ms``, in model.pt): its frames are counted on their
    own."""
    saved, raw, logits, seconds = scored_test_streams(model_path, tensor_paths, fold_name, fold, adaptation_limit)
    guard_ms = guard_ms_of(saved, model_path)
    truth_of = raw.streams.classes.numpy()
    scored = [(subject, positions, scores, truth_of[positions]) for subject, positions, scores in logits]
    n_gestures = len(raw.classes) - 1
    sizes = sorted({k for k in subset_sizes if k <= n_gestures} | {n_gestures})
    drawn = draw_subsets(n_gestures, subset_trials, seed)
    # Every subset drawn at k = K holds every gesture: the one subset there is, scored once.
    subsets = {k: chosen[: 1 if k == n_gestures else trials] for k, chosen in drawn.items() if k in sizes}
    frame_ms = 1000 / raw.frame_rate_hz
    vote_frames = sorted({ms_to_frames(ms, raw.frame_rate_hz) for ms in vote_ms})
    guard = stream_guard(raw, guard_ms)
    saved_rule = Hysteresis.from_dict(saved.get("decision"))
    rules = [None] if saved_rule is None else [None, saved_rule]  # the vote's rows always, then the model's rule's
    table = pd.concat([decided_rows(scored, raw, subsets, vote_frames, frame_ms, guard, r) for r in rules])
    table = table.reset_index(drop=True).assign(guard_ms=guard_ms)
    leading = {key: saved[key] for key in ("model", "adabn", "adaptation", "fold", "window")}
    leading["adaptation_protocol"] = saved.get("adaptation_protocol") or ("transductive" if saved["adabn"] else "none")
    table = table.assign(**leading)[STREAM_COLUMNS["stream_metrics"]]
    every_gesture = torch.ones((1, n_gestures), dtype=torch.bool)
    tradeoff = pd.concat(
        [
            rule_rows(tradeoff_table(scored, raw.classes, every_gesture, [0] if r else vote_frames, frame_ms, r), r)
            for r in rules
        ],
        ignore_index=True,
    )
    tradeoff = tradeoff.assign(**leading, rest_bias=saved.get("rest_bias", 0.0) + tradeoff["bias_offset"])
    if saved_rule is not None:  # the rule's rows decided with its own rest offset on top
        offset = np.where(tradeoff["rule"] == saved_rule.rule, saved_rule.rest_offset, 0.0)
        tradeoff = tradeoff.assign(rest_bias=tradeoff["rest_bias"] + offset)
    out_dir = Path(out_dir)
    atomic_write_frame(table, out_dir / "stream_metrics.tsv")
    atomic_write_frame(tradeoff[STREAM_COLUMNS["stream_tradeoff"]], out_dir / "stream_tradeoff.tsv")
    timing = pd.DataFrame([leading | {"compute_ms": 1000 * seconds, "rms_window_ms": window_ms(saved, raw)}])
    timing = timing.assign(frame_ms=frame_ms)
    atomic_write_frame(timing[STREAM_COLUMNS["stream_timing"]], out_dir / "stream_timing.tsv")
    scoring = (tensor_paths, adaptation_limit, vote_frames, frame_ms)
    zero_shot = zero_shot_streams(scored, raw, saved, fold, oracle_path, leading, scoring)
    atomic_write_frame(zero_shot, out_dir / "zero_shot_stream.tsv")
    return table


def zero_shot_streams(scored, raw: DB23, saved: dict, fold: dict, oracle_path: Path | None, leading, scoring):
    """``zero_shot_stream.tsv`` (:mod:`.zero_shot_stream`) of a zero-shot fold's network: its test stretches
    ``scored`` beside the oracle's (``oracle_path``, the same model trained on every gesture, its streams scored on
    its own fold, as its stream job scores them; None: the oracle's columns empty); ``scoring`` is (tensor paths,
    adaptation limit, vote frames, frame ms). The header only for any other run."""
    if not fold.get("unseen") or "estimators" in saved:
        return pd.DataFrame(columns=STREAM_COLUMNS["zero_shot_stream"])
    tensor_paths, limit, vote_frames, frame_ms = scoring
    rule = Hysteresis.from_dict(saved.get("decision"))
    if oracle_path is None:  # outside the pipeline, a zero-shot model whose oracle was not trained: its rows alone
        log.warning("%s/%s: no oracle given (--oracle): its columns stay empty", saved["model"], saved["fold"])
        leading = leading | {"oracle_fold": ""}
        return zero_shot_stream_table(scored, None, raw, (rule, None), fold["unseen"], vote_frames, frame_ms, leading)
    trained = read_model_file(oracle_path)  # its own fold: the oracle's codes, repetitions and setup
    oracle, oracle_raw, logits, _ = scored_test_streams(
        oracle_path, tensor_paths, trained["fold"], trained["fold_spec"], limit
    )
    if oracle_raw.classes != raw.classes:
        raise InputError(f"{oracle_path}: the oracle has other classes than {saved['fold']}: {oracle_raw.classes}")
    truth_of = raw.streams.classes.numpy()
    oracle_scored = [(subject, positions, scores, truth_of[positions]) for subject, positions, scores in logits]
    rules = (rule, Hysteresis.from_dict(oracle.get("decision")))
    leading = leading | {"oracle_fold": trained["fold"]}
    return zero_shot_stream_table(scored, oracle_scored, raw, rules, fold["unseen"], vote_frames, frame_ms, leading)


def window_ms(saved: dict, raw: DB23) -> float:
    """The signal a decision reads before its frame: a network's RMS window, LDA's feature window."""
    if "estimators" in saved:
        return raw.preprocess["feature_window_ms"] if raw.preprocess else float("nan")
    return saved["preprocess"]["rms_window_ms"] if saved.get("preprocess") else float("nan")
