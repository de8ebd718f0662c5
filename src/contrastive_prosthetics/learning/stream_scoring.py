"""Scoring a subject's continuous recording as the controller does, shared by the stream evaluation (test
repetitions) and the rest calibration at training time (validation repetitions): the stretches of consecutive
frames, the network with its adaptation state for each repetition, and the class bias the controller adds."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.ninapro import REST
from .adaptation import DEPLOYABLE, cross_fitted_network, past_network, protocol_of
from .dataset import DB23, Normalisation
from .models import adapt_batchnorm
from .onset_gate import OnsetGate, frame_amplitude, gate_states, gated, rest_level

log = logging.getLogger(__name__)


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
    protocol: str = "transductive"  # evaluation.adaptation_protocol (:mod:`.adaptation`)
    update_frames: int = 1  # a past-protocol controller's statistics update every this many frames
    left_out: dict[int, list[int]] = field(default_factory=dict)  # subject → repetitions no adaptation reads
    setup: dict[int, list[int]] = field(default_factory=dict)  # subject → repetitions recorded before use

    @property
    def scored_under(self) -> str:
        """The protocol this model's streams are scored under (:func:`.adaptation.protocol_of`)."""
        return protocol_of(self.adabn, self.adaptation, self.protocol)

    def network(
        self, model: torch.nn.Module, subject: int, repetition: int, pool: list[int], memo: dict | None = None
    ) -> torch.nn.Module:
        """The network with its adaptation state for one subject's repetition (:func:`adapted_network`)."""
        return adapted_network(
            model, self.adabn, self.adaptation, self.normalised, subject, repetition, pool, self.adaptation_frames, memo
        )

    def networks(
        self, model: torch.nn.Module, subject: int, repetition: int, pool: list[int], memo: dict | None = None
    ) -> Iterator[tuple[torch.nn.Module, list[np.ndarray]]]:
        """The networks that score the stretches of the subject's repetition, each once with the stretches (stream
        positions) it scores: one for the repetition (:meth:`network`, transductive), one per user on their
        ``setup`` repetitions (``setup``), or each stretch's own from the recording before it (``past``, and
        ``setup`` for a user without setup repetitions: :func:`.adaptation.past_network`); a stretch a deployed
        controller could not adapt for yet is left out."""
        stretches = scored_stretches(self.raw, subject, [repetition])
        if not stretches:
            return
        protocol = self.scored_under
        if protocol == "setup" and self.setup.get(subject):
            # Repetition 0 is no repetition: every setup repetition adapts, none is scored.
            context = model.config.context
            setup = self.setup[subject]
            yield (
                cross_fitted_network(
                    model, self.normalised, subject, 0, setup, context, self.adaptation_frames, memo=memo
                ).eval(),
                stretches,
            )
            return
        if protocol not in DEPLOYABLE:
            yield self.network(model, subject, repetition, pool, memo), stretches
            return
        settings = dict(update_frames=self.update_frames, limit=self.adaptation_frames, memo=memo)
        for positions in stretches:
            left_out = self.left_out.get(subject, [])
            network = past_network(model, self.normalised, subject, int(positions[0]), left_out=left_out, **settings)
            if network is None:
                log.info("subject %d, stretch at %d: nothing recorded before it, not scored", subject, positions[0])
                continue
            yield network.eval(), [positions]


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
