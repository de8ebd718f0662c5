"""Loading and validating the workflow configuration, with errors that name the offending key."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from .core.errors import InputError
from .data.ninapro import class_names, database, subject_name_pattern
from .learning.decision_rules import rule_grid
from .learning.folds import check_fold, expand_folds

REPOSITORY = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPOSITORY / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG_PATH = REPOSITORY / "config.yaml"


class ConfigError(InputError):
    """A configuration the workflow cannot run with; the message names the key and what to do."""


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


def validate_config(config: dict, source: str = "config", schema_path: Path = SCHEMA_PATH) -> dict:
    """Check ``config`` against the JSON schema and against the NinaPro specs; return it unchanged.

    Schema errors name the key (``data.synthetic.movment_s``); the NinaPro checks catch what a schema
    cannot: a subject a database does not have, an exercise missing from a database. The checks run in this
    order, and the first that fails raises.
    """
    check_schema(config, source, schema_path)
    check_databases(config, source)
    check_sampling(config, source)
    check_models(config, source)
    check_folds(config, source)
    check_local_folders(config["data"], source)
    check_vote_window(config, source)
    check_onset_gate(config, source)
    check_decision(config, source)
    check_bandpass(config, source)
    check_augmentation(config, source)
    return config


def check_schema(config: dict, source: str, schema_path: Path = SCHEMA_PATH) -> None:
    """Every schema error at once, each naming its key. A subject's name is checked against the databases of
    data/ninapro.py (the schema's ``subject_name`` leaves its pattern to them)."""
    schema = yaml.safe_load(schema_path.read_text())
    schema["$defs"]["subject_name"]["pattern"] = subject_name_pattern()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {_key_path(e)}: {e.message}" for e in errors]
        raise ConfigError(f"{source} does not match {schema_path.name}:\n" + "\n".join(lines))


def check_databases(config: dict, source: str) -> None:
    """Each selected database has the selected subjects and exercises (and a folder, for source local)."""
    data = config["data"]
    for name, subjects in data["databases"].items():
        spec = database(name)
        wrong = [s for s in subjects if s not in spec.subjects]
        if wrong:
            raise ConfigError(
                f"{source}: data.databases.{name}: {spec.name} has subjects 1-{spec.n_subjects}, not {wrong}"
            )
        for exercise in data["exercises"]:
            if exercise not in spec.file_exercises.values():
                raise ConfigError(
                    f"{source}: data.exercises: {name} has no exercise {exercise} "
                    f"(it has {sorted(spec.file_exercises.values())}); choose exercises every selected database has"
                )
        if data["source"] == "local" and not data["local"][name]:
            raise ConfigError(f"{source}: data.local.{name}: set the folder holding {name}'s files for source local")


def check_sampling(config: dict, source: str) -> None:
    """The frequencies fit each selected database's sampling rate: mains and band-pass below its Nyquist
    frequency (unless its signals come rectified), frames on its samples."""
    data, pre = config["data"], config["preprocess"]
    for name in data["databases"]:
        spec = database(name)
        mains = config["synthetic"]["mains_hz"]
        if data["source"] == "synthetic" and not spec.already_rectified and mains >= spec.sampling_rate_hz / 2:
            raise ConfigError(
                f"{source}: synthetic.mains_hz = {mains:g} is at or above the Nyquist frequency of {name} "
                f"({spec.sampling_rate_hz / 2:g} Hz): use the mains frequency (50 or 60), or 0 for none"
            )
        hop = spec.sampling_rate_hz / pre["frame_rate_hz"]
        if hop != int(hop):
            raise ConfigError(
                f"{source}: preprocess.frame_rate_hz = {pre['frame_rate_hz']} must divide the sampling rate of "
                f"{name} ({spec.sampling_rate_hz:g} Hz) so that frames fall on samples: choose a divisor such as 100"
            )
        if not spec.already_rectified and pre["bandpass_high_hz"] >= spec.sampling_rate_hz / 2:
            raise ConfigError(
                f"{source}: preprocess.bandpass_high_hz = {pre['bandpass_high_hz']} must be below the Nyquist "
                f"frequency of {name} ({spec.sampling_rate_hz / 2} Hz)"
            )


def check_models(config: dict, source: str) -> None:
    for name, model in config["models"].items():
        if model["kind"] == "lda" and model["adabn"]:
            raise ConfigError(f"{source}: models.{name}.adabn: LDA has no batch normalisation; set adabn: false")
        if model["kind"] == "lda" and "pose_decoder" in model:
            raise ConfigError(f"{source}: models.{name}.pose_decoder: LDA has no EMG encoder to decode pose; remove it")


def check_folds(config: dict, source: str) -> None:
    """Each fold, in order: its subjects and repetitions exist, its scheme's keys agree, and what it names (unseen
    gestures, models, oracle) is configured."""
    data = config["data"]
    selected = {f"{db}/s{n}" for db, subjects in data["databases"].items() for n in subjects}
    fewest_repetitions = min(database(name).repetitions for name in data["databases"])
    for name, fold in config["folds"].items():
        _check_fold_data(name, fold, selected, fewest_repetitions, source)
        try:
            check_fold(name, fold)
        except InputError as error:
            raise ConfigError(f"{source}: {error}") from None
        _check_fold_names(name, fold, config, source)
        _check_fold_test_repetitions(name, fold, config, fewest_repetitions, source)


def _check_fold_data(name: str, fold: dict, selected: set[str], fewest_repetitions: int, source: str) -> None:
    """The fold's subjects are selected and its repetitions exist in every selected database."""
    for subject in fold["subjects"] if isinstance(fold.get("subjects"), list) else []:
        if subject not in selected:
            raise ConfigError(f"{source}: folds.{name}.subjects: {subject} is not in data.databases")
    for part in ("train", "validation", "test", "calibration"):
        wrong = [r for r in fold.get(part, []) if r > fewest_repetitions]
        if wrong:
            raise ConfigError(
                f"{source}: folds.{name}.{part}: repetitions {wrong} do not exist; the selected databases "
                f"have {fewest_repetitions} repetitions"
            )


def _check_fold_names(name: str, fold: dict, config: dict, source: str) -> None:
    """The gestures, models and oracle fold the fold names are configured."""
    gestures = class_names(config["data"]["exercises"])[1:]
    wrong = [g for g in fold.get("unseen", []) if g not in gestures]
    if wrong:
        raise ConfigError(f"{source}: folds.{name}.unseen: {wrong} are not gestures of data.exercises")
    unknown = [m for m in fold.get("models", []) if m not in config["models"]]
    if unknown:
        raise ConfigError(f"{source}: folds.{name}.models: {unknown} are not models of models")
    if "oracle" in fold and fold["oracle"] not in config["folds"]:
        raise ConfigError(f"{source}: folds.{name}.oracle: {fold['oracle']!r} is not a fold of folds")


def _check_fold_test_repetitions(name: str, fold: dict, config: dict, fewest_repetitions: int, source: str) -> None:
    """Cross-fitted adaptation needs at least two test repetitions in the fold."""
    scored = len(fold["test"]) if "test" in fold else fewest_repetitions
    cross_fitted = [m for m, model in config["models"].items() if model.get("adaptation") == "cross_fitted"]
    if cross_fitted and scored < 2:
        raise ConfigError(
            f"{source}: folds.{name}.test: cross-fitted adaptation (models {cross_fitted}) adapts each test "
            "repetition on the others, so a fold needs at least two test repetitions; add one, or set those "
            "models' adaptation to scored_frames"
        )


def check_vote_window(config: dict, source: str) -> None:
    """The vote window holds at least one frame and fits in every segment window."""
    pre = config["preprocess"]
    frame_ms = 1000 / pre["frame_rate_hz"]
    if config["evaluation"]["vote_window_ms"] < frame_ms:
        raise ConfigError(
            f"{source}: evaluation.vote_window_ms = {config['evaluation']['vote_window_ms']} is shorter than one "
            f"frame ({frame_ms:g} ms at preprocess.frame_rate_hz = {pre['frame_rate_hz']}): use at least {frame_ms:g}"
        )
    vote_ms = config["evaluation"]["vote_window_ms"]
    short = {name: w["length_ms"] for name, w in pre["windows"].items() if w["length_ms"] < vote_ms}
    if short:
        raise ConfigError(
            f"{source}: evaluation.vote_window_ms = {vote_ms:g} is longer than the segment window(s) {short} "
            "(ms) of preprocess.windows: no vote would fit a segment; shorten the vote or lengthen the windows"
        )


def check_onset_gate(config: dict, source: str) -> None:
    """The gate closes at or below the level it opens at (hysteresis), or it would flicker open and shut."""
    gate = config["evaluation"].get("onset_gate")
    if gate and gate["off_ratio"] > gate["on_ratio"]:
        raise ConfigError(
            f"{source}: evaluation.onset_gate.off_ratio = {gate['off_ratio']:g} is above on_ratio = "
            f"{gate['on_ratio']:g}: the gate would close above the level it opens at; set off_ratio <= on_ratio"
        )


def check_decision(config: dict, source: str) -> None:
    """``evaluation.decision``: a known rule with its settings in range (:func:`.learning.decision_rules.rule_grid`)."""
    try:
        rule_grid(config["evaluation"]["decision"], config["preprocess"]["frame_rate_hz"])
    except InputError as error:
        raise ConfigError(f"{source}: {error}") from None


def check_bandpass(config: dict, source: str) -> None:
    pre = config["preprocess"]
    if pre["bandpass_low_hz"] >= pre["bandpass_high_hz"]:
        raise ConfigError(f"{source}: preprocess.bandpass_low_hz must be below preprocess.bandpass_high_hz")


def check_augmentation(config: dict, source: str) -> None:
    """The electrode ring of ``training.augmentation`` (and of each model's own) fits in every selected database's
    electrodes."""
    rings = {"training.augmentation": (config["training"].get("augmentation") or {}).get("ring")}
    for model, entry in config["models"].items():
        rings[f"models.{model}.augmentation"] = (entry.get("augmentation") or {}).get("ring")
    for key, ring in rings.items():
        if ring is None:
            continue
        for name in config["data"]["databases"]:
            channels = database(name).n_channels
            if ring > channels:
                raise ConfigError(
                    f"{source}: {key}.ring = {ring} is more than the {channels} electrodes of {name}: set it to the "
                    "number of leading electrodes equally spaced around the forearm (DB1, DB2, DB3: 8), or null"
                )


def check_local_folders(data: dict, source: str) -> None:
    """Local folders of different databases must not overlap: DB2 and DB3 use the same file names, so one
    database's folder inside another's would silently be read as the other."""
    if data["source"] != "local":
        return
    folders = {name: Path(data["local"][name]).expanduser().resolve() for name in data["databases"]}
    for first, a in folders.items():
        for second, b in folders.items():
            if first < second and (a == b or a in b.parents or b in a.parents):
                raise ConfigError(
                    f"{source}: data.local.{first} ({a}) and data.local.{second} ({b}) overlap; the databases share "
                    "file names, so one would be read as the other: give each database a folder of its own"
                )


# Sections whose entries an override file may drop by setting them to null (--configfile merges key by key).
DROPPABLE_SECTIONS = (("data", "databases"), ("models",), ("folds",), ("preprocess", "windows"))


def drop_null_entries(config: dict) -> dict:
    """In place: remove the entries of the droppable sections that are null, so that an override file can say
    "only these" (``db2: null`` removes DB2 from a merged configuration)."""
    for path in DROPPABLE_SECTIONS:
        section = config
        for key in path:
            section = section.get(key) if isinstance(section, dict) else None
        if isinstance(section, dict):
            for name in [name for name, value in section.items() if value is None]:
                del section[name]
    return config


def prepare_config(config: dict, source: str = "config") -> dict:
    """What the workflow runs on, in place: null entries dropped, checked, and each leave-one-subject-out
    shorthand expanded into one fold per subject (then checked again, fold by fold)."""
    drop_null_entries(config)
    validate_config(config, source)
    selected = [f"{db}/s{n}" for db, subjects in config["data"]["databases"].items() for n in subjects]
    gestures = class_names(config["data"]["exercises"])[1:]
    config["folds"] = expand_folds(config["folds"], selected, gestures, config["seed"])
    return validate_config(config, source)


def load_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot be read as YAML ({error})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: must be a YAML mapping of keys to values")
    return prepare_config(config, str(path))


def default_config() -> dict:
    """The embedded default run's configuration (config.yaml beside the Snakefile), validated."""
    return load_config(DEFAULT_CONFIG_PATH)
