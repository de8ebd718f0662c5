"""The rest bias's trade-off under the hysteresis rule on one long stretch: a leave-one-subject-out fold's test
subject, whose whole recording (60 k frames at 100 Hz, 13 classes) is one stretch, every gesture allowed, and the
14 bias offsets of ``stream_tradeoff`` (0 and 13 quantiles).

The rule decides frame by frame, so a long stretch with one subset is its worst case: the per-frame loop barely
vectorises. Before: ``stream_metrics`` once per offset on the shifted logits, 14 passes of the loop. Now:
``tradeoff_table`` decides every offset in one pass (``decide_rule_subsets``'s ``rest_shifts``). Goal: >= 2x faster,
with the same table.
"""

import numpy as np
import pandas as pd
import torch

from contrastive_prosthetics.data.ninapro import class_names
from contrastive_prosthetics.evaluation.stream_metrics import stream_metrics
from contrastive_prosthetics.evaluation.stream_tradeoff import bias_offsets, tradeoff_table
from contrastive_prosthetics.learning.decision_rules import Hysteresis

from .results import Result
from .timing import best_of

FRAMES, FRAME_MS, SEED, GOAL = 60_000, 10.0, 0, 2.0


def one_recording(classes: list[str]) -> list:
    """One stretch: 5 s movements and 3 s rests in turn, logits leaning towards the truth with noise."""
    generator = np.random.default_rng(SEED)
    block = np.concatenate([np.zeros(300, dtype=np.int64), np.ones(500, dtype=np.int64)])
    movements = generator.integers(1, len(classes), FRAMES // len(block) + 1)
    truth = np.concatenate([block * movement for movement in movements])[:FRAMES]
    logits = generator.normal(0, 1.5, (FRAMES, len(classes))).astype(np.float32)
    logits[np.arange(FRAMES), truth] += 2.0
    return [(0, np.arange(FRAMES), torch.from_numpy(logits), truth)]


def main() -> list[Result]:
    classes = class_names(["A"])
    scored, rule = one_recording(classes), Hysteresis(smoothing_ms=20.0, enter=0.5, leave=0.5, frame_ms=FRAME_MS)
    every = torch.ones((1, len(classes) - 1), dtype=torch.bool)
    rest = classes.index("rest")
    print(f"== the rule's bias trade-off, one stretch of {FRAMES:,} frames x {len(classes)} classes")
    swept = per_offset = None

    def run_swept() -> None:
        nonlocal swept
        swept = tradeoff_table(scored, classes, every, [0], FRAME_MS, rule)

    def run_per_offset() -> None:
        nonlocal per_offset
        rows = []
        for offset in bias_offsets(scored, rest):
            shift = torch.zeros(len(classes))
            shift[rest] = float(offset)
            shifted = [(subject, positions, logits + shift, truth) for subject, positions, logits, truth in scored]
            metrics = stream_metrics(shifted, classes, {len(classes) - 1: every}, [0], FRAME_MS, rule=rule)
            rows.append(metrics.assign(bias_offset=float(offset), calibrated=bool(offset == 0.0)))
        per_offset = pd.concat(rows, ignore_index=True)

    swept_seconds, per_offset_seconds = best_of(run_swept, 2), best_of(run_per_offset, 1)
    identical = bool(swept.equals(per_offset[list(swept.columns)]))
    ratio = per_offset_seconds / swept_seconds
    print(
        f"one pass for every offset: {swept_seconds:.2f} s; a pass per offset: {per_offset_seconds:.2f} s: "
        f"{ratio:.1f}x (goal >= {GOAL:g}x) {'OK' if ratio >= GOAL else 'MISSED'}; identical tables: {identical}"
    )
    return [
        Result("rule trade-off, one pass / a pass per offset", f"{ratio:.1f}x", f">= {GOAL:g}x", ratio >= GOAL),
        Result("rule trade-off tables equal", str(identical), "True", identical),
    ]


if __name__ == "__main__":
    main()
