"""``logits.pt``, the evaluation's input: its one writer and its one reader, for networks and LDA alike.

Per test frame (rows in the order the model scored them; the integers stored as int16, read as long):
    logits      float32 [frame, class]  scores over every class of the run
    label       long    [frame]         true class index
    subject     long    [frame]         index into ``subjects``
    repetition  long    [frame]         1-based NinaPro repetition
    frame       long    [frame]         position within its (subject, class, repetition) segment, 0, 1, ...
Per rest window (every window of the segment's length in the test repetitions' rest runs, :mod:`.rest_windows`):
    rest_window_logits      float32 [window, frame, class]  scores of each window's frames, as a segment's
    rest_window_subject     long    [window]  index into ``subjects``
    rest_window_repetition  long    [window]  1-based NinaPro repetition
    rest_window_start       long    [window]  its first frame in the subject's stream (the tensor file's ``stream``)
Per test frame, from a model that decodes pose (``pose_decoder``; absent otherwise, and in older files):
    pose        float32 [frame, 22]     the decoded pose, in the subject's standardised glove units (:mod:`.glove`)
    glove       float32 [frame, 22]     the true standardised glove at the frame (NaN: no target)
Per file, from such a model:
    pose_descriptions  float32 [subject, class, 22]  each class's pose as described to each subject by the other
                                        training subjects' gloves (NaN: none), what its decoded pose is matched to
Per file:
    subjects, amputee, classes          names of the axes the indices point into
    frame_rate_hz                       frames per second (vote windows in frames are computed from it)
    model, fold, window, adabn, adaptation   what produced it (adaptation: where AdaBN statistics came from, or "none")
    unseen                              gestures held out of training (zero-shot folds); optional, as in older files
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.atomic import atomic_torch_save
from ..core.errors import InputError
from ..core.torch_file import load_torch_file

PER_FRAME = ("logits", "label", "subject", "repetition", "frame")
PER_REST_WINDOW = ("rest_window_logits", "rest_window_subject", "rest_window_repetition", "rest_window_start")
DECODED_POSE = ("pose", "glove")  # optional per-frame keys (pose-decoding models), filtered with the frames
PER_FILE = ("subjects", "amputee", "classes", "frame_rate_hz", "model", "fold", "window", "adabn", "adaptation")


@dataclass(frozen=True)
class RestWindows:
    """The test selection's rest windows, scored (:mod:`.rest_windows`): what logits.pt's ``rest_window_*`` hold."""

    logits: torch.Tensor  # [window, frame, class]
    subject: torch.Tensor  # [window] index into the subjects
    repetition: torch.Tensor  # [window] 1-based
    start: torch.Tensor  # [window] first frame in the subject's stream


def write_logits(
    path: Path,
    logits: torch.Tensor,
    index: torch.Tensor,
    data,
    model_name: str,
    fold_name: str,
    adabn: bool,
    adaptation: str,
    unseen: list[str] = (),
    *,
    rest_windows: RestWindows,
    poses=None,
) -> None:
    """Write every test frame's scores and the test rest windows'; ``index`` [frame, 4] holds (subject, class,
    rep, frame), 0-based, into ``data`` (a DB23: subject names, amputee flags, classes and frame rate come from
    it). ``poses``: a pose-decoding model's :class:`.glove.DecodedPoses` of the same frames (None: none)."""
    index = index.cpu()
    atomic_torch_save(
        {
            "logits": logits.cpu(),
            # Small integers stored small (a quarter of int64's bytes), read back as int64 (read_logits).
            "label": index[:, 1].to(torch.int16),
            "subject": index[:, 0].to(torch.int16),
            "repetition": (index[:, 2] + 1).to(torch.int16),
            "frame": index[:, 3].to(torch.int16),
            "rest_window_logits": rest_windows.logits.float().cpu(),
            "rest_window_subject": rest_windows.subject.to(torch.int16).cpu(),
            "rest_window_repetition": rest_windows.repetition.to(torch.int16).cpu(),
            "rest_window_start": rest_windows.start.long().cpu(),
            "subjects": data.subject_names,
            "amputee": [s.amputee for s in data.subjects],
            "classes": data.classes,
            "frame_rate_hz": data.frame_rate_hz,
            "adabn": adabn,
            "adaptation": adaptation if adabn else "none",
            "model": model_name,
            "fold": fold_name,
            "window": data.window,
            "unseen": list(unseen),  # gestures held out of training (zero-shot folds)
        }
        | (
            {} if poses is None else {"pose": poses.pose, "glove": poses.glove, "pose_descriptions": poses.descriptions}
        ),
        path,
    )


def read_logits(path: Path) -> dict:
    """The payload written by :func:`write_logits`; an error naming the file and the field if it is not one."""
    path = Path(path)
    payload = load_torch_file(
        path, "a logits file", "not found; run the train rule that writes it", "delete it and train again"
    )
    missing = [
        key for key in (*PER_FRAME, *PER_REST_WINDOW, *PER_FILE) if not isinstance(payload, dict) or key not in payload
    ]
    if missing:
        raise InputError(f"{path}: field(s) {missing} missing; it was written by an older version: train again")
    integers = [key for key in (*PER_FRAME, *PER_REST_WINDOW) if not torch.is_floating_point(payload[key])]
    return payload | {key: payload[key].long() for key in integers}
