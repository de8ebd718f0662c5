"""The classical reference: LDA on Hudgins time-domain features, as in the NinaPro benchmark papers.

Features (MAV, WL, ZC, SSC per channel over 200 ms windows ending at each 100 Hz frame) are computed at
conversion, from the band-passed 2 kHz signal (DB2, DB3) or the 100 Hz signal (DB1). Amplitude features enter
as logarithms (closer to the Gaussian classes LDA assumes), all standardised with training statistics. The
LDA uses a shrinkage covariance estimate (Ledoit-Wolf), which stays well-conditioned with 48 features and
correlated electrodes. Its decision scores over all classes are written to logits.pt like any model's, so
the same voting and subset-size code scores it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from ..core.atomic import atomic_write_tsv
from ..data.preprocess import HUDGINS_FEATURES
from .dataset import DB23, Selection
from .folds import fold_selections
from .logits import write_logits
from .model_file import write_lda_file

log = logging.getLogger(__name__)
AMPLITUDE_FEATURES = tuple(HUDGINS_FEATURES.index(name) for name in ("mav", "wl"))  # logarithms


def feature_table(data: DB23, selection: Selection) -> tuple[np.ndarray, torch.Tensor]:
    """[frame, channel × feature] for every frame of the selection, and its (subject, class, rep, frame) index."""
    rows = data.features[data.selection_mask(selection).cpu()]  # [triple, frame, channel, feature]
    table = rows.double().numpy().copy()
    table[..., AMPLITUDE_FEATURES] = np.log(table[..., AMPLITUDE_FEATURES] + 1e-9)
    return table.reshape(-1, table.shape[-2] * table.shape[-1]), data.frame_index(selection).cpu()


@dataclass
class FittedLDA:
    """One LDA with the standardisation of its training features."""

    estimator: LinearDiscriminantAnalysis
    mean: np.ndarray
    std: np.ndarray

    def scores(self, x: np.ndarray, n_classes: int) -> torch.Tensor:
        decision = self.estimator.decision_function((x - self.mean) / self.std)
        logits = torch.full((len(x), n_classes), -1e9)  # classes never trained on cannot be chosen
        logits[:, torch.as_tensor(self.estimator.classes_)] = torch.as_tensor(decision, dtype=torch.float32)
        return logits


def fit_lda(x: np.ndarray, labels: np.ndarray) -> FittedLDA:
    mean, std = x.mean(0), x.std(0)
    std[std < 1e-12] = 1.0  # dead or padded channels, and ZC of DB1's rectified signal
    estimator = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    estimator.fit((x - mean) / std, labels)
    return FittedLDA(estimator, mean, std)


def score_selection(
    data: DB23, selection: Selection, models: dict[int, FittedLDA]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of every frame of the selection, each subject scored by its own model (key -1: one shared model)."""
    x, index = feature_table(data, selection)
    logits = torch.empty((len(x), len(data.classes)))
    for subject in index[:, 0].unique().tolist():
        rows = index[:, 0] == subject
        logits[rows] = models.get(subject, models.get(-1)).scores(x[rows.numpy()], len(data.classes))
    return logits, index


def train_lda_fold(
    tensor_paths: list[Path],
    model_name: str,
    fold_name: str,
    fold: dict,
    seed: int,
    out_dir: Path,
    window: str | None = None,
) -> None:
    """Fit LDA on the fold's training frames; write search.tsv, history.tsv, model.pt and logits.pt.

    Within-subject folds (``repetitions``) fit one LDA per subject, as the NinaPro benchmarks do; across-subject
    folds (``subjects``) fit one LDA on the training subjects, which is all a new user could get.
    """
    data = DB23.load(tensor_paths, device="cpu", with_features=True, window=window)
    selections = fold_selections(data, fold, fold_name)
    start = time.perf_counter()
    x_train, train_index = feature_table(data, selections.train)
    labels = train_index[:, 1].numpy()
    if fold["scheme"] == "repetitions":
        subjects = train_index[:, 0].numpy()
        models = {int(s): fit_lda(x_train[subjects == s], labels[subjects == s]) for s in np.unique(subjects)}
    else:
        models = {-1: fit_lda(x_train, labels)}
    seconds = time.perf_counter() - start

    train_logits, _ = score_selection(data, selections.train, models)
    train_accuracy = (train_logits.argmax(1) == train_index[:, 1]).float().mean().item()
    val_logits, val_index = score_selection(data, selections.validation, models)
    val_loss = torch.nn.functional.cross_entropy(val_logits, val_index[:, 1]).item()
    val_accuracy = (val_logits.argmax(1) == val_index[:, 1]).float().mean().item()
    log.info(
        "%s/%s: train accuracy %.3f, validation accuracy %.3f", model_name, fold_name, train_accuracy, val_accuracy
    )

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
        estimators={data.subject_names[k] if k >= 0 else "all": v for k, v in models.items()},
        feature_names=list(HUDGINS_FEATURES),
        model=model_name,
        fold=fold_name,
        fold_spec=fold,
        history=[history],
        seed=seed,
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
    )
