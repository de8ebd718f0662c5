"""Training throughput with the DB23 sampler ÷ the same training step on batches already built in memory.

Goal ≥ 0.95: drawing batches must not be what limits training. Prints the absolute frames/s too.

Then the training step of a cross-fitted AdaBN model, whose batch norm normalises every batch with the statistics
of ``training.reference_frames`` (1024) frames of the subject's recording, drawn with each batch and run through
the encoder with it: batches/s with the hand-written batch-norm backward (``models.reference_norm``) against
autograd's of the written-out form (``models.reference_norm_autograd``, the first version), from the same weights on
the same batches. Goal: the same weights bit for bit, and faster. The step against the same step without reference
frames shows what the reference rows cost, next to their share of the rows the encoder runs on.
"""

import copy

import torch

from contrastive_prosthetics.learning.dataset import DB23, Streams
from contrastive_prosthetics.learning.models import (
    ModelConfig,
    ReferenceBatchNorm1d,
    build_model,
    contrastive_loss,
    reference_norm,
    reference_norm_autograd,
)
from contrastive_prosthetics.learning.sampling import ContrastiveSampler

from .results import Result
from .sampler_speed import full_size_db23
from .timing import best_of

GROUPS, STEPS = 32, 30
REFERENCE_FRAMES, REFERENCE_STEPS = 1024, 10


def main() -> list[Result]:
    data = full_size_db23()
    train = data.select(repetitions=[1, 3, 4])
    config = ModelConfig(kind="contrastive", n_channels=12, n_classes=len(data.classes))
    torch.manual_seed(0)
    model = build_model(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sampler = ContrastiveSampler(data, train, GROUPS, seed=0, per_subject=True)
    prebuilt = [sampler.draw() for _ in range(STEPS)]

    def step(batch) -> None:
        loss = contrastive_loss(model.group_logits(batch.x, batch.classes, batch.present), batch.present)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def with_sampler() -> None:
        for _ in range(STEPS):
            step(sampler.draw())

    def from_memory() -> None:
        for batch in prebuilt:
            step(batch)

    model.train()
    pairs = [(best_of(with_sampler, 1), best_of(from_memory, 1)) for _ in range(5)]  # interleaved
    sampled, prebuilt_time = min(p[0] for p in pairs), min(p[1] for p in pairs)
    frames = GROUPS * len(data.classes) * STEPS
    ratio = prebuilt_time / sampled
    print(f"== training throughput, contrastive model, {GROUPS} groups x 41 classes per step (best of 5, interleaved)")
    print(
        f"with the DB23 sampler {frames / sampled:,.0f} frames/s, on pre-built batches {frames / prebuilt_time:,.0f} "
        f"frames/s: ratio {ratio:.3f} (goal >= 0.95) {'OK' if ratio >= 0.95 else 'MISSED'}"
    )
    results = [Result("training with the sampler / pre-built batches", f"{ratio:.3f}", ">= 0.95", ratio >= 0.95)]
    return results + cross_fitted(with_streams(data), train, config)


def with_streams(data: DB23) -> DB23:
    """``data`` with every subject's continuous recording: its valid segments back to back, in (class, repetition)
    order, so that each segment is a slice of the stream (as the tests' hand-made subjects)."""
    n_subjects, n_frames = data.emg.shape[0], data.emg.shape[3]
    cells = data.valid.nonzero()  # (subject, class, rep) in order
    start = torch.full(data.valid.shape, -1, dtype=torch.long)
    start[cells[:, 0], cells[:, 1], cells[:, 2]] = torch.arange(len(cells)) * n_frames
    streams = Streams(
        frames=data.emg[data.valid].reshape(-1, data.emg.shape[-1]),
        subject=cells[:, 0].repeat_interleave(n_frames),
        repetition=(cells[:, 2] + 1).repeat_interleave(n_frames),
        classes=cells[:, 1].repeat_interleave(n_frames),
        offset=torch.searchsorted(cells[:, 0].contiguous(), torch.arange(n_subjects)) * n_frames,
        segment_start=start,
    )
    return DB23(
        data.emg,
        data.valid,
        data.channel_mask,
        None,
        data.classes,
        data.subjects,
        data.device,
        frame_rate_hz=data.frame_rate_hz,
        streams=streams,
    )


def cross_fitted(data: DB23, train, config: ModelConfig) -> list[Result]:
    """Training steps of a cross-fitted AdaBN model (per-subject batches, reference frames): the hand-written
    batch-norm backward against autograd's, and against steps without reference frames."""
    torch.manual_seed(0)
    initial = build_model(config).train()
    batches = {}
    for frames in (REFERENCE_FRAMES, 0):
        sampler = ContrastiveSampler(data, train, GROUPS, seed=0, per_subject=True, reference_frames=frames)
        batches[frames] = [sampler.draw() for _ in range(REFERENCE_STEPS)]
    variants = {"hand-written": reference_norm, "autograd": reference_norm_autograd, "no reference": reference_norm}
    weights = {}

    def train_from_scratch(name: str) -> None:
        ReferenceBatchNorm1d.normalise = staticmethod(variants[name])
        model = copy.deepcopy(initial)
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
        torch.manual_seed(1)  # dropout
        for batch in batches[0 if name == "no reference" else REFERENCE_FRAMES]:
            logits = model.group_logits(batch.x, batch.classes, batch.present, batch.reference)
            loss = contrastive_loss(logits, batch.present)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        weights.setdefault(name, []).append(model.state_dict())

    seconds = {name: [] for name in variants}
    try:
        for _ in range(3):  # interleaved
            for name in variants:
                seconds[name].append(best_of(lambda name=name: train_from_scratch(name), 1))
    finally:
        ReferenceBatchNorm1d.normalise = staticmethod(reference_norm)
    best = {name: min(times) / REFERENCE_STEPS for name, times in seconds.items()}
    same = all(
        torch.equal(ours[key], theirs[key])
        for ours, theirs in zip(weights["hand-written"], weights["autograd"], strict=True)
        for key in theirs
    )
    speedup = best["autograd"] / best["hand-written"]
    rows = GROUPS * len(data.classes)
    cost = best["hand-written"] / best["no reference"]
    print(
        f"== cross-fitted AdaBN training, {GROUPS} groups x 41 classes + {REFERENCE_FRAMES} reference frames per step "
        f"(best of 3, interleaved, {REFERENCE_STEPS} steps each)"
    )
    print(
        f"hand-written batch-norm backward {1 / best['hand-written']:.2f} batches/s, autograd's "
        f"{1 / best['autograd']:.2f} batches/s: {speedup:.2f}x, the same weights: {'yes' if same else 'NO'} "
        f"(goal: bit for bit, faster) {'OK' if same and speedup > 1 else 'MISSED'}"
    )
    print(
        f"without reference frames {1 / best['no reference']:.2f} batches/s: a step with them costs {cost:.2f}x, "
        f"for {(rows + REFERENCE_FRAMES) / rows:.2f}x the rows"
    )
    return [
        Result(
            "cross-fitted training, hand-written / autograd batch norm",
            f"{speedup:.2f}x, {1 / best['hand-written']:.2f} batches/s, same weights: {'yes' if same else 'NO'}",
            "same weights, > 1x",
            same and speedup > 1,
        )
    ]


if __name__ == "__main__":
    main()
