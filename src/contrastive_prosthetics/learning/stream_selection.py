"""Model selection on what the controller sees: movement accuracy on the validation streams at the target rest
false activation, an option (``training.selection: stream``) beside the segment criterion (validation loss for the
checkpoint, validation accuracy for the search).

The rest bias is calibrated after training; selecting on a bias-free stream score would prefer the models that
are loud at rest. So each candidate is scored at its own bias for the target: per frame (no vote, so that it is
one quantile and cheap enough for every epoch), the bias at which that share of the validation rest frames is
decided as a gesture, and the share of movement frames decided right at it. Every class is allowed.
"""

from __future__ import annotations

import torch

from .training_settings import STREAM_SCORE

__all__ = ["STREAM_SCORE", "movement_accuracy_at"]


def movement_accuracy_at(stretches: list[tuple[torch.Tensor, object]], rest: int, target: float) -> float:
    """Movement frames decided right over the ``stretches`` (logits [frame, class], truth [frame]) with the bias on
    rest's logit at which a ``target`` share of their rest frames is decided as a gesture (before any vote)."""
    logits = torch.cat([scores for scores, _ in stretches]).double()
    truth = torch.cat([torch.as_tensor(labels) for _, labels in stretches]).long()
    at_rest = truth == rest
    if not at_rest.any() or at_rest.all():
        return float("nan")
    gestures = logits.clone()
    gestures[:, rest] = -torch.inf
    margin = gestures.amax(1) - logits[:, rest]  # a rest frame is a false activation while the bias is below it
    bias = torch.quantile(margin[at_rest], 1.0 - target).item()
    shifted = logits.clone()
    shifted[:, rest] += bias
    decided = shifted.argmax(1)
    return (decided[~at_rest] == truth[~at_rest]).double().mean().item()
