"""One fitted LDA as model.pt stores it: the standardisation of its training features and the linear decision
function scikit-learn fitted, as plain arrays (no class of this package is pickled, so a file keeps loading when
a module is renamed).

Scores are scikit-learn's ``decision_function`` of the standardised features, computed the way it computes them
(``x @ coef.T + intercept`` in float64), so a model read back decides bit for bit as the fitted one did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Where FittedLDA lived when it pickled the fitted scikit-learn estimator itself (model.pt files written before
# it moved here): the reader looks that path up here, and __setstate__ turns such a pickle into arrays.
PICKLED_MODULES = {"contrastive_prosthetics.learning.baseline": __name__}
ARRAYS = ("coef", "intercept", "classes", "mean", "std")


@dataclass
class FittedLDA:
    """One LDA: its decision function and the standardisation of its training features."""

    coef: np.ndarray  # [class, feature] (one row for two classes, as scikit-learn keeps it)
    intercept: np.ndarray  # [class]
    classes: np.ndarray  # the class indices it was fitted on, in the order of its scores
    mean: np.ndarray  # [feature] of the training features
    std: np.ndarray  # [feature], 1 where a feature was constant

    @classmethod
    def from_estimator(cls, estimator, mean: np.ndarray, std: np.ndarray) -> FittedLDA:
        """From a fitted ``LinearDiscriminantAnalysis`` and the standardisation it was fitted after."""
        return cls(estimator.coef_, estimator.intercept_, estimator.classes_, mean, std)

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The arrays as tensors, as model.pt stores them (:func:`from_dict` reads them back unchanged)."""
        return {name: torch.from_numpy(np.asarray(getattr(self, name))) for name in ARRAYS}

    @classmethod
    def from_dict(cls, saved: dict) -> FittedLDA:
        return cls(**{name: saved[name].numpy() for name in ARRAYS})

    def __setstate__(self, state: dict) -> None:
        """A FittedLDA pickled by an older version (the estimator itself, its mean and std) as arrays."""
        if "estimator" in state:
            state = vars(FittedLDA.from_estimator(state["estimator"], state["mean"], state["std"]))
        self.__dict__.update(state)

    def decision(self, x: np.ndarray) -> np.ndarray:
        """scikit-learn's ``decision_function`` of the standardised ``x`` [frame, feature], in its arithmetic."""
        scores = ((x - self.mean) / self.std) @ self.coef.T + self.intercept
        return scores.reshape(-1) if scores.shape[1] == 1 else scores

    def scores(self, x: np.ndarray, n_classes: int) -> torch.Tensor:
        logits = torch.full((len(x), n_classes), -1e9)  # classes never trained on cannot be chosen
        logits[:, torch.as_tensor(self.classes)] = torch.as_tensor(self.decision(x), dtype=torch.float32)
        return logits
