"""The classical reference: LDA on Hudgins time-domain features, as in the NinaPro benchmark papers.

Features (MAV, WL, ZC, SSC per channel over 200 ms windows ending at each 100 Hz frame: causal) are computed at
conversion, from the band-passed 2 kHz signal (DB2, DB3) or the 100 Hz signal (DB1), for every frame of the
continuous recording. Amplitude features enter as logarithms (closer to the Gaussian classes LDA assumes), all
standardised with training statistics. The LDA uses a shrinkage covariance estimate (Ledoit-Wolf), which stays
well-conditioned with 48 features and correlated electrodes.

It is fitted on the frames the networks train on (``training.frames``): every frame of the training repetitions'
recording outside the guard band (``stream``), or the clean segments (``segments``), so that the baseline stays
fair; and it gets a rest bias calibrated on the validation streams exactly as the networks do
(:mod:`.rest_bias`), so that the stream comparison is at the same rest false activation. Its decision scores
over all classes are written to logits.pt like any model's, with the test rest windows' (:func:`lda_rest_windows`,
from the stream's Hudgins features), so the same voting and subset-size code scores it, and
:func:`lda_stream_logits` scores the test streams for the stream evaluation.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_write_tsv
from ..data.preprocess import HUDGINS_FEATURES
from .dataset import DB23, Selection
from .decision_choice import calibrations
from .fitted_lda import FittedLDA
from .folds import fold_selections, training_view
from .logits import RestWindows, write_logits
from .model_file import write_lda_file
from .onset_gate import OnsetGate
from .rest_bias import subject_rest_bias
from .rest_windows import located, rest_window_starts, window_positions
from .stream_sampling import guard_width, stream_training_positions
from .stream_scoring import class_bias, scored_stretches, with_gate
from .training_settings import TrainingSettings

log = logging.getLogger(__name__)
AMPLITUDE_FEATURES = tuple(HUDGINS_FEATURES.index(name) for name in ("mav", "wl"))  # logarithms
SHARED = -1  # the key of one LDA for every subject (across-subject folds)


def design_matrix(rows: torch.Tensor) -> np.ndarray:
    """[frame, channel × feature] from Hudgins features [..., channel, feature], amplitudes as logarithms."""
    table = rows.double().numpy().copy()
    table[..., AMPLITUDE_FEATURES] = np.log(table[..., AMPLITUDE_FEATURES] + 1e-9)
    return table.reshape(-1, table.shape[-2] * table.shape[-1])


def feature_table(data: DB23, selection: Selection) -> tuple[np.ndarray, torch.Tensor]:
    """[frame, channel × feature] for every segment frame of the selection, and its (subject, class, rep, frame)
    index."""
    rows = data.features[data.selection_mask(selection).cpu()]  # [triple, frame, channel, feature]
    return design_matrix(rows), data.frame_index(selection).cpu()


def training_table(
    data: DB23, selection: Selection, frames: str, guard_frames: int, onset_guard_frames: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, subject, class) of the frames LDA is fitted on: see the module."""
    if frames == "stream":
        positions = stream_training_positions(data, selection, guard_frames, onset_guard_frames)
        streams = data.streams
        return (
            design_matrix(streams.features[positions]),
            streams.subject[positions].numpy(),
            streams.classes[positions].numpy(),
        )
    x, index = feature_table(data, selection)
    return x, index[:, 0].numpy(), index[:, 1].numpy()


def fit_lda(x: np.ndarray, labels: np.ndarray) -> FittedLDA:
    # scikit-learn is imported here, not at the top: scoring a fitted LDA (the stream evaluation) does not need it.
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    mean, std = x.mean(0), x.std(0)
    std[std < 1e-12] = 1.0  # dead or padded channels, and ZC of DB1's rectified signal
    estimator = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    estimator.fit((x - mean) / std, labels)
    return FittedLDA.from_estimator(estimator, mean, std)


def score_selection(
    data: DB23, selection: Selection, models: dict[int, FittedLDA]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of every segment frame of the selection, each subject scored by its own model (or the shared one)."""
    x, index = feature_table(data, selection)
    logits = torch.empty((len(x), len(data.classes)))
    for subject in index[:, 0].unique().tolist():
        rows = index[:, 0] == subject
        logits[rows] = models.get(subject, models.get(SHARED)).scores(x[rows.numpy()], len(data.classes))
    return logits, index


def lda_rest_windows(data: DB23, selection: Selection, models: dict[int, FittedLDA], guard_frames: int) -> RestWindows:
    """The selection's rest windows (:mod:`.rest_windows`) scored as :func:`score_selection` scores its segments,
    each subject by its own model, from the stream's Hudgins features (stored in bfloat16: 0.4 % of each value,
    where the segments' are float32)."""
    length, n_classes = data.features.shape[3], len(data.classes)
    start = rest_window_starts(data, selection, length, guard_frames)
    windows = located(data, start, torch.empty((len(start), length, n_classes)))
    for subject in windows.subject.unique().tolist():
        rows = windows.subject == subject
        x = design_matrix(data.streams.features[window_positions(start[rows], length)])
        scores = models.get(subject, models.get(SHARED)).scores(x, n_classes)
        windows.logits[rows] = scores.view(-1, length, n_classes)
    return windows


def stream_scores(model: FittedLDA, data: DB23, positions: np.ndarray) -> torch.Tensor:
    """[frame, class] decision scores of the stream frames at ``positions``, each from its own causal features."""
    return model.scores(design_matrix(data.streams.features[torch.from_numpy(positions)]), len(data.classes))


def fit_models(x: np.ndarray, subjects: np.ndarray, labels: np.ndarray, scheme: str) -> dict[int, FittedLDA]:
    """Within-subject folds (``repetitions``) fit one LDA per subject, as the NinaPro benchmarks do; other folds one
    LDA on the training subjects, which is all a new user could get."""
    if scheme == "repetitions":
        return {int(s): fit_lda(x[subjects == s], labels[subjects == s]) for s in np.unique(subjects)}
    return {SHARED: fit_lda(x, labels)}


def lda_calibrations(data: DB23, selection: Selection, models: dict[int, FittedLDA], settings: TrainingSettings):
    """The onset gate, the rest calibration and the decision rule (``model.pt``'s ``decision``: a dict, or None for
    the vote) on the validation ``selection``'s streams, the gate in front, as the networks'
    (:func:`.decision_choice.calibrations`)."""
    gate = OnsetGate.from_config(settings.onset_gate, data.frame_rate_hz)
    stretches = lda_validation_stretches(data, selection, models, gate)
    names = [data.subject_names[subject] for subject, _ in stretches]
    calibration, rule = calibrations([s for _, s in stretches], data.classes, settings, data.frame_rate_hz, names)
    return gate, calibration, None if rule is None else rule.as_dict()


def lda_validation_stretches(
    data: DB23, selection: Selection, models: dict[int, FittedLDA], gate: OnsetGate | None
) -> list[tuple[torch.Tensor, np.ndarray]]:
    """(subject, (logits without a bias, truth)) of every stretch of the validation ``selection``'s streams, the
    onset ``gate`` in front: what the rest bias and the decision rule are chosen on."""
    return [
        (
            subject,
            (
                with_gate(
                    stream_scores(models.get(subject, models.get(SHARED)), data, positions),
                    data,
                    subject,
                    positions,
                    gate,
                ),
                data.streams.classes[positions].numpy(),
            ),
        )
        for subject in selection.subjects.tolist()
        for repetition in (selection.repetitions + 1).tolist()
        for positions in scored_stretches(data, subject, [repetition])
    ]


def lda_stream_logits(
    saved: dict, data: DB23, test_pool: dict[int, list[int]], timed_frames: int
) -> tuple[list, float]:
    """The stream evaluation's scores for an LDA model.pt: per test subject and scored stretch (subject, positions,
    logits with the rest bias), and the median seconds per frame of scoring one frame at a time (on the first
    ``timed_frames``; the features come from conversion, so their computation is not in it)."""
    gate = OnsetGate.from_dict(saved.get("onset_gate"))
    out, seconds = [], []
    for subject, repetitions in test_pool.items():
        model = saved["estimators"].get(data.subject_names[subject], saved["estimators"].get("all"))
        bias = class_bias(data.classes, subject_rest_bias(saved, data.subject_names[subject]))
        for positions in scored_stretches(data, subject, repetitions):
            for one in positions[: max(timed_frames - len(seconds), 0), None]:  # one frame at a time
                start = time.perf_counter()
                stream_scores(model, data, one)
                seconds.append(time.perf_counter() - start)
            out.append(
                (
                    subject,
                    positions,
                    with_gate(stream_scores(model, data, positions) + bias, data, subject, positions, gate),
                )
            )
    return out, float(np.median(seconds)) if seconds else float("nan")


def train_lda_fold(
    tensor_paths: list[Path],
    model_name: str,
    fold_name: str,
    fold: dict,
    seed: int,
    out_dir: Path,
    settings: TrainingSettings,
    window: str | None = None,
) -> None:
    """Fit LDA on the fold's training frames (``settings.frames``, see the module); write search.tsv, history.tsv,
    model.pt and logits.pt."""
    frames = settings.frames
    data = DB23.load(tensor_paths, device="cpu", with_features=True, with_streams=True, window=window)  # rest windows
    selections = fold_selections(data, fold, fold_name)
    data = training_view(data, fold, selections)  # a zero-shot fold's held-out stretches left out, as networks'
    start = time.perf_counter()
    guard = guard_width(settings.guard_ms, data.frame_rate_hz)
    x_train, subjects, labels = training_table(data, selections.train, frames, guard, settings.onset_guard(data))
    models = fit_models(x_train, subjects, labels, fold["scheme"])
    seconds = time.perf_counter() - start

    train_logits, train_index = score_selection(data, selections.train, models)
    train_accuracy = (train_logits.argmax(1) == train_index[:, 1]).float().mean().item()
    val_logits, val_index = score_selection(data, selections.validation, models)
    val_loss = torch.nn.functional.cross_entropy(val_logits, val_index[:, 1]).item()
    val_accuracy = (val_logits.argmax(1) == val_index[:, 1]).float().mean().item()
    log.info(
        "%s/%s: train accuracy %.3f, validation accuracy %.3f", model_name, fold_name, train_accuracy, val_accuracy
    )
    gate, calibration, decision = lda_calibrations(data, selections.validation, models, settings)

    out_dir.mkdir(parents=True, exist_ok=True)
    # LDA has no hyper-parameters to search: one "trial" records the fixed choice and its validation score.
    atomic_write_tsv(
        [
            {
                "trial": 1,
                "solver": "lsqr",
                "shrinkage": "auto",
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "chosen": True,
            }
        ],
        out_dir / "search.tsv",
    )
    history = {"epoch": 1, "train_accuracy": train_accuracy, "val_loss": val_loss, "val_accuracy": val_accuracy}
    atomic_write_tsv([history | {"seconds": seconds, "frames_per_s": len(x_train) / seconds}], out_dir / "history.tsv")
    write_lda_file(
        out_dir / "model.pt",
        data,
        estimators={data.subject_names[k] if k != SHARED else "all": v for k, v in models.items()},
        feature_names=list(HUDGINS_FEATURES),
        model=model_name,
        fold=fold_name,
        fold_spec=fold,
        frames=frames,
        history=[history],
        seed=seed,
        rest_bias=calibration.bias if calibration else 0.0,
        calibration=calibration.as_dict() if calibration else None,
        rest_false_activation_target=settings.rest_false_activation_target,
        guard_ms=settings.guard_ms,
        onset_gate=None if gate is None else gate.as_dict(),
        decision=decision,
    )
    test_logits, test_index = score_selection(data, selections.test, models)  # the one place test data are read
    write_logits(
        out_dir / "logits.pt",
        test_logits,
        test_index,
        data,
        model_name,
        fold_name,
        False,
        "none",
        fold.get("unseen", []),
        rest_windows=lda_rest_windows(data, selections.test, models, guard),
    )
