"""Scoring a subject's continuous recording as the controller does, shared by the stream evaluation (test
repetitions) and the rest calibration at training time (validation repetitions): the stretches of consecutive
frames, the network with its adaptation state for each repetition, and the class bias the controller adds."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..data.ninapro import REST
from .adaptation import cross_fitted_network
from .dataset import DB23, Normalisation
from .models import adapt_batchnorm
from .onset_gate import OnsetGate, frame_amplitude, gate_states, gated, rest_level


@dataclass(frozen=True, kw_only=True)
class StreamScoring:
    """How a model's continuous recordings are scored as the controller scores them: the raw frames the controller
    reads, the same normalised (what AdaBN adapts on), the normalisation the scorer applies, where the network's
    batch-norm statistics come from, and each subject's class codes (a zero-shot fold's; None: the model's own)."""

    raw: DB23
    normalised: DB23
    normalisation: Normalisation
    adabn: bool
    adaptation: str  # as logits.pt says: cross_fitted, scored_frames, batch_statistics or none
    adaptation_frames: int  # training.adaptation_frames: the most frames a cross-fitted adaptation reads
    codes: torch.Tensor | None = None  # [subject, class, code]

    def network(
        self, model: torch.nn.Module, subject: int, repetition: int, pool: list[int], memo: dict | None = None
    ) -> torch.nn.Module:
        """The network with its adaptation state for one subject's repetition (:func:`adapted_network`)."""
        return adapted_network(
            model, self.adabn, self.adaptation, self.normalised, subject, repetition, pool, self.adaptation_frames, memo
        )


def class_bias(classes: list[str], rest_bias: float) -> torch.Tensor:
    """[class] the bias the controller adds to every frame's logits: ``rest_bias`` on rest, 0 elsewhere."""
    bias = torch.zeros(len(classes))
    bias[classes.index(REST)] = rest_bias
    return bias


def scored_stretches(data: DB23, subject: int, repetitions: list[int]) -> list[np.ndarray]:
    """Stream positions of the subject's ``repetitions``, as runs of consecutive frames."""
    streams = data.streams
    wanted = torch.tensor(repetitions, device=streams.repetition.device)
    mask = (streams.subject == subject) & torch.isin(streams.repetition, wanted)
    positions = mask.nonzero().squeeze(1).cpu().numpy()
    if not len(positions):
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    return np.split(positions, breaks)


def adapted_network(
    model,
    adabn: bool,
    adaptation: str,
    normalised: DB23,
    subject: int,
    repetition: int,
    pool: list[int],
    limit: int,
    memo: dict | None = None,
):
    """The network with its adaptation state for one subject's repetition: cross-fitted on the subject's stream
    during the other repetitions of ``pool`` (``memo``: :func:`.adaptation.cross_fitted_network`'s), or on the
    scored repetition's segments."""
    if not adabn:
        return model
    context = model.config.context
    if adaptation == "cross_fitted":
        return cross_fitted_network(model, normalised, subject, repetition, pool, context, limit, memo=memo).eval()
    adapted = copy.deepcopy(model)  # on the scored repetition's segments
    selection = normalised.select(subjects=[normalised.subject_names[subject]], repetitions=[repetition])
    adapt_batchnorm(adapted, torch.cat([x for x, _ in normalised.frames(selection, context=context)]))
    return adapted.eval()


def with_gate(logits: torch.Tensor, data: DB23, subject: int, positions: np.ndarray, gate: OnsetGate | None):
    """A stretch's ``logits`` with the onset gate in front (:mod:`.onset_gate`; None: as they are): the gate set
    from the subject's rest at the start of their recording, run over the stretch from closed, as a controller
    restarted at the stretch would."""
    if gate is None:
        return logits
    streams = data.streams
    live = data.channel_mask[subject].cpu()
    start = int(streams.offset[subject])
    level = rest_level(streams.frames[start : start + gate.rest_frames].cpu(), live, gate, data.subject_names[subject])
    amplitude = frame_amplitude(streams.frames[torch.from_numpy(positions).to(streams.frames.device)].cpu(), live)
    return gated(logits, gate_states(amplitude, gate, level, np.zeros(1, int)), data.classes.index(REST))
