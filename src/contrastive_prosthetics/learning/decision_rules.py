"""A faster decision rule than the vote (``evaluation.decision``): smoothed class probabilities with hysteresis.

The vote (:mod:`.decisions`) needs a plurality of the last ``vote_frames`` frames: from rest a gesture waits for
about half the window. :class:`Hysteresis` decides on evidence instead, frame by frame:

1. each frame's logits among the allowed classes (rest's plus ``rest_offset``, the rule's own rest calibration on
   top of the model's rest bias) become softmax probabilities, in float64;
2. the probabilities are smoothed exponentially with time constant ``smoothing_ms`` (each frame moves the smoothed
   ones by ``alpha = 1 - exp(-frame_ms / smoothing_ms)`` of the way; 0 ms: no smoothing), starting from rest
   (probability 1) at the start of every stretch, as the controller restarts;
3. at rest, the leading gesture (the largest smoothed probability, ties to the lower class index) is entered once
   its smoothed probability is at least ``enter``; in a gesture, the decision returns to rest once rest's smoothed
   probability is at least ``leave``, else switches to another gesture once that one leads with at least ``enter``.

One arithmetic serves every path, so that the offline decisions (many subsets and stretches at once,
:func:`decide_rule_subsets`) and the controller's (one frame at a time, :class:`RuleState`) are the same bits: the
same numpy element-wise operations in the same order on float64, the exponential computed from additions and
multiplications only (:func:`exact_exp`; a library's vectorised exp may round an element differently from its
scalar one), the softmax's sum taken column by column in one order (rest first, then the gestures ascending).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import InputError

if TYPE_CHECKING:  # the configuration's check imports this module, and parsing the workflow must not import torch
    import torch

VOTE, HYSTERESIS = "vote", "hysteresis"
RULES = (VOTE, HYSTERESIS)
CHUNK_ELEMENTS = 2**22  # subsets × frames × classes of probabilities held at once
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 split: k * LN2_HI is exact
INV_LN2 = 1.44269504088896338700e00
TAYLOR = [1.0 / math.factorial(n) for n in range(14)]  # exp(r) for |r| <= ln 2 / 2, to far below float64 rounding
LOWEST = -700.0  # exp(-700) ~ 1e-304: a probability this small is 0 for every decision, and 2 ** k stays normal


def exact_exp(x: np.ndarray) -> np.ndarray:
    """exp(x) for float64 ``x <= 0`` from element-wise additions and multiplications (each correctly rounded by
    IEEE 754, so the same bits in any array layout and on any machine): x = k ln 2 + r, exp(r) by Horner's rule on
    its Taylor series, times 2 ** k built from its exponent bits."""
    x = np.maximum(x, LOWEST)
    k = np.rint(x * INV_LN2)
    r = x - k * LN2_HI
    r -= k * LN2_LO
    series = np.full_like(r, TAYLOR[-1])
    for coefficient in reversed(TAYLOR[:-1]):  # in place: the same operations, five times faster than new arrays
        series *= r
        series += coefficient
    exponent = k.astype(np.int64)
    exponent += 1023
    exponent <<= 52
    series *= exponent.view(np.float64)
    return series


@dataclass(frozen=True)
class Hysteresis:
    """Smoothed probabilities with hysteresis (see the module); ``frame_ms`` the frame period it decides at."""

    smoothing_ms: float
    enter: float
    leave: float
    frame_ms: float
    rest_offset: float = 0.0  # added to rest's logit before the softmax: this rule's rest calibration

    rule = HYSTERESIS

    def __post_init__(self):
        check_rule_values({"smoothing_ms": self.smoothing_ms, "enter": self.enter, "leave": self.leave})

    @cached_property  # read once per frame of the evaluation's loop: computed once per rule
    def alpha(self) -> float:
        return 1.0 if self.smoothing_ms == 0 else 1.0 - math.exp(-self.frame_ms / self.smoothing_ms)

    def with_offset(self, rest_offset: float) -> Hysteresis:
        return replace(self, rest_offset=float(rest_offset))

    def as_dict(self) -> dict:
        return {"rule": HYSTERESIS} | asdict(self)

    @classmethod
    def from_dict(cls, saved: dict | None) -> Hysteresis | None:
        """From :meth:`as_dict` (model.pt's ``decision``); None or the vote: None (decide by the vote)."""
        if not saved or saved.get("rule", VOTE) == VOTE:
            return None
        return cls(**{key: value for key, value in saved.items() if key != "rule"})

    def decide_subsets(self, logits, allowed, vote_frames, starts, rest: int) -> dict[int, torch.Tensor]:
        """:func:`.batched_decisions.decide_subsets`'s shape ({vote length: [subset, frame]}), every vote length
        given the rule's decisions: what the stream metrics call."""
        decided = decide_rule_subsets(self, logits, allowed, starts, rest)
        return {votes: decided for votes in vote_frames}


def check_rule_values(values: dict, key: str = "evaluation.decision") -> None:
    """Each of ``smoothing_ms`` (>= 0), ``enter`` and ``leave`` (in (0, 1]), a number or a list of them (a grid),
    else an error naming the key."""
    bounds = {"smoothing_ms": (0.0, math.inf, "at least 0"), "enter": (0.0, 1.0, "in (0, 1]")}
    bounds["leave"] = bounds["enter"]
    for name, value in values.items():
        low, high, text = bounds[name]
        for one in value if isinstance(value, list | tuple) else [value]:
            inside = low <= one <= high if name == "smoothing_ms" else low < one <= high
            if isinstance(one, bool) or not isinstance(one, int | float) or not inside:
                raise InputError(f"{key}.{name} = {one!r}: must be a number {text}")


def rule_grid(decision: dict | None, frame_rate_hz: float) -> list[Hysteresis]:
    """The rules ``evaluation.decision`` asks to choose among (each of smoothing_ms, enter, leave a number or a
    list: every combination, in that order); [] for the vote. An unknown rule is an error naming the key."""
    decision = decision or {"rule": VOTE}
    name = decision.get("rule")
    if name not in RULES:
        raise InputError(f"evaluation.decision.rule = {name!r}: unknown; use one of {list(RULES)}")
    if name == VOTE:
        return []
    keys = ("smoothing_ms", "enter", "leave")
    missing = [key for key in keys if key not in decision]
    if missing:
        raise InputError(f"evaluation.decision: the hysteresis rule needs {missing}")
    check_rule_values({key: decision[key] for key in keys})
    values = [decision[key] if isinstance(decision[key], list | tuple) else [decision[key]] for key in keys]
    frame_ms = 1000.0 / frame_rate_hz
    return [Hysteresis(float(s), float(e), float(v), frame_ms) for s in values[0] for e in values[1] for v in values[2]]


def rest_first_columns(allowed: np.ndarray, rest: int) -> np.ndarray:
    """[subset, k + 1] class indices of each subset (allowed [subset, class], rest in each): rest, then its gestures
    ascending (so that the first of equal maxima among the gestures is the lowest class index)."""
    gestures = allowed.copy()
    gestures[:, rest] = False
    size = int(gestures[0].sum()) if len(gestures) else 0
    columns = np.nonzero(gestures)[1].reshape(len(gestures), size)
    return np.concatenate((np.full((len(gestures), 1), rest), columns), 1)


def probabilities(scores: np.ndarray, rest_offset: float) -> np.ndarray:
    """Softmax of float64 ``scores`` [..., rest then gestures] along the last axis, ``rest_offset`` added to rest's
    first: the maximum subtracted, :func:`exact_exp`, the sum column by column in order."""
    shifted = scores.copy()
    shifted[..., 0] = shifted[..., 0] + rest_offset
    exps = exact_exp(shifted - shifted.max(-1, keepdims=True))
    total = exps[..., 0].copy()
    for column in range(1, exps.shape[-1]):
        total = total + exps[..., column]
    return exps / total[..., None]


def step(smoothed: np.ndarray, state: np.ndarray, frame: np.ndarray, rule: Hysteresis) -> None:
    """One frame, in place: ``smoothed`` [..., rest then gestures] moves by ``alpha`` toward the frame's
    probabilities ``frame``, then ``state`` [...] (0: rest, else the column of a gesture) follows the module's
    rule. Few numpy calls, in place: the evaluation calls this once per frame of its longest stretch."""
    change = frame - smoothed
    change *= rule.alpha
    smoothed += change
    if smoothed.shape[-1] == 1:  # rest alone is allowed: rest, always
        return
    gestures = smoothed[..., 1:]
    leader, lead = gestures.argmax(-1), gestures.max(-1)  # the first of equal maxima: the lowest class index
    leader += 1
    leave = smoothed[..., 0] >= rule.leave
    leave &= state != 0
    enter = lead >= rule.enter
    enter &= leader != state
    np.copyto(state, leader, where=enter)
    state[leave] = 0


def _decide_columns(
    scores: np.ndarray, columns: np.ndarray, starts: np.ndarray, lengths: np.ndarray, rule: Hysteresis
) -> np.ndarray:
    """[subset, frame] decided columns of stretches laid end to end (``scores`` [frame, class] float64, each
    subset's ``columns`` [subset, column], rest's first): one loop over the frames of the longest stretch, every
    subset and stretch at once (the stretches still running at a frame are a prefix of the ones sorted longest
    first), the probabilities of a block of frames computed together (element-wise: the same bits as one frame at
    a time)."""
    (n_frames, _), (n_subsets, n_columns) = scores.shape, columns.shape
    order = np.argsort(-lengths, kind="stable")
    starts, lengths = starts[order], lengths[order]
    smoothed = np.zeros((n_subsets, len(starts), n_columns))
    smoothed[..., 0] = 1.0  # the controller starts at rest
    state = np.zeros((n_subsets, len(starts)), dtype=np.int64)
    decided = np.zeros((n_subsets, n_frames), dtype=np.int64)
    running = np.searchsorted(-lengths, -np.arange(int(lengths.max(initial=0))), side="left")  # lengths > t
    counts = running.tolist()
    first = 0
    while first < len(running):
        count = counts[first]
        block = min(len(running) - first, max(1, CHUNK_ELEMENTS // (n_subsets * count * n_columns)))
        frames = (starts[:count, None] + first + np.arange(block)).clip(max=n_frames - 1)  # past an end: unused
        chosen = scores[frames[None, :, :, None], columns[:, None, None, :]]
        block_probabilities = probabilities(chosen, rule.rest_offset)  # [subset, stretch, frame, column]
        states = np.zeros((n_subsets, count, block), dtype=np.int64)  # each frame's states, written back at the end
        for t in range(first, first + block):
            now = counts[t]
            step(smoothed[:, :now], state[:, :now], block_probabilities[:, :now, t - first], rule)
            states[:, :now, t - first] = state[:, :now]
        valid = np.arange(block) < lengths[:count, None] - first  # [stretch, frame] inside its stretch
        decided[:, frames[valid]] = states[:, valid]
        first += block
    return decided


def decide_rule_subsets(
    rule: Hysteresis,
    logits: torch.Tensor,
    allowed: torch.Tensor,
    starts: torch.Tensor | None,
    rest: int,
    rest_shifts: np.ndarray | None = None,
) -> torch.Tensor:
    """[subset, frame] class decisions of ``rule`` for logits [frame, class] (float32, the model's rest bias in
    them) among each subset's ``allowed`` [subset, class] classes (rest among them), the stretches laid end to end
    starting at ``starts`` (None: one stretch), the rule restarting at each: the same bits as :class:`RuleState`
    fed each stretch frame by frame. ``rest_shifts`` [shift]: [shift, subset, frame], the decisions with each shift
    added to rest's logit (in float32, as adding it to the logits first would)."""
    n_frames = len(logits)
    allowed = np.asarray(allowed, dtype=bool)
    if not allowed[:, rest].all():
        raise ValueError("every subset must allow rest")
    starts = np.zeros(1, dtype=np.int64) if starts is None else np.asarray(starts, dtype=np.int64)
    starts = starts[starts < n_frames] if n_frames else starts[:0]
    lengths = np.diff(np.append(starts, n_frames))
    raw = logits.numpy()
    scores, rest_columns = raw.astype(np.float64), np.array([rest])
    if rest_shifts is not None:  # each shift's rest a column after the classes, its subsets decided as their own
        shifted = raw[:, rest, None] + np.asarray(rest_shifts, dtype=np.float32)  # in float32, as shifted logits
        scores = np.concatenate([scores, shifted.astype(np.float64)], 1)
        rest_columns = raw.shape[1] + np.arange(len(rest_shifts))
    decisions = np.zeros((len(rest_columns), len(allowed), n_frames), dtype=np.int64)
    for size in np.unique(allowed.sum(1)).tolist():  # subsets of one size together, on their own columns
        rows = np.flatnonzero(allowed.sum(1) == size)
        columns = rest_first_columns(allowed[rows], rest)
        variants = np.repeat(columns[None], len(rest_columns), 0)  # [shift, subset, column], shift-major
        variants[:, :, 0] = rest_columns[:, None]
        decided = _decide_columns(scores, variants.reshape(-1, columns.shape[1]), starts, lengths, rule)
        decisions[:, rows] = np.take_along_axis(columns[None], decided.reshape(len(rest_columns), len(rows), -1), 2)
    import torch

    return torch.from_numpy(decisions if rest_shifts is not None else decisions[0])


class RuleState:
    """The controller's rule, one frame at a time: ``push`` a frame's logits [class] (float32, the model's rest
    bias in them), get its decision (a class index); ``reset`` restarts at rest, as a new stretch does."""

    def __init__(self, rule: Hysteresis, allowed: np.ndarray, rest: int):
        self.rule = rule
        self.columns = rest_first_columns(np.asarray(allowed, dtype=bool)[None], rest)[0]
        self.reset()

    def reset(self) -> None:
        self.smoothed = np.zeros((1, len(self.columns)))
        self.smoothed[0, 0] = 1.0
        self.state = np.zeros(1, dtype=np.int64)

    def push(self, logits: np.ndarray) -> int:
        scores = np.asarray(logits)[self.columns].astype(np.float64)[None]
        step(self.smoothed, self.state, probabilities(scores, self.rule.rest_offset), self.rule)
        return int(self.columns[self.state[0]])
