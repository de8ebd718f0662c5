"""``model.pt``: the one home of its format, for networks and LDA alike: the fields each kind carries (defined once,
in the order they are saved), their writers and their readers.

Writers: :func:`write_network_file` (:mod:`.train`) and :func:`write_lda_file` (:mod:`.lda`); each takes the
fields of its schema, no more and no fewer. Readers: :func:`read_model_file` (either kind, as saved),
:func:`read_network_file` (a network's, as saved: light, for what a controller needs to know before it is built)
and :func:`load_model_file` (a network's, with its network, normalisation and any kept pose class encoder built, for
the controller, export and :mod:`..evaluation.stream`). A wrong file gives an error naming the file, the field and
what to do. ``pose_encoder`` is optional (backward compatible): a file written before it existed loads as it did.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.atomic import atomic_torch_save
from ..core.errors import InputError
from ..core.torch_file import load_torch_file
from .dataset import DB23, Normalisation
from .fitted_lda import PICKLED_MODULES, FittedLDA
from .models import ModelConfig, build_model, pose_class_encoder

# Fields of a network's model.pt, in the order they are saved.
NETWORK_FIELDS = {
    "state_dict": "weights of the kept epoch (the lowest validation loss), on the CPU",
    "model_config": "ModelConfig.as_dict(), with the chosen dropout",
    "hyperparameters": "the chosen learning_rate, weight_decay and dropout",
    "normalisation": "Normalisation.state_dict(), from the training selection only",
    "classes": "class names, in the order of the logits",
    "subjects": "every subject of the run, in the order of the tensor files",
    "frame_rate_hz": "frames per second",
    "preprocess": "PreprocessParams.as_dict(): how the frames were made (a controller makes them the same way)",
    "model": "the model's name in the configuration",
    "adabn": "whether it adapts batch-norm statistics to each subject",
    "adaptation": "where AdaBN statistics come from, or 'none'",
    "adaptation_protocol": "what its streams (rest bias, selection, evaluation) adapt on: 'setup' (the user's "
    "recordings before use), 'past' (the recording before each stretch), 'transductive' (other scored repetitions, or "
    "the scored frames) or 'none'",
    "adaptation_update_s": "evaluation.adaptation_update_s: how often a deployable controller updates its statistics",
    "fold": "the fold's name",
    "fold_spec": "the fold's configuration",
    "window": "the segment window trained on",
    "unseen": "gestures held out of training (zero-shot folds)",
    "pose_prototypes": "[class, sensor] pose prototypes of a pose class encoder, or None",
    "pose_spread": "[sensor] float64: what every pose prototype was divided by (learning/poses.py), so that a gesture "
    "described by its pose after training is coded alike (Controller.describe); None without a pose class encoder",
    "pose_encoder": "state_dict of the trained pose class encoder, on the CPU, of a model calibrated to its user by "
    "prototypes or fine_tune (its class encoder then one-hot, the user's class embeddings): what codes a gesture "
    "described to it afterwards (Controller.describe, export/replay --describe); None otherwise. Optional: files "
    "written before it lack it and load unchanged (a calibrated one's gestures can then no longer be described)",
    "best_epoch": "the kept epoch, 1-based: the lowest finite validation loss",
    "history": "per epoch: losses, accuracies, learning rate (no timings, so that reruns give identical files)",
    "seed": "the seed of the run",
    "rest_bias": "added to rest's logit before every decision, calibrated on validation streams (0.0: none)",
    "calibration": "how rest_bias was chosen: target, validation false activation before and after, frames; or None",
    "rest_false_activation_target": "evaluation.rest_false_activation_target it was calibrated for (None: no bias)",
    "guard_ms": "training.guard_ms: frames this close to a change of label were not fitted on (nor calibrated on)",
    "onset_gate": "OnsetGate.as_dict(): the amplitude gate in front of the classifier (calibrated with it), or None",
    "decision": "Hysteresis.as_dict(): the decision rule chosen on the validation streams, its rest_offset on top of "
    "rest_bias (evaluation.decision; learning/decision_rules.py), or None: the vote",
    "calibration_free": "an AdaBN model trained on other people (subjects folds): its start for a new user it has read "
    "nothing of: batchnorm (statistics pooled over the training subjects), rest_bias and calibration (set on the "
    "validation subjects under them); None otherwise",
    "personalisation": "how it was calibrated to one user (method, recordings, frames: the calibrate command), or None",
}
# Fields of an LDA model's model.pt, in the order they are saved.
LDA_FIELDS = {
    "estimators": "subject name (or 'all': one LDA for every subject) → FittedLDA.as_dict(): its arrays, as tensors",
    "feature_names": "the Hudgins features, in the order of the features' last axis",
    "classes": NETWORK_FIELDS["classes"],
    "subjects": NETWORK_FIELDS["subjects"],
    "model": NETWORK_FIELDS["model"],
    "adabn": "always False",
    "adaptation": "always 'none'",
    "fold": NETWORK_FIELDS["fold"],
    "fold_spec": NETWORK_FIELDS["fold_spec"],
    "window": NETWORK_FIELDS["window"],
    "frames": "what it was fitted on: 'stream' (every frame of the training repetitions' recording) or 'segments'",
    "history": "the one fit: training and validation accuracy, validation loss",
    "seed": NETWORK_FIELDS["seed"],
    "rest_bias": NETWORK_FIELDS["rest_bias"],
    "calibration": NETWORK_FIELDS["calibration"],
    "rest_false_activation_target": NETWORK_FIELDS["rest_false_activation_target"],
    "guard_ms": NETWORK_FIELDS["guard_ms"],
    "onset_gate": NETWORK_FIELDS["onset_gate"],
    "decision": NETWORK_FIELDS["decision"],
}
# What running a network needs (controller, export, stream evaluation): files written by hand for a device or a
# benchmark may carry just these.
RUNNING_FIELDS = (
    "state_dict",
    "model_config",
    "normalisation",
    "classes",
    "frame_rate_hz",
    "preprocess",
    "model",
    "adabn",
    "adaptation",
    "fold",
    "window",
)
# The field that tells the two kinds apart.
KIND_FIELDS = {"state_dict": "network", "estimators": "LDA"}


def _write(path: Path, schema: dict, fields: dict) -> None:
    missing = [key for key in schema if key not in fields]
    unknown = [key for key in fields if key not in schema]
    if missing or unknown:
        raise ValueError(
            f"{path}: model.pt field(s) missing {missing}, unknown {unknown}: a new field goes into the schema in "
            "learning/model_file.py first"
        )
    atomic_torch_save({key: fields[key] for key in schema}, Path(path))


# Fields that describe the data trained on: each the DB23 attribute it is read from.
DATA_FIELDS = {
    "classes": "classes",
    "subjects": "subject_names",
    "frame_rate_hz": "frame_rate_hz",
    "preprocess": "preprocess",
    "window": "window",
}


def _described_by(data: DB23, schema: dict) -> dict:
    """The fields of ``schema`` that the data trained on says (:data:`DATA_FIELDS`)."""
    return {key: getattr(data, attribute) for key, attribute in DATA_FIELDS.items() if key in schema}


def write_network_file(path: Path, data: DB23, **fields) -> None:
    """Write a network's ``model.pt``: every field of :data:`NETWORK_FIELDS`, those that describe the data taken from
    ``data`` (``personalisation`` None unless given: training's models are nobody's; ``pose_spread`` None unless given:
    only a pose class encoder has one; ``pose_encoder`` None: only calibration writes one); a missing or unknown field
    is a ``ValueError``."""
    optional = {"personalisation": None, "pose_spread": None, "pose_encoder": None}
    _write(path, NETWORK_FIELDS, optional | _described_by(data, NETWORK_FIELDS) | fields)


def write_personalised_file(path: Path, saved: dict, **changes) -> None:
    """Write the ``model.pt`` of a network read from ``saved`` (a model.pt as read) with ``changes``: the fields a
    calibration to one user replaces (weights, model config, statistics' source, rest bias, personalisation, the pose
    class encoder it kept). A field ``saved`` lacks (an older file's) is None: ``pose_encoder`` among them."""
    fields = {key: saved.get(key) for key in NETWORK_FIELDS} | changes
    _write(path, NETWORK_FIELDS, fields)


def write_lda_file(path: Path, data: DB23, **fields) -> None:
    """Write an LDA model's ``model.pt``: every field of :data:`LDA_FIELDS` (``adabn`` is False; those that describe
    the data taken from ``data``; ``estimators`` given as FittedLDA, stored as their arrays); a missing or unknown
    field is a ``ValueError``."""
    if "estimators" in fields:  # plain tensors: no class of ours is pickled
        fields["estimators"] = {name: model.as_dict() for name, model in fields["estimators"].items()}
    _write(path, LDA_FIELDS, _described_by(data, LDA_FIELDS) | {"adabn": False, "adaptation": "none"} | fields)


def read_model_file(path: Path) -> dict:
    """A ``model.pt`` of either kind, as saved (an LDA's ``estimators`` as FittedLDA, from files of every version);
    an error naming the file (and the field) if it is not one."""
    path = Path(path)
    saved = load_torch_file(
        path, "a model.pt", "not found; run the train rule that writes it", "delete it and train again", PICKLED_MODULES
    )
    if not isinstance(saved, dict) or not any(key in saved for key in KIND_FIELDS):
        raise InputError(
            f"{path}: not a model.pt (no field {' or '.join(KIND_FIELDS)}); give the model.pt that training wrote"
        )
    if "estimators" in saved:  # older files pickled FittedLDA itself: it comes back as one already
        saved["estimators"] = {
            name: FittedLDA.from_dict(model) if isinstance(model, dict) else model
            for name, model in saved["estimators"].items()
        }
    return saved


def read_network_file(path: Path) -> dict:
    """A network's ``model.pt`` as saved, without building the network: an error naming the file if it is an LDA
    model's, and the fields if it lacks any that running it needs."""
    saved = read_model_file(path)
    if "state_dict" not in saved:
        raise InputError(
            f"{path}: an LDA model's model.pt, not a network's: an LDA model cannot run in the controller or be "
            "exported; give a network's model.pt"
        )
    missing = [key for key in RUNNING_FIELDS if key not in saved]
    if missing:
        raise InputError(f"{path}: field(s) {missing} missing; it was written by an older version: train again")
    return saved


def load_model_file(path: Path) -> dict:
    """A network's ``model.pt`` with its ``network`` (eval mode), ``normalisation_`` and ``pose_encoder_`` (the
    trained pose class encoder a calibrated model keeps, or None) built; an error naming the file if its
    ``state_dict`` (or ``pose_encoder``) does not fit its ``model_config`` key for key and shape."""
    saved = read_network_file(path)
    model = fitted(build_model(ModelConfig(**saved["model_config"])), saved, "state_dict", path, "train again")
    built = {"network": model.eval(), "normalisation_": Normalisation.from_state_dict(saved["normalisation"])}
    return saved | built | {"pose_encoder_": kept_pose_encoder(saved, model.config, path)}


def kept_pose_encoder(saved: dict, config: ModelConfig, path: Path) -> torch.nn.Module | None:
    """The trained pose class encoder a calibrated model.pt keeps (``pose_encoder``), built (eval mode); None
    without one. Backward compatible: files written before the field existed have none and load as they did."""
    if saved.get("pose_encoder") is None:
        return None
    encoder = fitted(pose_class_encoder(config), saved, "pose_encoder", path, "calibrate the trained model.pt again")
    return encoder.eval()


def fitted(module: torch.nn.Module, saved: dict, field: str, path: Path, remedy: str) -> torch.nn.Module:
    """``module`` with the weights of ``saved[field]``, loaded strictly (a wrong or missing key is never silently
    skipped), else an error naming the file, the field and ``remedy``."""
    try:
        module.load_state_dict(saved[field])
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise InputError(
            f"{path}: {field} does not fit model_config ({detail}); it was edited or written by another version: "
            f"{remedy}"
        ) from None
    return module


def rest_target_of(saved: dict) -> float | None:
    """The rest false activation target a model.pt was calibrated for (None: no bias). Files written before the
    field existed say it in their ``calibration`` (None when there was no target)."""
    if "rest_false_activation_target" in saved:
        return saved["rest_false_activation_target"]
    return None if saved.get("calibration") is None else saved["calibration"]["target"]


def guard_ms_of(saved: dict, path: Path) -> float:
    """The ``training.guard_ms`` a model.pt was trained with; an error naming the file for one written before the
    field existed."""
    if saved.get("guard_ms") is None:
        raise InputError(
            f"{path}: field guard_ms missing: it was written before models recorded training.guard_ms; give the "
            "guard band explicitly (--guard-ms) or train again"
        )
    return saved["guard_ms"]
