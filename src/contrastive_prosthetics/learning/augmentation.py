"""Training batches as another arm might record them (``training.augmentation``): what differs between arms.

A new user's electrodes sit where the training subjects' did only roughly: an armband of electrodes equally spaced
around the forearm (DB1's first eight Otto Bock electrodes, DB2's and DB3's first eight Delsys ones) can be rotated
by up to one electrode, and each electrode's gain (skin contact, fat, the exact spot over the muscle) differs from
arm to arm. A network trained on few people can learn to rely on either; drawing both afresh for every training
batch teaches it not to:

``ring``         the number of leading channels that form the ring; every batch's ring is rolled by one shift drawn
                 uniformly from [-ring_shift, ring_shift] electrodes (the same for every frame of the batch, context
                 frames and reference frames included). Channels after the ring (DB1's 9 and 10, over the finger
                 flexors and extensors) are never moved. A dead channel rotates with the ring: it is an electrode
                 that records nothing, wherever it lands, so it stays zero at its new place.
``gain_jitter``  the std of a per-channel log-gain: every channel's raw amplitude is multiplied by
                 g_c = exp(N(0, gain_jitter)), one draw per channel per batch (a per-subject batch under AdaBN is one
                 person, so the gain is one arm's).

The samplers deliver frames already normalised (:meth:`.dataset.DB23.normalised`), so the change is made exactly in
the raw domain and normalised again: the frame's raw amplitude comes back from the normalisation's inverse, is
multiplied by the gain and rotated, and is normalised with the statistics of the channel it lands on, as a new arm's
frame would be. (Adding log g_c / std_c in the normalised log domain would be exact only far above the log floor:
log(g x + eps) is not log g + log(x + eps).) Only training batches are changed: validation, selection, the rest
calibration, evaluation and the controller see the recordings as recorded. With both off (``ring`` null or
``ring_shift`` 0, and ``gain_jitter`` 0) batches are the sampler's own, and no random number is drawn.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ..core.errors import InputError
from .dataset import Normalisation
from .sampling import ContrastiveBatch

KEY = "training.augmentation"


@dataclass(frozen=True)
class ArmDraw:
    """One batch's arm: the ring's shift in electrodes and every channel's gain (None: no gain)."""

    shift: int
    gain: torch.Tensor | None  # [channel]


@dataclass(frozen=True)
class Augmentation:
    """``training.augmentation`` (see the module); the defaults are config.yaml's: off."""

    ring: int | None = None
    ring_shift: int = 1
    gain_jitter: float = 0.0

    @classmethod
    def from_config(cls, section: dict | None) -> Augmentation:
        """From the ``training.augmentation`` section (None or absent keys: config.yaml's defaults); an unknown key,
        a wrong type or a negative value is an :class:`InputError` naming the key."""
        section = section or {}
        unknown = sorted(set(section) - {field.name for field in fields(cls)})
        if unknown:
            raise InputError(
                f"{KEY}: unknown key(s) {unknown}; its keys are ring, ring_shift and gain_jitter "
                "(docs/configuration.md)"
            )
        augmentation = cls(**section)
        ring, shift = augmentation.ring, augmentation.ring_shift
        if ring is not None and (isinstance(ring, bool) or not isinstance(ring, int) or ring < 2):
            raise InputError(
                f"{KEY}.ring = {ring!r}: must be null (no rotation) or the number of leading electrodes that form "
                "the ring, 2 or more"
            )
        if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
            raise InputError(f"{KEY}.ring_shift = {shift!r}: must be a whole number of electrodes, 0 or more")
        jitter = augmentation.gain_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not jitter >= 0:
            raise InputError(f"{KEY}.gain_jitter = {jitter!r}: must be a number, 0 (no gain) or more")
        return replace(augmentation, gain_jitter=float(jitter))

    @property
    def rotates(self) -> bool:
        return self.ring is not None and self.ring_shift > 0

    @property
    def enabled(self) -> bool:
        return self.rotates or self.gain_jitter > 0

    def check_channels(self, n_channels: int) -> None:
        """An :class:`InputError` when the ring holds more channels than the data have."""
        if self.ring is not None and self.ring > n_channels:
            raise InputError(
                f"{KEY}.ring = {self.ring} is more than the {n_channels} channels of the data: set it to the number "
                "of leading electrodes equally spaced around the forearm (DB1, DB2, DB3: 8), or null"
            )

    def draw(self, n_channels: int, generator: torch.Generator) -> ArmDraw:
        """One batch's shift (when rotating) then gains (when jittering), from ``generator`` (a CPU one)."""
        shift = 0
        if self.rotates:
            shift = int(torch.randint(-self.ring_shift, self.ring_shift + 1, (1,), generator=generator))
        gain = None
        if self.gain_jitter > 0:
            gain = torch.exp(torch.randn(n_channels, generator=generator) * self.gain_jitter)
        return ArmDraw(shift, gain)


def augmentation_generator(seed: int) -> torch.Generator:
    """The run's augmentation draws: a CPU generator seeded from the run's seed, apart from the sampler's stream."""
    derived = np.random.SeedSequence([seed, zlib.crc32(b"augmentation")]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(derived))


def ring_order(n_channels: int, ring: int | None, shift: int) -> torch.Tensor:
    """[channel] the channel each position reads after the ring is rolled by ``shift``: torch.roll of the ring."""
    order = torch.arange(n_channels)
    if ring is not None and shift:
        order[:ring] = (order[:ring] - shift) % ring
    return order


def as_another_arm(
    x: torch.Tensor, draw: ArmDraw, ring: int | None, normalisation: Normalisation, live: torch.Tensor
) -> torch.Tensor:
    """Normalised frames ``x`` [..., channel] (``live`` [..., channel] broadcastable, False on dead channels) as the
    arm of ``draw`` records them, normalised: normalise(roll(g · raw)), dead channels zero (see the module)."""
    raw = normalisation.inverse(x)
    if draw.gain is not None:
        raw = raw * draw.gain.to(x.device)
    order = ring_order(x.shape[-1], ring, draw.shift).to(x.device)
    raw, live = raw.index_select(-1, order), live.index_select(-1, order)
    return torch.where(live, normalisation.apply(raw), 0.0).to(x.dtype)


class BatchAugmenter:
    """Every training batch as another arm records it (see the module), from a generator seeded by ``seed``: the
    contrastive groups and the batch's reference frames get the same arm (one subject's recording, so that the batch
    norm statistics of the reference match the groups'). Off, it hands back the batch itself and draws nothing."""

    def __init__(
        self, augmentation: Augmentation, seed: int, normalisation: Normalisation | None, channel_mask: torch.Tensor
    ):
        self.augmentation = augmentation
        if not augmentation.enabled:
            return
        augmentation.check_channels(channel_mask.shape[-1])
        if normalisation is None:
            raise InputError(f"{KEY} needs the normalisation of the training selection: none was given")
        self.normalisation, self.channel_mask = normalisation, channel_mask
        self.generator = augmentation_generator(seed)

    def __call__(self, batch: ContrastiveBatch) -> ContrastiveBatch:
        if not self.augmentation.enabled:
            return batch
        draw = self.augmentation.draw(self.channel_mask.shape[-1], self.generator)
        ring, norm = self.augmentation.ring, self.normalisation
        mask = self.channel_mask.to(batch.x.device)
        live = mask[batch.subjects]  # [group, class, channel]
        if batch.x.dim() == 4:  # [group, class, context, channel]
            live = live[:, :, None]
        reference = batch.reference
        if reference is not None:  # per-subject batches only: the subject of every present frame
            subject_live = mask[batch.subjects[batch.present][0]]
            reference = as_another_arm(reference, draw, ring, norm, subject_live)
        return replace(batch, x=as_another_arm(batch.x, draw, ring, norm, live), reference=reference)
