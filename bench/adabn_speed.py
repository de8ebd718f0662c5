"""AdaBN on one subject's adaptation stretch (training.adaptation_frames = 10,000 frames, the default encoder:
64 maps, two 512-wide layers): the encoder run once, carrying each batch from layer to layer, against the first
version, which ran the whole encoder once per batch-norm layer. Cross-fitted models adapt once per test
repetition and per validation pass, so this was most of a cross-fitted training job's scoring time. Goal: the
same statistics bit for bit, faster by about the number of batch-norm layers (4).
"""

import copy

import torch

from contrastive_prosthetics.learning.models import (
    ContrastiveModel,
    ModelConfig,
    adapt_batchnorm,
    adapt_batchnorm_per_layer,
    batchnorm_layers,
)

from .results import Result
from .timing import best_of

FRAMES, CHANNELS, CLASSES = 10_000, 12, 41


def main() -> list[Result]:
    config = ModelConfig(kind="contrastive", n_channels=CHANNELS, n_classes=CLASSES, embedding_dim=16, conv_maps=64)
    model = ContrastiveModel(config)
    frames = torch.randn(FRAMES, CHANNELS, generator=torch.Generator().manual_seed(0))
    one_pass, per_layer = copy.deepcopy(model), copy.deepcopy(model)
    print(
        f"== AdaBN, {FRAMES:,} frames, {len(batchnorm_layers(model))} batch-norm layers, "
        f"{torch.get_num_threads()} threads"
    )
    fast = best_of(lambda: adapt_batchnorm(one_pass, frames), 3)
    slow = best_of(lambda: adapt_batchnorm_per_layer(per_layer, frames), 3)
    same = all(
        torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)
        for a, b in zip(batchnorm_layers(one_pass), batchnorm_layers(per_layer), strict=True)
    )
    print(f"one pass: {fast:.3f} s; once per layer: {slow:.3f} s; speed-up {slow / fast:.1f}x; same statistics: {same}")
    return [
        Result(
            "AdaBN speed-up (one encoder pass)", f"{slow / fast:.1f}x", ">= 2x, identical", slow / fast >= 2 and same
        )
    ]


if __name__ == "__main__":
    main()
