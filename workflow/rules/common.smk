# Shared wiring: which subjects exist and where their files are. Everything here asks the package.
import json
import os
import re

from contrastive_prosthetics.evaluation.artefacts import (
    EVALUATION_TABLES,
    FIGURES,
    FULL_TABLES,
    POSE_DECODING_TABLES,
    STREAM_TABLES,
    STREAM_SUMMARY_TABLES,
    SUMMARY_TABLES,
    ZERO_SHOT_STREAM_TABLES,
    ZERO_SHOT_TABLES,
)
from contrastive_prosthetics.learning.folds import (
    fold_families,
    fold_runs,
    fold_subjects,
    test_subjects,
    validation_subjects,
)
from contrastive_prosthetics.learning.training_settings import EVALUATION_KEYS
from contrastive_prosthetics.data.ninapro import DATABASES, database, exercise_from_file_name
from contrastive_prosthetics.data.download import archive_name
from contrastive_prosthetics.data.sources import archive_dir, raw_sources, subject_dir, tracked_inputs
from contrastive_prosthetics.data.sources import source_arguments as convert_source_arguments

SOURCE = config["data"]["source"]
EXERCISES = config["data"]["exercises"]
SUBJECTS = [(db, subject) for db, subjects in config["data"]["databases"].items() for subject in subjects]
WINDOWS = list(config["preprocess"]["windows"])
FAMILIES = fold_families(config["folds"])


wildcard_constraints:
    db="|".join(re.escape(name) for name in DATABASES),
    subject=r"\d+",
    model="|".join(re.escape(name) for name in config["models"]),
    fold="|".join(re.escape(name) for name in config["folds"]),
    window="|".join(WINDOWS),


def models_of_kind(wanted):
    """A wildcard pattern matching the configured models whose kind passes `wanted` (never matches if none do)."""
    names = [name for name, model in config["models"].items() if wanted(model["kind"])]
    return "|".join(re.escape(name) for name in names) or "(?!)"


def train_priority(wildcards):
    """The longest chains of jobs start first: an AdaBN network (it adapts to every validation and test repetition
    as it trains and is scored: twice the others' time), then a calibration fold's network (its calibration curve
    follows), then the rest."""
    if config["models"][wildcards.model]["adabn"]:
        return 2
    return 1 if "calibration" in config["folds"][wildcards.fold] else 0


def output_folder(wildcards, output):
    """The folder of the rule's first output, where its command writes (``--out-dir``, ``--dest-dir``)."""
    return os.path.dirname(output[0])


def archive_folder(wildcards, output):
    """Where ``download`` keeps the archive: beside the subject folder of its output (``--archive-dir``)."""
    return str(archive_dir(os.path.dirname(output[0])))


def input_folder(wildcards, input):
    """The folder of the rule's first input, where its command reads (``--eval-dir``)."""
    return os.path.dirname(input[0])


def target_option():
    """--target of evaluation.rest_false_activation_target, or nothing when it is null (no rest promise)."""
    target = config["evaluation"]["rest_false_activation_target"]
    return "" if target is None else f"--target {target}"


def run_table(table):
    """results/eval/{table}.tsv, in the report with its own caption unless it is a full table (a file beside it)."""
    path = f"results/eval/{table}.tsv"
    if table in FULL_TABLES:
        return path
    return report(path, caption=f"../report/tables/{table}.rst", category="Tables")


def all_tensors():
    return [f"results/tensors/{db}/s{subject}.pt" for db, subject in SUBJECTS]


def per_run(pattern, **which):
    """``pattern`` expanded over every (model, fold) the run trains (see fold_runs for ``which``) and window."""
    pairs = fold_runs(config["models"], config["folds"], **which)
    return [path for model, fold in pairs for path in expand(pattern, model=model, fold=fold, window=WINDOWS)]


def evaluated_runs(pattern):
    """``pattern`` over every run the subset-size and stream evaluations score: all but the calibration folds', which
    the calibration curve scores (their models are trained for it; their test repetitions are its scored ones)."""
    scored = {name: fold for name, fold in config["folds"].items() if "calibration" not in fold}
    pairs = fold_runs(config["models"], scored)
    return [path for model, fold in pairs for path in expand(pattern, model=model, fold=fold, window=WINDOWS)]


def stream_runs(pattern):
    """``pattern`` over every run the stream evaluation scores: none when the RMS is centred (it reads ahead of
    the frame, so no controller could decide that way: its stream figures would pass a non-causal model as causal)."""
    if config["preprocess"]["rms_alignment"] != "causal":
        return []
    return evaluated_runs(pattern)


def pose_decoding_runs(pattern):
    """``pattern`` over every run the subset-size evaluation scores (evaluated_runs) of a model with a pose_decoder."""
    decoders = [name for name, model in config["models"].items() if model.get("pose_decoder")]
    return [path for path in evaluated_runs(pattern) if path.split("/")[2] in decoders]


def calibration_runs(pattern):
    """``pattern`` over every (model, fold) of the calibration folds and every window (none without such folds)."""
    calibrating = {name: fold for name, fold in config["folds"].items() if "calibration" in fold}
    pairs = fold_runs(config["models"], calibrating)
    return [path for model, fold in pairs for path in expand(pattern, model=model, fold=fold, window=WINDOWS)]


def calibration_outputs():
    """The run's calibration table and figure, when it has calibration folds."""
    if not calibration_runs("{model}"):
        return []
    return ["results/eval/calibration.tsv", "results/figures/calibration.svg", "results/figures/calibration.png"]


def test_subject_tensors(wildcards):
    """The tensor files of a calibration fold's new users (one, or its new_users): with the validation subjects',
    all its calibration job reads of the data."""
    return [f"results/tensors/{s}.pt" for s in test_subjects(config["folds"][wildcards.fold])]


def validation_subject_tensors(wildcards):
    """The tensor files of a calibration fold's validation subjects: the new users the rest bias's margin is learned
    on (never a test subject)."""
    return [f"results/tensors/{s}.pt" for s in validation_subjects(config["folds"][wildcards.fold])]


def oracle_logits(wildcards):
    """The logits of the same model on a zero-shot fold's oracle: the fold it copies, with every gesture trained."""
    oracle = config["folds"][wildcards.fold]["oracle"]
    return f"results/models/{wildcards.model}/{oracle}/{wildcards.window}/logits.pt"


def oracle_model(wildcards):
    """A zero-shot fold's oracle model.pt (the same model on the fold it copies), which its stream job scores too;
    none for any other fold."""
    oracle = config["folds"][wildcards.fold].get("oracle")
    return [f"results/models/{wildcards.model}/{oracle}/{wildcards.window}/model.pt"] if oracle else []


def oracle_option(wildcards, input):
    """--oracle of the stream job of a zero-shot fold, or nothing."""
    return f"--oracle {input.oracle}" if input.oracle else ""


def all_logits():
    return per_run("results/models/{model}/{fold}/{window}/logits.pt")


def fold_tensors(wildcards):
    names = fold_subjects(config["folds"][wildcards.fold], [f"{db}/s{subject}" for db, subject in SUBJECTS])
    return [f"results/tensors/{name}.pt" for name in names]


def sources_of(wildcards):
    return raw_sources(config, wildcards.db, int(wildcards.subject))


def convert_inputs(wildcards):
    if SOURCE == "ninapro":
        return [str(subject_dir("ninapro", wildcards.db, int(wildcards.subject)) / "manifest.json")]
    return tracked_inputs(sources_of(wildcards))


def source_arguments(wildcards):
    return convert_source_arguments(sources_of(wildcards))


def manifest_argument(wildcards, input):
    return ["--manifest", input[0]] if SOURCE == "ninapro" else []


def exercise_of_file(wildcards):
    return exercise_from_file_name(database(wildcards.db), int(wildcards.subject), wildcards.file + ".mat")


def archive_url(wildcards):
    return config["data"]["urls"][wildcards.db].format(subject=wildcards.subject)


def archive_checksum(wildcards):
    """``download``'s ``--sha256`` argument when the archive's digest is configured (none otherwise)."""
    checksum = config["data"]["checksums"].get(archive_name(archive_url(wildcards)))
    return ["--sha256", checksum] if checksum else []


# The evaluation keys that training reads: the rest bias set at its end is the one the evaluation decides with.
TRAINING_EVALUATION = json.dumps({key: config["evaluation"][key] for key in EVALUATION_KEYS})
