"""One `stream` job the size of a real DB1 evaluation: 10 subjects × 3 test repetitions × 12 movements, each
(movement, repetition) its own stretch of 3 s rest + 5 s movement at 100 Hz, as on real recordings, where the six
repetitions of a movement follow each other and a test repetition's frames are cut into one stretch per movement
(360 stretches, 288 k frames in all), 13 classes, the default network (64 maps, two 512-wide layers), subsets
(k = 1, 3, 6, 12 with 4 trials each, and K) and votes (0, 50, 100, 250 ms).

The job scores every frame, then decides every subset and vote. Before: frames scored one at a time (the
controller's way) and the decisions and metrics in a loop per subset × vote × stretch × movement run. Now: frames
scored in batches of 4096 and the metrics as array operations over many stretches at once. Goal: the job ≥ 30x
faster, with the same metrics. The one-at-a-time scoring is timed on a sample of frames and extrapolated (it would
take over a minute).
"""

import numpy as np
import torch

from contrastive_prosthetics.data.ninapro import class_names
from contrastive_prosthetics.evaluation.stream_metrics import stream_metrics
from contrastive_prosthetics.evaluation.stream_metrics_reference import straightforward_stream_metrics
from contrastive_prosthetics.evaluation.subsets import draw_subsets
from contrastive_prosthetics.learning.dataset import Normalisation
from contrastive_prosthetics.learning.inference import FrameScorer
from contrastive_prosthetics.learning.models import ContrastiveModel, ModelConfig

from .results import Result
from .timing import best_of

SUBJECTS, REPETITIONS, MOVEMENT, REST_FRAMES = 10, 3, 500, 300
SIZES, TRIALS, VOTES, FRAME_MS, SEED = (1, 3, 6, 12), 4, (0, 5, 10, 25), 10.0, 0
GOAL = 30
CHANNELS, SAMPLED_FRAMES, BATCH = 10, 3000, 4096


def stretches(classes: list[str], seed: int) -> list:
    """One stretch per subject, repetition and movement: rest, then the gesture; logits that lean towards the
    truth with time-correlated noise (a 200 ms RMS makes neighbouring frames move together), top-1 ≈ 60 %."""
    generator = np.random.default_rng(seed)
    scored = []
    for subject in range(SUBJECTS):
        for _ in range(REPETITIONS):
            for gesture in range(1, len(classes)):
                truth = np.array([0] * REST_FRAMES + [gesture] * MOVEMENT)
                noise = generator.standard_normal((len(truth) + 20, len(classes))).cumsum(0)
                logits = (noise[20:] - noise[:-20]) / 20**0.5 + 1.2 * np.eye(len(classes))[truth]
                scored.append((subject, np.arange(len(truth)), torch.from_numpy(logits.astype(np.float32)), truth))
    return scored


def scorer(n_classes: int) -> FrameScorer:
    model = ContrastiveModel(ModelConfig(kind="contrastive", n_channels=CHANNELS, n_classes=n_classes)).eval()
    ones = torch.ones(CHANNELS)
    return FrameScorer(model, Normalisation(ones * -3, ones, True, ones * 0.01), ones.bool(), n_classes)


def main() -> list[Result]:
    classes = class_names(["A"])
    scored = stretches(classes, SEED)
    drawn = draw_subsets(len(classes) - 1, TRIALS, SEED)
    subsets = {k: drawn[k] for k in (*SIZES, len(classes) - 1)}
    n_frames = sum(len(truth) for *_, truth in scored)
    n_subsets = sum(len(chosen) for chosen in subsets.values())
    print(
        f"== stream evaluation, {n_frames:,} frames x {len(classes)} classes in {len(scored)} stretches, {n_subsets} "
        f"subsets x {len(VOTES)} votes, {torch.get_num_threads()} threads"
    )
    network = scorer(len(classes))
    frames = torch.rand(n_frames, CHANNELS, generator=torch.Generator().manual_seed(SEED))
    batched = best_of(lambda: network(frames, batch=BATCH), 2)
    one_at_a_time = best_of(lambda: network(frames[:SAMPLED_FRAMES]), 1) / SAMPLED_FRAMES * n_frames
    sample = network(frames[:SAMPLED_FRAMES])
    close = bool((network(frames[:SAMPLED_FRAMES], batch=BATCH) - sample).abs().max() <= 1e-5)
    print(
        f"scoring: batches of {BATCH}: {batched:.2f} s; one at a time: {one_at_a_time:.1f} s (timed on "
        f"{SAMPLED_FRAMES} frames, extrapolated); scores equal to 1e-5: {close}"
    )
    fast = reference = None

    def run_fast() -> None:
        nonlocal fast
        fast = stream_metrics(scored, classes, subsets, list(VOTES), FRAME_MS)

    def run_reference() -> None:
        nonlocal reference
        reference = straightforward_stream_metrics(scored, classes, subsets, list(VOTES), FRAME_MS)

    fast_seconds = best_of(run_fast, 3)
    reference_seconds = best_of(run_reference, 1)
    identical = all(fast[column].equals(reference[column].astype(fast[column].dtype)) for column in reference)
    identical &= list(fast) == list(reference) and len(fast) == len(reference)
    print(
        f"metrics: arrays {fast_seconds:.2f} s; loop {reference_seconds:.1f} s "
        f"({reference_seconds / fast_seconds:.1f}x); identical tables: {identical}"
    )
    before, after = one_at_a_time + reference_seconds, batched + fast_seconds
    speed_up = before / after
    print(
        f"the job: before {before:.1f} s, now {after:.2f} s: speed-up {speed_up:.0f}x (goal >= {GOAL}x) "
        f"{'OK' if speed_up >= GOAL else 'MISSED'}"
    )
    return [
        Result("stream evaluation speed-up (scores + metrics)", f"{speed_up:.0f}x", f">= {GOAL}x", speed_up >= GOAL),
        Result("stream metrics speed-up alone", f"{reference_seconds / fast_seconds:.1f}x", "", True),
        Result("stream metrics equal the loop's", str(identical), "True", bool(identical)),
    ]


if __name__ == "__main__":
    main()
