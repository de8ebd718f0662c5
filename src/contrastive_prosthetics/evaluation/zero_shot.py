"""Zero-shot evaluation: gestures never trained on, recognised from their description (the hand's pose).

A zero-shot fold holds some gestures out of training, search and model selection entirely (``unseen``); at test
time a pose class encoder places them from their pose prototypes. On the fold's test frames, among three sets of
classes, each with rest:

    unseen  the held-out gestures: zero-shot recognition proper
    seen    the gestures trained on
    all     every gesture: generalised zero-shot, where unseen gestures compete with the trained ones

each after the majority vote, against chance and against the oracle: the same model trained with every gesture
(the fold the zero-shot fold copies), scored on the same frames and classes. Each set's row (``zero_shot.tsv``) leads
with the numbers of the set's own gesture windows (windows whose true class is one of its gestures, not rest):

    gesture_accuracy         the share of them decided as their gesture (a decision of rest is a miss)
    gesture_chance           1 / (the set's gestures + rest): a decision drawn at random among the classes decided
                             among is right that often, whatever the window
    gesture_windows_as_rest  the share of them decided as rest: a gesture the user made and the hand did not

then the balanced accuracy (mean recall over the set's gestures and rest: rest's recall weighs as much as every
gesture's, and can carry it), the accuracy over all its windows (rest's too) and their chance, one over the set's
classes. ``decided_by`` says how: ``class_encoder``, the model's logits (the pose class encoder); and, for a model with
a pose decoder, ``pose_decoder`` beside it: each frame the class encoder decides as rest stays rest, and every other
is decided by the gesture whose description (its mean standardised glove over the other training subjects' training
repetitions, :mod:`..learning.glove`) is nearest the frame's decoded pose (:func:`pose_matching`, :func:`rest_gated`),
then the same vote, on the same frames, against the oracle's pose decoder.
Each (set, decided_by) has a row per test subject (``subject``: its name), the oracle's numbers on that subject's
frames beside the model's, so that model and oracle can be paired subject by subject and summarised with intervals
over subjects; and the row of every test subject's windows pooled (``subject`` all, as the stream tables name it).
``zero_shot_confusion.tsv`` holds the class encoder's voted windows' [true, decided] counts among each set's classes
(pooled), rest included, by the model and by the oracle (``scored_by``). The subset-size curve over the unseen
gestures (k = 1..their number, rest added; pooled) comes with it, its rest false activation over the test rest
windows scored among the same classes, as the main evaluation's (:mod:`.rest_windows`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..core.atomic import atomic_write_frame
from ..core.errors import InputError
from ..data.ninapro import REST
from ..learning.logits import DECODED_POSE, PER_FRAME, read_logits
from .artefacts import ZERO_SHOT_SETS as SETS
from .evaluate import classification_metrics
from .rest_windows import rest_window_payload
from .stream_metrics import POOLED
from .subsets import draw_subsets, subset_size_accuracy
from .tables import OPTIONAL_COLUMNS
from .voting import checked_scores, window_frames_for, window_outcomes


def frames_kept(payload: dict, keep: torch.Tensor) -> dict:
    """The payload with its per-frame entries (scores, labels, decoded poses) at the frames ``keep`` [frame] only;
    the rest as it is."""
    return {key: value[keep] if key in (*PER_FRAME, *DECODED_POSE) else value for key, value in payload.items()}


def restricted(payload: dict, names: list[str]) -> dict:
    """The payload's frames of the classes ``names`` and their scores over just those classes (relabelled); its rest
    windows, all of them (they count where rest is among ``names``), scored over just those classes too."""
    columns = torch.tensor([payload["classes"].index(name) for name in names])
    keep = torch.isin(payload["label"], columns)
    relabel = torch.full((len(payload["classes"]),), -1, dtype=torch.long)
    relabel[columns] = torch.arange(len(names))
    out = frames_kept(payload, keep)
    out["logits"] = out["logits"][:, columns]
    if "rest_window_logits" in out:
        out["rest_window_logits"] = out["rest_window_logits"][..., columns]
    out["label"] = relabel[out["label"]]
    out["classes"] = list(names)
    return out


def of_subject(payload: dict, name: str) -> dict:
    """The payload's frames and rest windows of the subject called ``name`` alone; its codes and everything per file
    as they are. Voting it gives exactly that subject's windows of the whole payload: a window never leaves its
    (subject, class, repetition) segment (:func:`.voting.window_ids`), and its tie-break sums the same frames."""
    if name not in payload["subjects"]:
        raise InputError(f"{payload['model']}/{payload['fold']} has no subject {name} (it has {payload['subjects']})")
    code = payload["subjects"].index(name)
    out = frames_kept(payload, payload["subject"] == code)
    if "rest_window_subject" in payload:
        windows = payload["rest_window_subject"] == code
        out |= {key: value[windows] for key, value in payload.items() if key.startswith("rest_window_")}
    return out


def voted_metrics(payload: dict, window_frames: int) -> tuple[dict, torch.Tensor]:
    """The numbers of the voted windows among all the payload's classes, rest first (see above): gesture accuracy,
    the share of gesture windows decided as rest, balanced accuracy and accuracy; and their [true, decided] counts."""
    if payload["classes"][0] != REST:
        raise InputError(f"the classes {payload['classes']} do not lead with {REST}")
    predictions = checked_scores(payload).argmax(1)
    votes, truth, _ = window_outcomes(payload, window_frames, predictions)
    metrics = classification_metrics(votes, truth, len(payload["classes"]))
    confusion = metrics["confusion"]
    gesture_windows = int(confusion[1:].sum())

    def share(windows: torch.Tensor) -> float:
        return int(windows) / gesture_windows if gesture_windows else float("nan")

    numbers = {
        "gesture_accuracy": share(confusion[1:, 1:].diagonal().sum()),
        "gesture_windows_as_rest": share(confusion[1:, 0].sum()),
        "balanced_accuracy": metrics["balanced_accuracy"],
        "accuracy": metrics["accuracy"],
    }
    return numbers, confusion


def pose_matching(payload: dict) -> dict:
    """``payload`` (a pose decoder's) decided by its decoded pose: each frame's score for a class is minus the mean
    squared distance, in standardised glove units, between the frame's decoded pose and the class's description for
    its subject, over the sensors every described class has there; a class with no description for that subject is
    never chosen. The rest windows are left out (the subset-size curve is the class encoder's)."""
    pose, subject, descriptions = payload["pose"].double(), payload["subject"], payload["pose_descriptions"].double()
    scores = torch.full((len(pose), descriptions.shape[1]), torch.finfo(torch.float32).min)
    for who in subject.unique().tolist():  # a few subjects, each a [frame × class] distance matrix
        rows, described = subject == who, descriptions[who]
        has = torch.isfinite(described).any(1)
        sensors = torch.isfinite(described[has]).all(0)
        distance = torch.cdist(pose[rows][:, sensors], described[has][:, sensors]) ** 2 / sensors.sum().clamp(min=1)
        scores[rows.nonzero(), has.nonzero().squeeze(1)] = -distance.float()
    out = {key: value for key, value in payload.items() if not key.startswith("rest_window")}
    return out | {"logits": scores}


def rest_gated(pose_scored: dict, class_scored: dict) -> dict:
    """``pose_scored`` (:func:`pose_matching`, restricted to a set's classes, rest first) with rest decided as the
    class encoder decides it (``class_scored``: the same frames and classes): a frame is rest where the class
    encoder's best class is rest, else the gesture whose description is nearest its decoded pose. A regressed pose
    shrinks toward the mean pose, which rest's description sits next to (most frames are rest), so matching alone
    took most unseen gestures for rest (95 % of their windows on real DB1); whether the hand moves is the class
    encoder's call, which gesture it makes the pose's."""
    if (
        not torch.equal(pose_scored["label"], class_scored["label"])
        or pose_scored["classes"] != class_scored["classes"]
    ):
        raise AssertionError("the pose decoder and the class encoder scored different frames")  # a bug
    scores = pose_scored["logits"].clone()
    rest = class_scored["logits"].argmax(1) == 0
    scores[:, 0] = torch.where(rest, torch.finfo(scores.dtype).max, torch.finfo(scores.dtype).min)
    return pose_scored | {"logits": scores}


def confusion_rows(confusion: torch.Tensor, classes: list[str]) -> pd.DataFrame:
    """Long-format [true, decided] window counts, zero counts omitted."""
    true, decided = confusion.nonzero(as_tuple=True)
    return pd.DataFrame(
        {
            "true": [classes[i] for i in true.tolist()],
            "decided": [classes[i] for i in decided.tolist()],
            "windows": confusion[true, decided].numpy(),
        }
    )


def subject_rows(
    scored: dict, best_scored: dict, subjects: list[str], window_frames: int
) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """One set's numbers by the model (``scored``) and its oracle (``best_scored``: the same frames and classes),
    every test subject's windows pooled (subject all) and then each of ``subjects`` alone, the oracle's on the same
    subject's windows; and the pooled [true, decided] counts of the model and of the oracle."""

    def row(subject: str, parts: tuple[dict, dict]) -> tuple[dict, torch.Tensor, torch.Tensor]:
        (model, model_confusion), (best, best_confusion) = (voted_metrics(part, window_frames) for part in parts)
        oracle_numbers = {f"oracle_{key}": value for key, value in best.items()}
        windows = {"gesture_windows": int(model_confusion[1:].sum())}
        return {"subject": subject} | model | oracle_numbers | windows, model_confusion, best_confusion

    pooled, model_confusion, best_confusion = row(POOLED, (scored, best_scored))
    each = [row(subject, (of_subject(scored, subject), of_subject(best_scored, subject)))[0] for subject in subjects]
    return [pooled, *each], model_confusion, best_confusion


def zero_shot_tables(
    payload: dict, oracle: dict, window_frames: int, trials: int, seed: int
) -> dict[str, pd.DataFrame]:
    """The tables of one zero-shot fold's logits against its oracle's, by name (zero_shot, zero_shot_subsets and
    zero_shot_confusion)."""
    unseen = list(payload.get("unseen") or [])
    if not unseen:
        raise InputError(f"{payload['model']}/{payload['fold']}: not a zero-shot fold (no unseen gestures)")
    if oracle["classes"] != payload["classes"]:
        raise InputError(f"the oracle {oracle['model']}/{oracle['fold']} has other classes than {payload['fold']}")
    gestures = [name for name in payload["classes"] if name != REST]
    sets = dict(zip(SETS, (unseen, [g for g in gestures if g not in unseen], gestures), strict=True))
    leading = {key: payload[key] for key in ("model", "adabn", "adaptation", "fold", "window")}
    # A pose decoder decides beside the class encoder (which gesture; the class encoder's rest: rest_gated).
    posed = (pose_matching(payload), pose_matching(oracle)) if "pose" in payload and "pose" in oracle else None
    # Every test subject with frames, in code order as the stream tables' (the oracle's found by name).
    subjects = [payload["subjects"][code] for code in payload["subject"].unique().tolist()]
    rows, confusions = [], []
    for name, chosen in sets.items():
        names = [REST, *chosen]
        encoded = restricted(payload, names), restricted(oracle, names)
        deciders = {"class_encoder": encoded}
        if posed is not None:
            gated = (rest_gated(restricted(pose, names), by) for pose, by in zip(posed, encoded, strict=True))
            deciders["pose_decoder"] = tuple(gated)
        for decided_by, (scored, best_scored) in deciders.items():
            each, model_confusion, best_confusion = subject_rows(scored, best_scored, subjects, window_frames)
            chance = {"gesture_chance": 1 / len(names), "chance": 1 / len(names)}
            described = {"gestures": " ".join(chosen), "classes": len(names)}
            rows += [leading | {"set": name, "decided_by": decided_by} | row | chance | described for row in each]
            if decided_by == "class_encoder":  # the confusion counts and subset curve are the class encoder's
                for who, confusion in (("model", model_confusion), ("oracle", best_confusion)):
                    confusions.append(confusion_rows(confusion, names).assign(**leading, set=name, scored_by=who))
    subsets = draw_subsets(len(unseen), trials, seed)
    curves = []
    for who, source in (("model", payload), ("oracle", oracle)):
        chosen = restricted(source, [REST, *unseen])
        curve = subset_size_accuracy(chosen, window_frames, subsets, rest_windows=rest_window_payload(chosen))
        curves.append(curve.assign(**leading, scored_by=who))
    return {
        "zero_shot": pd.DataFrame(rows)[OPTIONAL_COLUMNS["zero_shot"]],  # in the order of its columns
        "zero_shot_subsets": pd.concat(curves, ignore_index=True),
        "zero_shot_confusion": pd.concat(confusions, ignore_index=True)[OPTIONAL_COLUMNS["zero_shot_confusion"]],
    }


def evaluate_zero_shot(
    logits_path: Path, oracle_path: Path, out_dir: Path, *, vote_window_ms: float, trials: int, seed: int
) -> None:
    """Write ``zero_shot.tsv``, ``zero_shot_subsets.tsv`` and ``zero_shot_confusion.tsv`` of one zero-shot fold into
    ``out_dir``."""
    payload, oracle = read_logits(logits_path), read_logits(oracle_path)
    window_frames = window_frames_for(vote_window_ms, payload["frame_rate_hz"])
    for name, table in zero_shot_tables(payload, oracle, window_frames, trials, seed).items():
        atomic_write_frame(table, Path(out_dir) / f"{name}.tsv")
