"""The calibration curve: what a new user gets from c calibration repetitions, for every c of a ``calibration``
fold, every calibration method (:mod:`..learning.personalise`) and the baselines trained on those repetitions
alone (:mod:`..learning.calibration_baselines`).

For one fold and each of its new users (one test subject, or several with ``new_users``, each calibrated alone):
the model trained on the other subjects is calibrated on the first c of the fold's ``calibration`` repetitions of
the user, then scored on the user's ``test`` repetitions, the same ones for every c (a paired curve). Only those
two sets of the user's repetitions are read, each for its own purpose: the calibration reads the first c
calibration repetitions' recording (and labels), never a scored one; scoring reads the scored ones. At c = 0, the
two starts that read no label of the user: ``none`` (model.pt's calibration-free start,
:mod:`..learning.calibration_free`; nothing of the user read) and ``unlabelled`` (AdaBN on the first calibration
repetition's EMG).

Each (method, c) is scored as the rest of the pipeline scores: segments by the vote over
``evaluation.vote_window_ms`` among every class (accuracy, balanced accuracy and rest false activation over the
scored repetitions' windows, no rest bias, as summary.tsv); the scored repetitions' continuous recording decided by
the controller's rule with every gesture allowed (k = K), the rest bias added and the same vote (stream accuracy,
movement accuracy, rest false activation, onset delay, as stream_metrics.tsv). The rest bias is set on validation
subjects at c = 0 (the start's own), and from c = 1 on the calibration recording
(:func:`..learning.rest_bias.calibrate_rest_bias`, ``evaluation.rest_false_activation_target``) plus a margin the
fold's validation subjects, calibrated as new users, teach (:class:`ValidationUsers`, which also chooses transfer's
recipe). The onset gate is not applied here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core.atomic import atomic_write_frame
from ..core.errors import InputError
from ..data.ninapro import REST
from ..learning.calibration_baselines import calibration_lda, network_on_user
from ..learning.calibration_free import calibration_free_start
from ..learning.dataset import DB23, Selection
from ..learning.folds import test_subjects, validation_subjects
from ..learning.inference import FrameScorer
from ..learning.lda import SHARED, score_selection, stream_scores
from ..learning.model_file import load_model_file
from ..learning.models import ContrastiveModel
from ..learning.personalise import TRAINED, CalibrationRecording, CalibrationSettings, personalise
from ..learning.rest_bias import calibrate_rest_bias, shared_margin
from ..learning.stream_sampling import guard_width
from ..learning.stream_scoring import class_bias, scored_stretches
from ..learning.training_settings import TrainingSettings
from ..learning.transfer import TransferRecipe, transfer_network
from .evaluate import classification_metrics
from .stream_metrics import stream_metrics
from .voting import window_frames_for, window_outcomes

log = logging.getLogger(__name__)
SCORING_BATCH = 4096
COLUMNS = [
    "family",
    "model",
    "fold",
    "window",
    "subject",
    "method",
    "recipe",
    "repetitions",
    "calibration_frames",
    "rest_bias",
    "rest_bias_margin",
    "segment_accuracy",
    "segment_balanced_accuracy",
    "segment_rest_false_activation",
    "segment_windows",
    "stream_accuracy",
    "stream_movement_accuracy",
    "stream_rest_false_activation",
    "onset_delay_p50_ms",
]


@dataclass(frozen=True)
class Candidate:
    """A calibrated model as scoring sees it: raw logits (no rest bias) of a selection's segment frames, with their
    (subject, class, rep, frame) index, and of stream frames at given positions."""

    method: str
    segments: Callable[[Selection], tuple[torch.Tensor, torch.Tensor]]
    stream: Callable[[np.ndarray], torch.Tensor]
    recipe: str = ""  # transfer's recipe (:mod:`..learning.transfer`)


def network_candidate(method: str, model: torch.nn.Module, normalisation, raw: DB23, subject: int) -> Candidate:
    """A network scored by the controller's scorer (:class:`..learning.inference.FrameScorer`) on raw frames."""
    scorer = FrameScorer(model, normalisation, raw.channel_mask[subject], len(raw.classes))
    context = model.config.context

    def segments(selection: Selection) -> tuple[torch.Tensor, torch.Tensor]:
        frames, index = zip(*raw.frames(selection, context=context), strict=True)
        return scorer(torch.cat(frames), batch=SCORING_BATCH), torch.cat(index)

    def stream(positions: np.ndarray) -> torch.Tensor:
        return scorer(raw.stream_context(torch.from_numpy(positions), context), batch=SCORING_BATCH)

    return Candidate(method, segments, stream)


def lda_candidate(model, raw: DB23) -> Candidate:
    return Candidate("lda", lambda s: score_selection(raw, s, {SHARED: model}), lambda p: stream_scores(model, raw, p))


def calibration_recording(
    raw: DB23, subject: int, repetitions: list[int], context: int, guard_frames: int
) -> CalibrationRecording | None:
    """The subject's recording during ``repetitions`` (None for none): raw frames with their context in stretches,
    their labels, and the frames outside the guard band of every change of label (what the methods fit on)."""
    if not repetitions:
        return None
    stretches = [
        (raw.stream_context(torch.from_numpy(positions), context), raw.streams.classes[positions].numpy())
        for positions in scored_stretches(raw, subject, repetitions)
    ]
    return CalibrationRecording.of(stretches, guard_frames, raw.channel_mask[subject])


def stretch_scores(candidate: Candidate, raw: DB23, stretches: list[np.ndarray]) -> list[tuple]:
    """(logits, truth) of the candidate on stream ``stretches`` (positions): what a rest bias is set on."""
    truth = raw.streams.classes.numpy()
    return [(candidate.stream(p), truth[p]) for p in stretches]


def fitted_bias(candidate: Candidate, raw: DB23, stretches: list[np.ndarray], target: float, vote_frames: int):
    """The rest bias meeting ``target`` on ``stretches`` decided by ``candidate``."""
    rest = raw.classes.index(REST)
    return calibrate_rest_bias(stretch_scores(candidate, raw, stretches), rest, vote_frames, target).bias


def scored_repetitions(raw: DB23, subject: int, fold: dict) -> tuple[Selection, list[np.ndarray]]:
    """A user's scored (``test``) repetitions: their segments' selection and their stream stretches."""
    name = raw.subject_names[subject]
    return raw.select(subjects=[name], repetitions=fold["test"]), scored_stretches(raw, subject, fold["test"])


def segment_scores(candidate: Candidate, raw: DB23, selection: Selection, vote_frames: int) -> tuple[dict, int]:
    """The candidate's segment metrics on ``selection`` (:func:`.evaluate.classification_metrics` of the votes over
    ``vote_frames``, every class, no rest bias) and how many windows were voted."""
    logits, index = candidate.segments(selection)
    payload = {"logits": logits, "label": index[:, 1], "subject": index[:, 0], "repetition": index[:, 2] + 1}
    votes, labels, _ = window_outcomes(payload | {"frame": index[:, 3]}, vote_frames, logits.argmax(1))
    return classification_metrics(votes, labels, len(raw.classes)), len(votes)


def scored_row(
    candidate: Candidate,
    raw: DB23,
    subject: int,
    scored: tuple[Selection, list[np.ndarray]],
    bias: float,
    vote_frames: int,
) -> dict:
    """The candidate's metrics on the scored repetitions (see the module), deciding the stream with rest bias
    ``bias``."""
    classes, truth = raw.classes, raw.streams.classes.numpy()
    rest = classes.index(REST)
    selection, stretches = scored
    segment, windows = segment_scores(candidate, raw, selection, vote_frames)
    offset = class_bias(classes, bias)
    decided = [(subject, p, candidate.stream(p) + offset, truth[p]) for p in stretches]
    every_gesture = {len(classes) - 1: torch.ones((1, len(classes) - 1), dtype=torch.bool)}
    stream = stream_metrics(decided, classes, every_gesture, [vote_frames], 1000 / raw.frame_rate_hz).iloc[0]
    return {
        "method": candidate.method,
        "rest_bias": bias,
        "segment_accuracy": segment["accuracy"],
        "segment_balanced_accuracy": segment["balanced_accuracy"],
        "segment_rest_false_activation": float(1 - segment["recall"][rest]),
        "segment_windows": windows,
        "stream_accuracy": stream["accuracy"],
        "stream_movement_accuracy": stream["movement_accuracy"],
        "stream_rest_false_activation": stream["rest_false_activation"],
        "onset_delay_p50_ms": stream["onset_delay_p50_ms"],
    }


@dataclass(frozen=True)
class NewUser:
    """One new user of a calibration fold (or one of its validation subjects, as a new user) and what calibrating it
    reads: the model as trained (``saved``), the
    subject's data (``raw``, one subject) and the settings."""

    saved: dict
    raw: DB23
    subject: int
    training: TrainingSettings
    settings: CalibrationSettings
    seed: int

    def calibration_free(self, recording: CalibrationRecording) -> list[tuple[Candidate, float]]:
        """The two starts of a new user, each with its rest bias, neither reading the user's labels: ``none``, the
        model with the batch-norm statistics pooled over the training subjects (a model without AdaBN: as trained)
        and their rest bias set on the validation subjects; ``unlabelled`` (AdaBN models), every batch norm adapted
        on the user's ``recording`` with its labels unread, and the rest bias set at training on the validation
        subjects under the same adaptation."""
        saved, raw, subject = self.saved, self.raw, self.subject
        network, normalisation = saved["network"], saved["normalisation_"]
        # A model without AdaBN is its own calibration-free start (its statistics pooled by training).
        start = saved if saved.get("calibration_free") is None else calibration_free_start(saved, "the model")
        starts = [(network_candidate("none", start["network"], normalisation, raw, subject), start["rest_bias"])]
        if saved["adabn"]:  # a model without AdaBN has no statistics to adapt: none is its only start (as calibrate)
            adapted = personalise(network, normalisation, recording, "adabn", self.settings)
            starts.append((network_candidate("unlabelled", adapted, normalisation, raw, subject), saved["rest_bias"]))
        return starts

    def candidates(
        self, repetitions: list[int], recording: CalibrationRecording, recipes: tuple[TransferRecipe, ...]
    ) -> list[Candidate]:
        """Every method and baseline calibrated on ``repetitions`` (their ``recording``); ``transfer`` once per recipe
        of ``recipes``."""
        saved, raw, subject, settings, seed = self.saved, self.raw, self.subject, self.settings, self.seed
        network, normalisation = saved["network"], saved["normalisation_"]
        out, start = [], None
        for method in self.methods():
            if method in TRAINED:  # AdaBN and prototypes, then the network trained on the user's repetitions
                if start is None:  # one start for both trained methods (each copies it before training)
                    start = personalise(
                        network, normalisation, recording, "fine_tune", replace(settings, fine_tune_steps=0), seed
                    )
                if method == "transfer":
                    out += [self.transferred(start, repetitions, recipe) for recipe in recipes]
                    continue
                model, own = network_on_user(
                    raw, subject, repetitions, saved, self.training, settings.scratch_epochs, seed, start
                )
                out.append(network_candidate(method, model, own, raw, subject))
            else:
                model = personalise(network, normalisation, recording, method, settings, seed)
                out.append(network_candidate(method, model, normalisation, raw, subject))
        if "scratch" in settings.baselines:
            model, own = network_on_user(raw, subject, repetitions, saved, self.training, settings.scratch_epochs, seed)
            out.append(network_candidate("scratch", model, own, raw, subject))
        if "lda" in settings.baselines:
            out.append(lda_candidate(calibration_lda(raw, subject, repetitions, self.training.guard_ms), raw))
        return out

    def transferred(self, start: torch.nn.Module, repetitions: list[int], recipe: TransferRecipe) -> Candidate:
        """``start`` (AdaBN and prototypes) fine-tuned by ``recipe`` (:func:`..learning.transfer.transfer_network`)."""
        saved, raw, training = self.saved, self.raw, self.training
        guard = guard_width(training.guard_ms, raw.frame_rate_hz)
        learning_rate = saved["hyperparameters"]["learning_rate"]
        model = transfer_network(
            start,
            raw,
            saved["normalisation_"],
            self.subject,
            repetitions,
            recipe,
            learning_rate,
            training.groups,
            guard,
            self.seed,
        )
        candidate = network_candidate("transfer", model, saved["normalisation_"], raw, self.subject)
        return replace(candidate, recipe=recipe.name)

    def methods(self) -> list[str]:
        """The configured methods this model has (a classifier has no class embeddings to replace: no prototypes)."""
        contrastive = isinstance(self.saved["network"], ContrastiveModel)
        return [m for m in self.settings.methods if m != "prototypes" or contrastive]


@dataclass(frozen=True)
class ValidationUsers:
    """What the fold's validation subjects, calibrated as new users on their first c calibration repetitions and
    scored on their test ones, teach about the new users' calibration at that c (never reading a new user; one for
    every new user of the fold): per (method, recipe), the rest bias's margin (what must be added to the bias
    meeting the target on each validation user's fitted repetitions for their scored ones' mean rest false activation
    to meet it, :func:`..learning.rest_bias.shared_margin`: a bias set on fitted frames is optimistic) and the
    segment balanced accuracy, which chooses transfer's recipe."""

    margins: dict[tuple[str, str], float]
    scores: dict[tuple[str, str], float]

    @classmethod
    def of(cls, users: list[NewUser], fold: dict, count: int, target: float | None, vote_frames: int, guard: int):
        repetitions = fold["calibration"][:count]
        rest = users[0].raw.classes.index(REST) if users else 0
        scored_users: dict[tuple[str, str], list[tuple[list, float]]] = {}  # (scored stretches' scores, fitted bias)
        scores: dict[tuple[str, str], list[float]] = {}
        for user in users:
            raw, subject = user.raw, user.subject
            context = user.saved["network"].config.context
            recording = calibration_recording(raw, subject, repetitions, context, guard)
            fitted = scored_stretches(raw, subject, repetitions)
            selection, stretches = scored_repetitions(raw, subject, fold)
            for candidate in user.candidates(repetitions, recording, user.settings.transfer):
                key = (candidate.method, candidate.recipe)
                if target is not None:
                    bias = fitted_bias(candidate, raw, fitted, target, vote_frames)
                    scored_users.setdefault(key, []).append((stretch_scores(candidate, raw, stretches), bias))
                score = segment_scores(candidate, raw, selection, vote_frames)[0]["balanced_accuracy"]
                scores.setdefault(key, []).append(score)
                log.info(
                    "%s as a new user, c=%d, %s: segment balanced accuracy %.4f",
                    raw.subject_names[subject],
                    count,
                    key,
                    score,
                )
        margins = {key: shared_margin(u, rest, vote_frames, target) for key, u in scored_users.items()}
        log.info("c=%d: rest bias margins %s", count, margins)
        return cls(margins, {key: float(np.mean(v)) for key, v in scores.items()})

    def recipe(self, recipes: tuple[TransferRecipe, ...]) -> TransferRecipe:
        """The recipe with the best validation score (the first of ties; the first recipe without validation
        users)."""
        scored = [(self.scores.get(("transfer", r.name), -np.inf), -i, r) for i, r in enumerate(recipes)]
        return max(scored, key=lambda item: item[:2])[2]

    def margin(self, candidate: Candidate) -> float:
        """The candidate's margin (0 without validation users: the bias then stays in-sample)."""
        return self.margins.get((candidate.method, candidate.recipe), 0.0)


def calibration_curve(
    model_path: Path,
    tensor_paths: list[Path],
    validation_paths: list[Path],
    fold_name: str,
    fold: dict,
    training: TrainingSettings,
    calibration: dict,
    seed: int,
    out_path: Path,
) -> pd.DataFrame:
    """Write ``calibration.tsv`` for one calibration fold: one row per new user, (method or baseline) and c, see the
    module. ``tensor_paths``: the fold's new users' tensor files; ``validation_paths``: its validation subjects'."""
    settings = CalibrationSettings.from_config(calibration, training.adaptation_frames)
    saved = load_model_file(model_path)
    lda = "lda" in settings.baselines
    raw = DB23.load(
        [*tensor_paths, *validation_paths], device="cpu", with_streams=True, with_features=lda, window=saved["window"]
    )
    users = [
        NewUser(saved, raw, raw.subject_names.index(name), training, settings, seed) for name in test_subjects(fold)
    ]
    # The validation subjects as new users: they teach the rest bias's margin and choose transfer's recipe (never a
    # test subject). Without their recordings the curve would fall back to in-sample biases unannounced: refused.
    missing = [s for s in validation_subjects(fold) if s not in raw.subject_names]
    if missing:
        raise InputError(
            f"{fold_name}: validates on {missing}, whose converted files were not given: pass them as the validation "
            "tensors (--validation-tensors), as the calibration_curve rule does"
        )
    validation_users = [
        NewUser(saved, raw, raw.subject_names.index(s), training, settings, seed) for s in validation_subjects(fold)
    ]
    vote_frames = window_frames_for(training.vote_window_ms, raw.frame_rate_hz)
    guard = guard_width(training.guard_ms, raw.frame_rate_hz)
    target = training.rest_false_activation_target
    rows = []
    for count in sorted(fold["counts"]):
        # What the validation subjects teach at this c depends on them alone: once for every new user of the fold.
        validation = ValidationUsers.of(validation_users, fold, count, target, vote_frames, guard) if count else None
        for user in users:
            for row in user_rows(user, fold, count, validation, vote_frames, guard):
                rows.append(row)
                log.info("%s c=%d: %s", fold_name, count, row)
    leading = {"family": fold.get("family", fold_name), "model": saved["model"], "fold": fold_name}
    table = pd.DataFrame(rows).assign(**leading, window=saved["window"])[COLUMNS]
    atomic_write_frame(table, Path(out_path))
    return table


def user_rows(
    user: NewUser, fold: dict, count: int, validation: ValidationUsers | None, vote_frames: int, guard: int
) -> list[dict]:
    """One new user's rows at ``count`` calibration repetitions: the two calibration-free starts at 0, else every
    method and baseline with its rest bias set on the calibration recording plus ``validation``'s margin."""
    saved, raw, subject = user.saved, user.raw, user.subject
    target = user.training.rest_false_activation_target
    context = saved["network"].config.context
    name = raw.subject_names[subject]
    scored = scored_repetitions(raw, subject, fold)  # the one place the user's scored repetitions are read: scoring
    rows = []
    if count == 0:  # the unlabelled start reads the first calibration repetition's EMG, labels unread
        first = calibration_recording(raw, subject, fold["calibration"][:1], context, guard)
        for candidate, bias in user.calibration_free(first):
            frames = len(first.frames) if candidate.method == "unlabelled" else 0
            row = scored_row(candidate, raw, subject, scored, bias, vote_frames)
            extra = {"repetitions": 0, "calibration_frames": frames, "rest_bias_margin": np.nan, "recipe": ""}
            rows.append(row | extra | {"subject": name})
        return rows
    repetitions = fold["calibration"][:count]
    recording = calibration_recording(raw, subject, repetitions, context, guard)
    stretches = scored_stretches(raw, subject, repetitions)
    for candidate in user.candidates(repetitions, recording, (validation.recipe(user.settings.transfer),)):
        margin = validation.margin(candidate)
        bias = saved["rest_bias"]
        if target is not None:
            bias = fitted_bias(candidate, raw, stretches, target, vote_frames) + margin
        row = scored_row(candidate, raw, subject, scored, bias, vote_frames)
        extra = {"repetitions": count, "calibration_frames": len(recording.frames), "rest_bias_margin": margin}
        rows.append(row | extra | {"recipe": candidate.recipe, "subject": name})
    return rows
