"""A training run's batches: the sampler that draws them (groups of one frame of every class, from the training
repetitions' clean segments or their whole stream) and the augmenter that records them as other arms would."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .augmentation import BatchAugmenter
from .sampling import ContrastiveSampler
from .stream_sampling import StreamSampler, guard_width

if TYPE_CHECKING:
    from .train import Setting


def training_sampler(setting: Setting, seed: int) -> ContrastiveSampler | StreamSampler:
    """Groups of one frame of every class, from the training repetitions' clean segments or their whole stream."""
    settings = setting.settings
    # AdaBN normalises each subject with its own statistics at test time, so training batches come from one
    # subject each and batch norm learns within-subject statistics; without it, batches mix subjects.
    # A model that will adapt on a subject's continuous recording trains with batch statistics from it too.
    reference = settings.reference_frames if setting.adabn and setting.adaptation == "cross_fitted" else 0
    shape = dict(per_subject=setting.adabn, context=setting.config.context, reference_frames=reference)
    train = setting.selections.train
    if settings.frames == "stream":
        guard = guard_width(settings.guard_ms, setting.data.frame_rate_hz)
        onset = settings.onset_guard(setting.data)
        return StreamSampler(
            setting.data, train, settings.groups, seed=seed, guard_frames=guard, onset_guard_frames=onset, **shape
        )
    return ContrastiveSampler(setting.data, train, settings.groups, seed=seed, **shape)


def training_augmenter(setting: Setting, seed: int) -> BatchAugmenter:
    """``training.augmentation`` of the setting's training batches, seeded from the run's seed (off: batches pass as
    they are): training batches only; everything that scores a model reads the recordings as recorded."""
    return BatchAugmenter(setting.settings.augmentation, seed, setting.normalisation, setting.data.channel_mask)
