"""What a few-shot calibration is measured against: models trained on the new user's calibration repetitions alone.

``scratch``  the same network (architecture, and the hyper-parameters the search chose for the model trained on
             other people) trained from scratch on the user's calibration repetitions' stream, for
             ``calibration.scratch_epochs`` epochs of the run's training budget per epoch. There is no held-out data
             to select on: the kept epoch is the one with the lowest loss on the calibration repetitions' segments
             (``training.selection: segments`` on them), so it is the best the user's data alone can give.
``lda``      LDA on the Hudgins features of the same frames (:mod:`.lda`).

Both read only the user's calibration repetitions: frames outside the guard band for fitting, as stream training.
Neither draws other arms (``training.augmentation``, for a network trained on other people): they fit the user's
own arm.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .augmentation import Augmentation
from .dataset import DB23, Normalisation
from .fitted_lda import FittedLDA
from .folds import FoldSelections
from .lda import fit_lda, training_table
from .models import ModelConfig
from .stream_sampling import guard_width
from .train import Device, Setting, train_once
from .training_settings import HyperParameters, TrainingSettings


def network_on_user(
    raw: DB23,
    subject: int,
    repetitions: list[int],
    saved: dict,
    training: TrainingSettings,
    epochs: int,
    seed: int,
    start: torch.nn.Module | None = None,
) -> tuple[torch.nn.Module, Normalisation]:
    """The network of ``saved`` (its model_config with one-hot classes, its chosen hyper-parameters) trained on
    ``repetitions`` of ``subject`` in ``raw`` for ``epochs``, and the normalisation its input has. From scratch
    (``start`` None), with the normalisation of those repetitions (see the module); or fine-tuned from ``start`` (a
    one-hot network of that config: :func:`.personalise.personalise`'s), with the normalisation it was trained
    with."""
    settings = replace(training, selection="segments", augmentation=Augmentation())
    selection = raw.select(subjects=[raw.subject_names[subject]], repetitions=repetitions)
    if start is None:
        normalisation = raw.normalisation(
            selection,
            log_amplitude=settings.log_amplitude,
            epsilon_fraction=settings.log_floor,
            floor_quanta=settings.log_floor_quanta,
        )
    else:
        normalisation = saved["normalisation_"]
    data = raw.normalised(normalisation)
    pool = {subject: sorted(repetitions)}
    selections = FoldSelections(selection, selection, selection, pool, pool)
    config = ModelConfig(**{**saved["model_config"], "class_encoder": "onehot"})
    device = Device(torch.device("cpu"))
    setting = Setting(
        data=data,
        selections=selections,
        config=config,
        settings=settings,
        adabn=False,
        adaptation="none",
        device=device,
        seed=seed,
        raw=raw,
        normalisation=normalisation,
    )
    initial = None if start is None else start.state_dict()
    name = "scratch" if start is None else "fine-tune"
    model, _, _ = train_once(setting, HyperParameters(**saved["hyperparameters"]), epochs, seed, name, initial)
    if model is None:
        raise ValueError(f"the network trained on repetitions {repetitions} diverged: lower the learning rate range")
    return model.eval(), normalisation


def calibration_lda(raw: DB23, subject: int, repetitions: list[int], guard_ms: float) -> FittedLDA:
    """LDA fitted on the stream frames of ``repetitions`` of ``subject`` outside the guard band (``raw`` loaded with
    its features)."""
    selection = raw.select(subjects=[raw.subject_names[subject]], repetitions=repetitions)
    x, _, labels = training_table(raw, selection, "stream", guard_width(guard_ms, raw.frame_rate_hz))
    return fit_lda(x, labels)
