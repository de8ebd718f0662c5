"""What one training run of a model × fold is told: the training section of the configuration, with the evaluation
keys the rest calibration at the end of training reads, as :class:`TrainingSettings`; and the random search's
hyper-parameter draws."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..core.errors import InputError
from ..core.units import ms_to_frames
from .augmentation import Augmentation

STREAM_SCORE = "val_stream_movement_accuracy"  # training.selection: stream's score, a column of history and search
# The evaluation section's keys that training reads: it sets the rest bias the evaluation then decides with.
EVALUATION_KEYS = (
    "rest_false_activation_target",
    "vote_window_ms",
    "onset_gate",
    "adaptation_protocol",
    "adaptation_update_s",
    "decision",
    "rest_promise",
)


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
    frames: str  # stream: every frame of the training repetitions' recording; segments: clean windows
    guard_ms: float  # training.guard_ms: stream frames this close to a change of label are left out
    rest_false_activation_target: float | None  # evaluation's: the rest bias's target on validation streams
    vote_window_ms: float  # evaluation's: the vote the rest calibration decides with
    onset_gate: dict | None  # evaluation's: the amplitude gate in front of the classifier (None: none)
    adaptation_protocol: str  # evaluation's: setup, past or transductive streams (.adaptation)
    adaptation_update_s: float  # evaluation's: how often a past-protocol controller updates statistics
    rest_promise: str  # evaluation's: average (one bias) or per_user (each validation subject's own too)
    decision: dict  # evaluation's: the decision rule, its grid chosen among at the end of training (decision_rules)
    log_floor_quanta: float = 0.0  # and at least this many quantisation steps of the channel (0: no such floor)
    selection: str = "segments"  # segments: validation loss and accuracy; stream: see .stream_selection
    normalisation: str = "pooled"  # per_subject: AdaBN models get a batch norm of each electrode's input
    onset_guard_ms: float | None = None  # the guard at a movement's start (None: guard_ms): 0 trains on the onset
    evaluation_batch: int = 1 << 16
    augmentation: Augmentation = field(default_factory=Augmentation)  # training batches as other arms (off)

    @classmethod
    def from_config(cls, training: dict, evaluation: dict) -> TrainingSettings:
        """From the configuration's ``training`` section and its ``evaluation`` section (at least
        :data:`EVALUATION_KEYS`); config.yaml and its schema are the one home of every default, so a key missing
        here is an error naming it."""
        try:
            return cls._from_sections(training, evaluation)
        except KeyError as error:
            section = "evaluation" if error.args[0] in EVALUATION_KEYS else "training"
            raise InputError(
                f"config key {section}.{error.args[0]} missing from the settings given to training: pass the whole "
                "validated section (config.yaml has every key)"
            ) from None

    @classmethod
    def _from_sections(cls, training: dict, evaluation: dict) -> TrainingSettings:
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
            frames=training["frames"],
            guard_ms=float(training["guard_ms"]),  # as the tables print it: 100.0
            rest_false_activation_target=evaluation["rest_false_activation_target"],
            vote_window_ms=evaluation["vote_window_ms"],
            onset_gate=evaluation["onset_gate"],
            adaptation_protocol=evaluation["adaptation_protocol"],
            adaptation_update_s=float(evaluation["adaptation_update_s"]),
            decision=evaluation["decision"],
            rest_promise=evaluation["rest_promise"],
            log_floor_quanta=training.get("log_floor_quanta", 0.0),
            selection=training.get("selection", "segments"),
            normalisation=training.get("normalisation", "pooled"),
            onset_guard_ms=training.get("onset_guard_ms"),
            augmentation=Augmentation.from_config(training.get("augmentation")),
        )

    def for_model(self, model_settings: dict) -> TrainingSettings:
        """These settings with the training keys a model's entry of ``models`` may set for itself (``normalisation``,
        ``augmentation``, ``onset_guard_ms``): a model built to serve new users, or to be measured against the
        others, can differ from the run's other models."""
        changes = {}
        if "normalisation" in model_settings:
            changes["normalisation"] = model_settings["normalisation"]
        if "onset_guard_ms" in model_settings:
            changes["onset_guard_ms"] = model_settings["onset_guard_ms"]
        if "augmentation" in model_settings:
            changes["augmentation"] = Augmentation.from_config(model_settings["augmentation"])
        return replace(self, **changes)

    def onset_guard(self, data) -> int | None:
        """``onset_guard_ms`` in frames at the data's frame rate (None: the guard band is ``guard_ms`` on every side,
        :func:`.stream_sampling.guard_mask`)."""
        if self.onset_guard_ms is None:
            return None
        return ms_to_frames(self.onset_guard_ms, data.frame_rate_hz)

    def evaluation_keys(self) -> dict:
        """The evaluation keys these settings were made with (what ``from_config`` read from that section)."""
        return {key: getattr(self, key) for key in EVALUATION_KEYS}


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
