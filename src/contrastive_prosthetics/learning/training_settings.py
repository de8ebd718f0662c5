"""What one training run of a model × fold is told: the training section of the configuration as
:class:`TrainingSettings`, and the random search's hyper-parameter draws."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STREAM_SCORE = "val_stream_movement_accuracy"  # training.selection: stream's score, a column of history and search


@dataclass(frozen=True)
class HyperParameters:
    learning_rate: float
    weight_decay: float
    dropout: float


@dataclass(frozen=True)
class TrainingSettings:
    groups: int  # groups per batch; each holds one frame of every class
    steps_per_epoch: int
    log_amplitude: bool
    search_trials: int
    search_epochs: int
    learning_rate: tuple[float, float]  # log-uniform range
    weight_decay: tuple[float, float]  # log-uniform range
    dropout: tuple[float, float]  # uniform range
    final_epochs: int
    log_floor: float  # the log-amplitude floor, a fraction of each channel's training median
    adaptation_frames: int  # most stream frames a cross-fitted AdaBN adaptation reads
    reference_frames: int  # recording frames whose statistics normalise each batch of a cross-fitted AdaBN model
    frames: str = "segments"  # stream: every frame of the training repetitions' recording; segments: clean windows
    guard_ms: float = 0.0  # stream frames this close to a change of label are left out
    rest_false_activation_target: float | None = None  # the rest bias's target on validation streams (None: no bias)
    calibration_vote_ms: float = 0.0  # the vote the calibration decides with (the evaluation's)
    log_floor_quanta: float = 0.0  # and at least this many quantisation steps of the channel (0: no such floor)
    selection: str = "segments"  # segments: validation loss and accuracy; stream: see .stream_selection
    onset_gate: dict | None = None  # evaluation.onset_gate: the amplitude gate in front of the classifier (None: none)
    evaluation_batch: int = 1 << 16

    @classmethod
    def from_config(cls, training: dict) -> TrainingSettings:
        search = training["search"]
        return cls(
            groups=training["groups"],
            steps_per_epoch=training["steps_per_epoch"],
            log_amplitude=training["log_amplitude"],
            search_trials=search["trials"],
            search_epochs=search["epochs"],
            learning_rate=tuple(search["learning_rate"]),
            weight_decay=tuple(search["weight_decay"]),
            dropout=tuple(search["dropout"]),
            final_epochs=training["final"]["epochs"],
            log_floor=training["log_floor"],
            adaptation_frames=training["adaptation_frames"],
            reference_frames=training["reference_frames"],
            # Absent from a training section written before stream training: the reference's clean segments.
            frames=training.get("frames", "segments"),
            guard_ms=training.get("guard_ms", 0.0),
            rest_false_activation_target=training.get("rest_false_activation_target"),
            calibration_vote_ms=training.get("calibration_vote_ms", 0.0),
            log_floor_quanta=training.get("log_floor_quanta", 0.0),
            onset_gate=training.get("onset_gate"),
            selection=training.get("selection", "segments"),
        )


def sample_hyperparameters(settings: TrainingSettings, trials: int, seed: int) -> list[HyperParameters]:
    """``trials`` configurations: learning rate and weight decay log-uniform, dropout uniform."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))

    def log_uniform(low_high: tuple[float, float]) -> float:
        return float(math.exp(rng.uniform(math.log(low_high[0]), math.log(low_high[1]))))

    return [
        HyperParameters(
            log_uniform(settings.learning_rate),
            log_uniform(settings.weight_decay),
            float(rng.uniform(*settings.dropout)),
        )
        for _ in range(trials)
    ]
