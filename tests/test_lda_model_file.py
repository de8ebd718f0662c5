"""LDA's model.pt stores each LDA as plain tensors (no class of this package pickled), and files written before, which
pickled FittedLDA under learning/baseline.py with the fitted scikit-learn estimator inside, keep loading and score
exactly as the new ones do."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from test_lda_stream import fit, subjects
from test_train import FOLD

from contrastive_prosthetics.core.atomic import atomic_torch_save
from contrastive_prosthetics.learning.dataset import DB23
from contrastive_prosthetics.learning.fitted_lda import FittedLDA
from contrastive_prosthetics.learning.folds import fold_selections
from contrastive_prosthetics.learning.lda import fit_lda, lda_stream_logits
from contrastive_prosthetics.learning.model_file import read_model_file

OLD_MODULE = "contrastive_prosthetics.learning.baseline"


@dataclass
class OldFittedLDA:
    """FittedLDA as learning/baseline.py defined it: the estimator itself, pickled."""

    estimator: LinearDiscriminantAnalysis
    mean: np.ndarray
    std: np.ndarray


OldFittedLDA.__module__, OldFittedLDA.__name__, OldFittedLDA.__qualname__ = OLD_MODULE, "FittedLDA", "FittedLDA"


def old_estimator(model: FittedLDA) -> LinearDiscriminantAnalysis:
    """A fitted estimator with the arrays of ``model``: what the old file pickled."""
    estimator = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    estimator.coef_, estimator.intercept_, estimator.classes_ = model.coef, model.intercept, model.classes
    estimator.n_features_in_ = model.coef.shape[1]
    return estimator


def write_old_format(saved: dict, path, monkeypatch) -> None:
    """``saved`` as the code before the rename wrote it: FittedLDA pickled under learning/baseline.py (a module
    that exists only while the file is written)."""
    old = types.ModuleType(OLD_MODULE)
    old.FittedLDA = OldFittedLDA
    estimators = {name: OldFittedLDA(old_estimator(m), m.mean, m.std) for name, m in saved["estimators"].items()}
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, OLD_MODULE, old)
        atomic_torch_save(saved | {"estimators": estimators}, path)


def test_a_new_file_pickles_no_class_of_the_package_and_reads_back_as_fitted(tmp_path):
    out = fit(tmp_path)
    assert b"contrastive_prosthetics" not in (out / "model.pt").read_bytes()
    for model in read_model_file(out / "model.pt")["estimators"].values():
        assert isinstance(model, FittedLDA) and model.coef.dtype == np.float64 and model.classes.dtype == np.int64


def test_an_old_file_reads_as_fitted_lda_and_scores_the_streams_as_a_new_one(tmp_path, monkeypatch):
    out = fit(tmp_path)
    new = read_model_file(out / "model.pt")
    write_old_format(new, tmp_path / "old.pt", monkeypatch)
    assert OLD_MODULE not in sys.modules and OLD_MODULE.encode() in (tmp_path / "old.pt").read_bytes()
    old = read_model_file(tmp_path / "old.pt")
    assert list(old["estimators"]) == list(new["estimators"])
    for name, model in old["estimators"].items():
        assert isinstance(model, FittedLDA)
        assert all(np.array_equal(getattr(model, a), getattr(new["estimators"][name], a)) for a in vars(model))
    data = DB23.load(subjects(tmp_path), device="cpu", with_features=True, with_streams=True)
    pool = fold_selections(data, FOLD, "f").test_pool
    old_scores, _ = lda_stream_logits(old, data, pool, timed_frames=0)
    new_scores, _ = lda_stream_logits(new, data, pool, timed_frames=0)
    assert len(old_scores) == len(new_scores) > 0
    assert all(torch.equal(a[2], b[2]) for a, b in zip(old_scores, new_scores, strict=True))


def test_scores_are_the_estimators_decision_function_bit_for_bit():
    generator = np.random.default_rng(0)
    x, labels = generator.standard_normal((400, 12)) * 3 + 1, generator.integers(0, 5, 400)
    model = fit_lda(x, labels)
    estimator = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit((x - model.mean) / model.std, labels)
    assert np.array_equal(estimator.coef_, model.coef)  # the same fit
    probe = generator.standard_normal((300, 12)) * 3 + 1
    assert np.array_equal(model.decision(probe), estimator.decision_function((probe - model.mean) / model.std))
    saved = FittedLDA.from_dict(model.as_dict())
    assert torch.equal(saved.scores(probe, 7), model.scores(probe, 7))
