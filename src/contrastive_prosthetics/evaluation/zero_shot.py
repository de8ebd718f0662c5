"""Zero-shot evaluation: gestures never trained on, recognised from their description (the hand's pose).

A zero-shot fold holds some gestures out of training, search and model selection entirely (``unseen``); at test
time a pose class encoder places them from their pose prototypes. On the fold's test frames, among three sets of
classes, each with rest:

    unseen  the held-out gestures: zero-shot recognition proper
    seen    the gestures trained on
    all     every gesture: generalised zero-shot, where unseen gestures compete with the trained ones

each after the majority vote, against chance (one over the classes of the set) and against the oracle: the same
model trained with every gesture (the fold the zero-shot fold copies), scored on the same frames and classes. The
subset-size curve over the unseen gestures (k = 1..their number, rest added) comes with it, its rest false activation
over the test rest windows scored among the same classes, as the main evaluation's (:mod:`.rest_windows`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..core.atomic import atomic_write_frame
from ..core.errors import InputError
from ..data.ninapro import REST
from ..learning.logits import PER_FRAME, read_logits
from .artefacts import ZERO_SHOT_SETS as SETS
from .evaluate import classification_metrics
from .rest_windows import rest_window_payload
from .subsets import draw_subsets, subset_size_accuracy
from .voting import checked_scores, window_frames_for, window_outcomes

# The sets of classes each zero-shot fold is scored among (each with rest; see above), in the order of its table.


def restricted(payload: dict, names: list[str]) -> dict:
    """The payload's frames of the classes ``names`` and their scores over just those classes (relabelled); its rest
    windows, all of them (they count where rest is among ``names``), scored over just those classes too."""
    columns = torch.tensor([payload["classes"].index(name) for name in names])
    keep = torch.isin(payload["label"], columns)
    relabel = torch.full((len(payload["classes"]),), -1, dtype=torch.long)
    relabel[columns] = torch.arange(len(names))
    out = {key: value[keep] if key in PER_FRAME else value for key, value in payload.items()}
    out["logits"] = out["logits"][:, columns]
    if "rest_window_logits" in out:
        out["rest_window_logits"] = out["rest_window_logits"][..., columns]
    out["label"] = relabel[out["label"]]
    out["classes"] = list(names)
    return out


def voted_metrics(payload: dict, window_frames: int) -> dict:
    """Accuracy, balanced accuracy and gesture-only accuracy of the voted windows over all the payload's classes."""
    predictions = checked_scores(payload).argmax(1)
    votes, truth, _ = window_outcomes(payload, window_frames, predictions)
    metrics = classification_metrics(votes, truth, len(payload["classes"]))
    gestures = truth != 0
    gesture_accuracy = float((votes[gestures] == truth[gestures]).double().mean()) if gestures.any() else float("nan")
    return {k: metrics[k] for k in ("accuracy", "balanced_accuracy")} | {"gesture_accuracy": gesture_accuracy}


def zero_shot_tables(
    payload: dict, oracle: dict, window_frames: int, trials: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(zero_shot, zero_shot_subsets) of one zero-shot fold's logits against its oracle's."""
    unseen = list(payload.get("unseen") or [])
    if not unseen:
        raise InputError(f"{payload['model']}/{payload['fold']}: not a zero-shot fold (no unseen gestures)")
    if oracle["classes"] != payload["classes"]:
        raise InputError(f"the oracle {oracle['model']}/{oracle['fold']} has other classes than {payload['fold']}")
    gestures = [name for name in payload["classes"] if name != REST]
    sets = dict(zip(SETS, (unseen, [g for g in gestures if g not in unseen], gestures), strict=True))
    leading = {key: payload[key] for key in ("model", "adabn", "adaptation", "fold", "window")}
    rows = []
    for name, chosen in sets.items():
        names = [REST, *chosen]
        model = voted_metrics(restricted(payload, names), window_frames)
        best = voted_metrics(restricted(oracle, names), window_frames)
        rows.append(
            leading
            | {"set": name, "gestures": " ".join(chosen), "classes": len(names), "chance": 1 / len(names)}
            | model
            | {f"oracle_{key}": value for key, value in best.items()}
        )
    subsets = draw_subsets(len(unseen), trials, seed)
    curves = []
    for who, source in (("model", payload), ("oracle", oracle)):
        chosen = restricted(source, [REST, *unseen])
        curve = subset_size_accuracy(chosen, window_frames, subsets, rest_windows=rest_window_payload(chosen))
        curves.append(curve.assign(**leading, scored_by=who))
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def evaluate_zero_shot(
    logits_path: Path, oracle_path: Path, out_dir: Path, *, vote_window_ms: float, trials: int, seed: int
) -> None:
    """Write ``zero_shot.tsv`` and ``zero_shot_subsets.tsv`` of one zero-shot fold into ``out_dir``."""
    payload, oracle = read_logits(logits_path), read_logits(oracle_path)
    window_frames = window_frames_for(vote_window_ms, payload["frame_rate_hz"])
    table, curves = zero_shot_tables(payload, oracle, window_frames, trials, seed)
    atomic_write_frame(table, Path(out_dir) / "zero_shot.tsv")
    atomic_write_frame(curves, Path(out_dir) / "zero_shot_subsets.tsv")
