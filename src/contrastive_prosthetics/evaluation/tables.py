"""The evaluation tables on disk: reading one, and concatenating the per model × fold tables of a run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.atomic import atomic_write_frame


def read_table(path: Path) -> pd.DataFrame:
    """A tab-separated table as written; class and subject names stay text (a class called "NA" is not NaN)."""
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""])


def aggregate(tables: list[dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Concatenate per model × fold tables (``{name: table}`` each) table by table."""
    names = list(dict.fromkeys(name for table in tables for name in table))
    return {name: pd.concat([table[name] for table in tables if name in table], ignore_index=True) for name in names}


def aggregate_folders(folders: list[Path], table_names: list[str], out_dir: Path) -> None:
    """Concatenate each named table over the per model × fold folders and write it as ``out_dir/<name>.tsv``."""
    per_folder = [{name: read_table(Path(folder) / f"{name}.tsv") for name in table_names} for folder in folders]
    for name, table in aggregate(per_folder).items():
        atomic_write_frame(table, Path(out_dir) / f"{name}.tsv")


# The columns of the tables only some runs have (stream.py and zero_shot.py write them): a run without networks or
# without zero-shot folds writes them with their header only.
OPTIONAL_COLUMNS = {
    "stream_metrics": [
        "model",
        "adabn",
        "adaptation",
        "adaptation_protocol",  # setup, past (both deployable), transductive or none
        "fold",
        "window",
        "subject",  # "all": every test subject's frames pooled; else one subject's (at k = K only)
        "k",
        "trial",
        "rule",  # the decision rule: vote (vote_frames, vote_ms), or the model's saved rule (vote_ms empty)
        "vote_frames",
        "vote_ms",
        "accuracy",
        "movement_accuracy",
        "rest_accuracy",
        "rest_false_activation",
        "quiet_rest_false_activation",
        "transition_rest_false_activation",
        "false_activations_per_min",
        "onset_delay_p50_ms",
        "onset_delay_p90_ms",
        "onsets_missed",
        "changes_per_s",
        "active_error_rate",  # of the frames decided as a gesture, the share decided wrong (NaN: none)
        "instability",  # decision changes beyond the truth's, per decision (scored frame)
        "onset_within_250ms",  # the share of chosen movements decided right within 250 ms of onset (NaN: none)
        "frames",
        "guard_ms",  # training.guard_ms: the guard band's width on each side of a change of label
        "guard_frames",  # of ``frames``, those within guard_ms of a change of label (training leaves them out)
        "guard_accuracy",  # accuracy over the guard_frames (NaN: none)
        "settled_accuracy",  # accuracy over the other frames (NaN: none)
    ],
    "stream_tradeoff": [
        "model",
        "adabn",
        "adaptation",
        "adaptation_protocol",  # setup, past (both deployable), transductive or none
        "fold",
        "window",
        "rest_bias",  # the bias on rest's logit these decisions were taken with: the calibrated one + bias_offset
        "bias_offset",  # 0: the calibrated bias, the stream evaluation's operating point
        "calibrated",
        "rule",  # as stream_metrics'
        "vote_ms",
        "accuracy",
        "movement_accuracy",
        "rest_false_activation",
        "false_activations_per_min",
        "onset_delay_p50_ms",
        "onset_delay_p90_ms",
    ],
    "stream_timing": ["model", "adabn", "adaptation", "fold", "window", "compute_ms", "rms_window_ms", "frame_ms"],
    "zero_shot": [  # led by the set's gesture windows (their own numbers; zero_shot.py), then all its windows
        "model",
        "adabn",
        "adaptation",
        "fold",
        "window",
        "set",  # unseen, seen or all: the gestures decided among, with rest
        "subject",  # "all": every test subject's windows pooled; else one subject's (the oracle's on the same)
        "decided_by",  # class_encoder (the logits), or pose_decoder (the decoded pose matched to descriptions)
        "gesture_accuracy",  # of the set's gesture windows (true class not rest), the share decided right
        "gesture_chance",  # its chance: 1 / classes (the set's gestures + rest); a decision of rest is a miss
        "gesture_windows_as_rest",  # of the set's gesture windows, the share decided as rest
        "balanced_accuracy",  # mean recall over the set's gestures and rest
        "accuracy",  # over all the set's windows, rest's included
        "chance",  # 1 / classes
        "oracle_gesture_accuracy",  # the same, by the model trained on every gesture
        "oracle_gesture_windows_as_rest",
        "oracle_balanced_accuracy",
        "oracle_accuracy",
        "gestures",
        "classes",
        "gesture_windows",  # the windows gesture_accuracy and gesture_windows_as_rest count
    ],
    "zero_shot_confusion": [  # the voted windows' counts among each set's classes, zero counts omitted
        "model",
        "adabn",
        "adaptation",
        "fold",
        "window",
        "set",
        "scored_by",  # model, or oracle (the model trained on every gesture)
        "true",
        "decided",
        "windows",
    ],
    "zero_shot_stream": [  # a zero-shot fold's stream decided among each set's gestures + rest (zero_shot_stream.py)
        "model",
        "adabn",
        "adaptation",
        "adaptation_protocol",
        "fold",
        "window",
        "oracle_fold",  # the fold the oracle (the same model trained on every gesture) was trained and scored on
        "set",  # unseen, seen or all: the gestures decided among, with rest
        "subject",  # "all": every test subject's frames pooled; else one subject's
        "rule",  # as stream_metrics'
        "vote_frames",
        "vote_ms",
        "movement_accuracy",  # the set's gestures' own frames decided right (rest decided is a miss)
        "movement_chance",  # 1 / classes
        "rest_false_activation",  # rest frames decided as one of the set's gestures
        "accuracy",  # every frame of rest and the set's gestures
        "onset_delay_p50_ms",
        "onsets_missed",
        "oracle_movement_accuracy",  # the same, by the oracle on the same frames and classes
        "oracle_rest_false_activation",
        "oracle_accuracy",
        "oracle_onset_delay_p50_ms",
        "oracle_onsets_missed",
        "gestures",
        "classes",
        "frames",  # the frames accuracy counts (rest and the set's gestures)
    ],
    "zero_shot_subsets": [
        "k",
        "trial",
        "accuracy",
        "balanced_accuracy",
        "gesture_accuracy",
        "rest_false_activation",
        "n",
        "rest_windows",  # the test rest windows rest_false_activation counts, as subset_accuracy's
        "model",
        "adabn",
        "adaptation",
        "fold",
        "window",
        "scored_by",
    ],
    "pose_decoding": [  # pose_decoding.py: per subject and set, the decoded pose against the glove
        "model",
        "adabn",
        "adaptation",
        "fold",
        "window",
        "subject",
        "set",  # seen, unseen (a zero-shot fold's held-out gestures) or rest
        "frames",
        "mse",  # squared error, in the subject's standardised glove units, over frames and sensors with a target
        "mean_pose_mse",  # the same for always decoding the subject's training mean (0): decoding nothing
        "mean_correlation",  # Pearson's r of decoded and true pose over the frames, per sensor, averaged over sensors
        *(f"correlation_{sensor}" for sensor in range(1, 23)),  # each glove sensor's (NaN: no target or no spread)
    ],
}
STREAM_COLUMNS = OPTIONAL_COLUMNS  # the stream tables' entries


def aggregate_optional_folders(folders: list[Path], table_names: list[str], out_dir: Path) -> None:
    """:func:`aggregate_folders` for tables a run may have none of (see ``OPTIONAL_COLUMNS``): then each is
    written with its header only."""
    if folders:
        aggregate_folders(folders, table_names, out_dir)
        return
    for name in table_names:
        atomic_write_frame(pd.DataFrame(columns=OPTIONAL_COLUMNS[name]), Path(out_dir) / f"{name}.tsv")
