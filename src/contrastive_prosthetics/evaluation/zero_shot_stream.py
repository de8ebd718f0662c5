"""Zero-shot folds on the continuous recording: how the gestures held out of training fare on the stream, frame by
frame, as the controller decides them.

The stream evaluation (:mod:`.stream`) scores a zero-shot fold's test recordings with each subject's pose codes (an
unseen gesture described by the other training subjects' gloves) and the model's rest bias (each user's own under
``evaluation.rest_promise: per_user``), and its subsets are drawn among every gesture. Here the same scores are
decided among the gesture sets of ``zero_shot.tsv`` (:mod:`.zero_shot`), each with rest:

    unseen  the held-out gestures: zero-shot recognition proper
    seen    the gestures trained on
    all     every gesture: unseen gestures compete with the trained ones

by the same decisions and metrics as ``stream_metrics.tsv`` (:func:`.stream_metrics.decided_rows`: each vote of
``evaluation.stream_vote_ms``, and the model's saved decision rule when it has one), per test subject and pooled
(``subject`` all), beside the oracle's: the same model trained on every gesture (the fold the zero-shot fold copies),
its own streams scored on the same frames with its own rest bias, decided among the same classes. Per row:

    movement_accuracy        the set's gestures' own frames decided as their gesture (rest decided is a miss),
                             against movement_chance, 1 / (the set's gestures + rest)
    rest_false_activation    rest frames decided as one of the set's gestures
    accuracy                 every frame of rest and the set's gestures, transitions included
    onset_delay_p50_ms       the median onset delay of the set's movements, and onsets_missed, the share never reached

each with its ``oracle_`` twin (empty where no oracle was given, outside the pipeline). Runs outside zero-shot folds
write the table with its header only.
"""

from __future__ import annotations

import pandas as pd
import torch

from ..core.errors import InputError
from ..data.ninapro import REST
from ..learning.decision_rules import Hysteresis
from .artefacts import ZERO_SHOT_SETS
from .stream_metrics import decided_rows
from .tables import OPTIONAL_COLUMNS

METRICS = ["movement_accuracy", "rest_false_activation", "accuracy", "onset_delay_p50_ms", "onsets_missed"]
KEYS = ["set", "subject", "rule", "vote_frames"]  # a row of the model's meets the oracle's on these


def gesture_sets(classes: list[str], unseen: list[str]) -> dict[str, list[str]]:
    """The gestures of each set (unseen, seen, all), in the order of ``classes``."""
    gestures = [name for name in classes if name != REST]
    seen = [name for name in gestures if name not in unseen]
    return dict(zip(ZERO_SHOT_SETS, ([g for g in gestures if g in unseen], seen, gestures), strict=True))


def model_rows(scored: list, raw, rule: Hysteresis | None, sets: dict, vote_frames: list[int], frame_ms: float):
    """One model's rows of every set: decided among the set's gestures + rest by each vote and by ``rule``, pooled
    and per subject (:func:`.stream_metrics.decided_rows`)."""
    rows = []
    for name, gestures in sets.items():
        chosen = torch.tensor([[gesture in gestures for gesture in raw.classes if gesture != REST]])
        subsets = {len(gestures): chosen}
        for decided_by in [None] if rule is None else [None, rule]:  # the vote's rows, then the model's rule's
            table = decided_rows(scored, raw, subsets, vote_frames, frame_ms, None, decided_by, per_subject=subsets)
            rows.append(table.assign(set=name))
    return pd.concat(rows, ignore_index=True)


def zero_shot_stream_table(
    scored: list,
    oracle_scored: list | None,
    raw,
    rules: tuple[Hysteresis | None, Hysteresis | None],
    unseen: list[str],
    vote_frames: list[int],
    frame_ms: float,
    leading: dict,
) -> pd.DataFrame:
    """``zero_shot_stream.tsv``'s rows (see the module) of one zero-shot run: ``scored`` and ``oracle_scored`` are
    the model's and the oracle's test stretches ``(subject, positions, logits, truth)`` over the classes of ``raw``
    (``oracle_scored`` None: the oracle's columns empty), ``rules`` their saved decision rules (None: the vote only),
    ``leading`` the columns naming the run (and its oracle's fold)."""
    if not unseen:
        raise InputError(f"{leading['model']}/{leading['fold']}: not a zero-shot fold (no unseen gestures)")
    sets = gesture_sets(raw.classes, unseen)
    model = model_rows(scored, raw, rules[0], sets, vote_frames, frame_ms)
    if oracle_scored is None:
        table = model.assign(**{f"oracle_{name}": float("nan") for name in METRICS})
    else:
        table = model.merge(
            oracle_rows(scored, oracle_scored, raw, rules[1], sets, vote_frames, frame_ms, leading),
            on=KEYS,
            how="left",
            validate="one_to_one",
        )
    described = pd.DataFrame(
        {
            "set": list(sets),
            "gestures": [" ".join(gestures) for gestures in sets.values()],
            "classes": [len(gestures) + 1 for gestures in sets.values()],
        }
    )
    table = table.merge(described, on="set", how="left")
    table = table.assign(movement_chance=1 / table["classes"])
    return table.assign(**leading)[OPTIONAL_COLUMNS["zero_shot_stream"]]


def oracle_rows(scored, oracle_scored, raw, rule, sets, vote_frames, frame_ms, leading) -> pd.DataFrame:
    """The oracle's rows (:func:`model_rows`) on the same frames, its metrics named ``oracle_*``."""
    frames = [(subject, positions.tolist()) for subject, positions, *_ in scored]
    if frames != [(subject, positions.tolist()) for subject, positions, *_ in oracle_scored]:
        raise InputError(
            f"{leading['model']}/{leading['fold']}: the oracle ({leading['oracle_fold']}) scored other test frames; "
            "a zero-shot fold copies its oracle's subjects and repetitions: check the folds in config"
        )
    oracle = model_rows(oracle_scored, raw, rule, sets, vote_frames, frame_ms)
    return oracle[KEYS + METRICS].rename(columns={name: f"oracle_{name}" for name in METRICS})
