"""The onset gate: an amplitude threshold in front of the classifier, so that a resting hand stays at rest.

Commercial myoelectric controllers move only when the muscles are active: below a threshold the hand rests, whatever
the classifier would say. Here the threshold is set from each user's own rest, with no label: the median amplitude
(the mean over live electrodes of the raw RMS frame) over the first ``rest_frames`` frames of their recording, which
NinaPro and a clinic's calibration alike begin at rest. The gate opens once the amplitude has stayed at or above
``on_ratio`` times that level for ``dwell_frames`` frames, and closes once it has stayed below ``off_ratio`` times it
for as long (hysteresis: ``off_ratio`` < ``on_ratio``, so that it does not flicker at the threshold). While it is
closed the frame's non-rest scores are lowered by :data:`GATE_MARGIN`: the frame is decided as rest and enters the
vote as rest, exactly as a classifier's confident rest would.

The one state machine (:class:`GateState`) runs frame by frame in the controller and over each scored stretch in the
stream evaluation and the rest calibration, restarting closed where they restart, so that all three decide alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..core.errors import InputError
from ..core.units import ms_to_frames

GATE_MARGIN = 1e4  # far beyond any logit: a closed gate's frame is rest, whatever the scores


@dataclass(frozen=True)
class OnsetGate:
    on_ratio: float  # opens at this multiple of the user's rest amplitude ...
    off_ratio: float  # ... and closes below this one
    dwell_frames: int  # for this many consecutive frames
    rest_frames: int  # the recording's first frames that set the user's rest amplitude

    @classmethod
    def from_config(cls, gate: dict | None, frame_rate_hz: float) -> OnsetGate | None:
        """From ``evaluation.onset_gate`` ({on_ratio, off_ratio, dwell_ms, rest_s}; None: no gate)."""
        if gate is None:
            return None
        return cls(
            on_ratio=float(gate["on_ratio"]),
            off_ratio=float(gate["off_ratio"]),
            dwell_frames=max(ms_to_frames(gate["dwell_ms"], frame_rate_hz), 1),
            rest_frames=max(round(gate["rest_s"] * frame_rate_hz), 1),
        )

    @classmethod
    def from_dict(cls, saved: dict | None) -> OnsetGate | None:
        """As :meth:`as_dict` wrote it into model.pt (None: no gate)."""
        return None if saved is None else cls(**saved)

    def as_dict(self) -> dict:
        return asdict(self)


def frame_amplitude(frames: torch.Tensor, live: torch.Tensor) -> np.ndarray:
    """[frame] the mean over live electrodes of each raw RMS frame [frame, channel]."""
    return frames[:, live].double().mean(1).cpu().numpy()


def rest_level(frames: torch.Tensor, live: torch.Tensor, gate: OnsetGate, source: str) -> float:
    """The user's rest amplitude: the median over the first ``gate.rest_frames`` raw frames of their recording."""
    if len(frames) < gate.rest_frames:
        raise InputError(
            f"{source}: {len(frames)} frames of rest, the onset gate needs {gate.rest_frames} "
            "(evaluation.onset_gate.rest_s) to set the user's rest level; give a longer rest recording"
        )
    level = float(np.median(frame_amplitude(frames[: gate.rest_frames], live)))
    if not level > 0:
        raise InputError(
            f"{source}: the rest amplitude is {level}: every live electrode reads zero at rest, so no threshold can "
            "be set from it; check the electrodes, or turn the gate off (evaluation.onset_gate: null)"
        )
    return level


class GateState:
    """The gate of one stream, frame by frame (see the module); starts closed."""

    def __init__(self, gate: OnsetGate, level: float):
        self.gate, self.level = gate, level
        self.open, self.run = False, 0  # run: consecutive frames past the threshold that would switch it

    def push(self, amplitude: float) -> bool:
        """The gate after this frame: open or not."""
        ratio = amplitude / self.level
        passing = ratio < self.gate.off_ratio if self.open else ratio >= self.gate.on_ratio
        self.run = self.run + 1 if passing else 0
        if self.run >= self.gate.dwell_frames:
            self.open, self.run = not self.open, 0
        return self.open


def gate_states(amplitude: np.ndarray, gate: OnsetGate, level: float, starts: np.ndarray) -> np.ndarray:
    """[frame] whether the gate is open after each frame of consecutive stretches laid end to end (``starts``: the
    first frame of each), the gate restarting closed at each stretch, as a controller restarts."""
    is_start = np.zeros(len(amplitude), bool)
    is_start[starts] = True
    state, out = GateState(gate, level), np.empty(len(amplitude), bool)
    for t, value in enumerate(amplitude.tolist()):
        if is_start[t]:
            state = GateState(gate, level)
        out[t] = state.push(value)
    return out


def gated(logits: torch.Tensor, open_: torch.Tensor | np.ndarray, rest: int) -> torch.Tensor:
    """``logits`` [frame, class] with every non-rest score lowered by :data:`GATE_MARGIN` where the gate is closed."""
    closed = ~torch.as_tensor(open_, dtype=torch.bool)
    lowered = torch.full((logits.shape[1],), -GATE_MARGIN, dtype=logits.dtype)
    lowered[rest] = 0.0
    return logits + closed[:, None].to(logits.dtype) * lowered
