"""Training batches as other arms record them (training.augmentation): the electrode ring rotated, every channel's
gain drawn, the same arm for a batch's groups and its reference frames, nothing at all when off."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import yaml
from conftest import REPO
from test_train import ARCHITECTURE, FOLD, TRAINING, model_settings, settings_of, write_subject

from contrastive_prosthetics.config import ConfigError, validate_config
from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.learning import augmentation as augmentation_module
from contrastive_prosthetics.learning.augmentation import (
    ArmDraw,
    Augmentation,
    BatchAugmenter,
    as_another_arm,
    augmentation_generator,
)
from contrastive_prosthetics.learning.dataset import Normalisation
from contrastive_prosthetics.learning.sampling import ContrastiveBatch
from contrastive_prosthetics.learning.train import fold_setting, train_once
from contrastive_prosthetics.learning.training_settings import HyperParameters

CHANNELS, RING = 6, 4


def raw_amplitude(*shape: int, seed: int = 0) -> torch.Tensor:
    """RMS-like amplitudes over six channels, some near the log floor."""
    generator = torch.Generator().manual_seed(seed)
    return torch.exp(torch.randn(*shape, CHANNELS, generator=generator) * 1.5 - 2.0)


def normalisation(log_amplitude: bool = True, same_for_every_channel: bool = False) -> Normalisation:
    if same_for_every_channel:
        ones = torch.ones(CHANNELS)
        return Normalisation(0.5 * ones, 2.0 * ones, log_amplitude, 0.01 * ones)
    mean = torch.linspace(-3.0, -1.0, CHANNELS) if log_amplitude else torch.linspace(0.1, 0.5, CHANNELS)
    return Normalisation(mean, torch.linspace(0.5, 1.5, CHANNELS), log_amplitude, torch.linspace(0.005, 0.05, CHANNELS))


def batch_of(raw: torch.Tensor, norm: Normalisation, reference: torch.Tensor | None = None) -> ContrastiveBatch:
    """A per-subject batch of subject 0 (every channel live) from raw frames [group, class, (context,) channel]."""
    groups, classes = raw.shape[:2]
    return ContrastiveBatch(
        x=norm.apply(raw),
        classes=torch.arange(classes),
        present=torch.ones(groups, classes, dtype=torch.bool),
        subjects=torch.zeros(groups, classes, dtype=torch.long),
        reference=None if reference is None else norm.apply(reference),
    )


ALL_LIVE = torch.ones(1, CHANNELS, dtype=torch.bool)  # [subject, channel]


def rolled(x: torch.Tensor, shift: int) -> torch.Tensor:
    """The ring (the first RING channels) rolled by ``shift``, the other channels as they are."""
    return torch.cat((x[..., :RING].roll(shift, -1), x[..., RING:]), -1)


def test_a_rotation_rolls_the_ring_channels_and_leaves_the_others():
    norm = normalisation(same_for_every_channel=True)  # then a rotation of the raw is one of the normalised frames
    x = norm.apply(raw_amplitude(8, 5))
    for shift in (1, -1):
        out = as_another_arm(x, ArmDraw(shift, None), RING, norm, torch.ones(CHANNELS, dtype=torch.bool))
        torch.testing.assert_close(out, rolled(x, shift))
        assert not torch.allclose(out[..., :RING], x[..., :RING], atol=0.1)


def test_a_rotated_frame_is_normalised_with_the_statistics_of_the_channel_it_lands_on():
    norm, raw = normalisation(), raw_amplitude(8, 5)
    out = as_another_arm(norm.apply(raw), ArmDraw(1, None), RING, norm, torch.ones(CHANNELS, dtype=torch.bool))
    torch.testing.assert_close(out, norm.apply(raw[..., [3, 0, 1, 2, 4, 5]]))  # ring position j reads j - 1


@pytest.mark.parametrize("log_amplitude", [True, False])
def test_a_gain_multiplies_the_raw_amplitude_before_the_normalisation(log_amplitude):
    """The network's input is normalise(g · raw) exactly (up to rounding), at the log floor too, where adding
    log g / std in the normalised domain would not be."""
    norm, raw = normalisation(log_amplitude), raw_amplitude(8, 5)
    gain = torch.tensor([0.5, 0.8, 1.0, 1.25, 2.0, 3.0])
    out = as_another_arm(norm.apply(raw), ArmDraw(0, gain), RING, norm, torch.ones(CHANNELS, dtype=torch.bool))
    torch.testing.assert_close(out, norm.apply(raw * gain), rtol=1e-5, atol=1e-5)
    if log_amplitude:  # near the floor a gain moves the normalised input less than log g / std
        at_floor = norm.apply(torch.zeros(CHANNELS)) + torch.log(gain) / norm.std
        floor = as_another_arm(norm.apply(torch.zeros(CHANNELS)), ArmDraw(0, gain), None, norm, ALL_LIVE[0])
        torch.testing.assert_close(floor, norm.apply(torch.zeros(CHANNELS)), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(floor, at_floor)


def test_the_augmenter_gives_the_drawn_arm_to_the_groups_and_the_reference_frames_alike():
    """Reference frames that are the batch's own frames come out as the groups' frames do: one rotation and one gain
    per batch, drawn from the run's generator, shift then gains."""
    norm = normalisation()
    augmentation = Augmentation(ring=RING, ring_shift=1, gain_jitter=0.3)
    augmenter = BatchAugmenter(augmentation, seed=5, normalisation=norm, channel_mask=ALL_LIVE)
    expected = augmentation_generator(5)
    shifts = set()
    for draw in range(12):
        raw = raw_amplitude(4, 3, 2, seed=draw)  # [group, class, context, channel]
        batch = augmenter(batch_of(raw, norm, reference=raw[1]))  # reference: [frame, context, channel]
        arm = augmentation.draw(CHANNELS, expected)
        shifts.add(arm.shift)
        torch.testing.assert_close(batch.x, norm.apply(rolled(raw * arm.gain, arm.shift)), rtol=1e-5, atol=1e-5)
        assert torch.equal(batch.reference, batch.x[1])
    assert shifts == {-1, 0, 1}


def test_dead_channels_stay_zero_and_rotate_with_the_ring():
    norm = normalisation()
    mask = torch.tensor([[True, True, False, True, True, False]])  # electrode 2 (in the ring) and 5 (outside) dead
    raw = raw_amplitude(4, 3, seed=1)
    batch = batch_of(raw, norm)
    batch = dataclasses.replace(batch, x=torch.where(mask[0], batch.x, 0.0))
    augmentation = Augmentation(ring=RING, ring_shift=1, gain_jitter=0.5)
    augmenter = BatchAugmenter(augmentation, seed=0, normalisation=norm, channel_mask=mask)
    seen = set()
    for _ in range(12):
        out = augmenter(batch).x
        dead = [c for c in range(CHANNELS) if (out[..., c] == 0).all()]
        assert len(dead) == 2 and 5 in dead and dead[0] in (1, 2, 3)  # 2 rolled by -1, 0 or 1
        assert (out[..., [c for c in range(CHANNELS) if c not in dead]] != 0).all()
        seen.add(dead[0])
    assert seen == {1, 2, 3}


def test_augmentation_off_hands_back_the_batch_itself_and_draws_nothing(monkeypatch):
    def no_draws(seed):
        raise AssertionError("augmentation off made a generator")

    monkeypatch.setattr(augmentation_module, "augmentation_generator", no_draws)
    norm = normalisation()
    batch = batch_of(raw_amplitude(4, 3), norm, reference=raw_amplitude(5))
    state = torch.random.get_rng_state()
    for off in (Augmentation(), Augmentation(ring=RING, ring_shift=0), Augmentation.from_config(None)):
        assert not off.enabled
        augmenter = BatchAugmenter(off, seed=0, normalisation=None, channel_mask=ALL_LIVE)
        assert augmenter(batch) is batch
    assert torch.equal(torch.random.get_rng_state(), state)
    assert Augmentation.from_config(yaml.safe_load((REPO / "config.yaml").read_text())["training"]["augmentation"]) == (
        Augmentation()
    )


def test_one_seed_gives_the_same_batches_and_another_seed_others():
    norm, augmentation = normalisation(), Augmentation(ring=RING, ring_shift=1, gain_jitter=0.2)
    batches = [batch_of(raw_amplitude(4, 3, seed=s), norm) for s in range(5)]

    def run(seed):
        augmenter = BatchAugmenter(augmentation, seed=seed, normalisation=norm, channel_mask=ALL_LIVE)
        return torch.stack([augmenter(batch).x for batch in batches])

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


@pytest.mark.parametrize(
    "section, message",
    [
        ({"ring": 8, "ringshift": 2}, r"training.augmentation: unknown key\(s\) \['ringshift'\]"),
        ({"ring": -8}, r"training.augmentation.ring = -8: must be null \(no rotation\) or"),
        ({"ring": 8, "ring_shift": -1}, r"training.augmentation.ring_shift = -1: must be a whole number"),
        ({"gain_jitter": -0.1}, r"training.augmentation.gain_jitter = -0.1: must be a number, 0"),
        ({"ring": 1}, r"training.augmentation.ring = 1: must be null .* 2 or more"),
        ({"ring": 8.5}, r"training.augmentation.ring = 8.5: must be null"),
    ],
)
def test_a_bad_augmentation_section_is_refused_with_its_key_named(section, message):
    with pytest.raises(InputError, match=message):
        Augmentation.from_config(section)
    with pytest.raises(InputError, match=message):
        settings_of(TRAINING | {"augmentation": section})


def test_a_ring_larger_than_the_channels_is_refused_with_the_key_the_value_and_the_channel_count():
    with pytest.raises(
        InputError, match=r"training.augmentation.ring = 7 is more than the 6 channels of the data.*DB1, DB2, DB3: 8"
    ):
        BatchAugmenter(Augmentation(ring=7), seed=0, normalisation=normalisation(), channel_mask=ALL_LIVE)
    config = yaml.safe_load((REPO / "config.yaml").read_text())  # synthetic DB2 and DB3: twelve electrodes
    config["training"]["augmentation"]["ring"] = 13
    with pytest.raises(ConfigError, match=r"training.augmentation.ring = 13 is more than the 12 electrodes of db"):
        validate_config(copy.deepcopy(config))
    config["training"]["augmentation"] = {"ring": 8, "ring_shift": 1, "gain_jitter": 0.2, "gain": 1}
    with pytest.raises(ConfigError, match=r"training.augmentation: Additional properties .*'gain'"):
        validate_config(config)


def test_db1s_model_for_new_users_rotates_its_eight_ring_electrodes_and_jitters_every_gain():
    db1 = yaml.safe_load((REPO / "config" / "db1.yaml").read_text())
    entry = db1["models"]["contrastive_transfer"]
    assert Augmentation.from_config(entry["augmentation"]) == Augmentation(ring=8, ring_shift=1, gain_jitter=0.2)
    assert "augmentation" not in db1["training"]  # the within-subject models train on the recordings as recorded
    settings = settings_of(TRAINING).for_model(entry)
    assert settings.augmentation == Augmentation(ring=8, ring_shift=1, gain_jitter=0.2)
    assert settings.normalisation == "per_subject" and settings_of(TRAINING).normalisation == "pooled"


def test_a_models_own_ring_is_checked_against_the_electrodes():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["models"]["contrastive_adabn"]["augmentation"] = {"ring": 13, "ring_shift": 1, "gain_jitter": 0.0}
    with pytest.raises(ConfigError, match=r"models.contrastive_adabn.augmentation.ring = 13 is more than the 12"):
        validate_config(config)


def test_training_with_augmentation_runs_and_trains_other_weights_than_without(tmp_path):
    """A cross-fitted AdaBN model (reference frames in every batch) on three tiny subjects, two short epochs each."""
    paths = [write_subject(tmp_path / f"s{s}.pt", s) for s in (1, 2, 3)]
    hyper = HyperParameters(learning_rate=3e-3, weight_decay=1e-4, dropout=0.0)
    weights = {}
    for name, section in {
        "off": {"ring": None, "ring_shift": 1, "gain_jitter": 0.0},
        "on": {"ring": RING, "ring_shift": 1, "gain_jitter": 0.2},
    }.items():
        settings = settings_of(TRAINING | {"steps_per_epoch": 4, "augmentation": section})
        setting, _ = fold_setting(
            paths, "m", model_settings("contrastive", True), ARCHITECTURE, "f", FOLD, settings, 0, "cpu", None
        )
        model, history, _ = train_once(setting, hyper, epochs=2, seed=0)
        assert model is not None and all(torch.isfinite(torch.tensor(row["train_loss"])) for row in history)
        weights[name] = torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])
    assert not torch.equal(weights["off"], weights["on"])
