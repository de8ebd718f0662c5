"""Training throughput with the DB23 sampler ÷ the same training step on batches already built in memory.

Goal ≥ 0.95: drawing batches must not be what limits training. Prints the absolute frames/s too.
"""

import torch

from contrastive_prosthetics.models import ModelConfig, build_model, contrastive_loss

from .results import Result
from .sampler_speed import full_size_db23
from .timing import best_of

GROUPS, STEPS = 32, 30


def main() -> list[Result]:
    data = full_size_db23()
    train = data.select(repetitions=[1, 3, 4])
    config = ModelConfig(kind="contrastive", n_channels=12, n_classes=len(data.classes))
    torch.manual_seed(0)
    model = build_model(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sampler = data.contrastive_sampler(train, GROUPS, seed=0, per_subject=True)
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
    return [Result("training with the sampler / pre-built batches", f"{ratio:.3f}", ">= 0.95", ratio >= 0.95)]


if __name__ == "__main__":
    main()
