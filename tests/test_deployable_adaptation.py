"""The deployable adaptation protocols: ``setup`` adapts a user on the repetitions recorded before use (their training
ones), ``past`` each stretch of the continuous recording on the user's recording before it (as a controller updating
its statistics every so often holds them); neither reads a later frame nor a left-out repetition; the transductive
protocol (the other scored repetitions) stays available."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.learning import adaptation
from contrastive_prosthetics.learning.adaptation import past_positions, protocol_of
from contrastive_prosthetics.learning.dataset import DB23, Normalisation
from contrastive_prosthetics.learning.models import ModelConfig, batchnorm_statistics, build_model
from contrastive_prosthetics.learning.stream_scoring import StreamScoring, scored_stretches

N_CHANNELS = 12


@pytest.fixture
def raw(tmp_path) -> DB23:
    from test_dataset import fake_subject

    paths = [fake_subject(tmp_path / f"{s}.pt", "db2", s, 6, N_CHANNELS) for s in (1, 2)]
    return DB23.load(paths, device="cpu", with_streams=True)


def model(raw: DB23) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig("contrastive", N_CHANNELS, len(raw.classes), 8, 4, 16, 1, 0.0, 1)).eval()


def scoring(
    raw: DB23, protocol: str, update_frames: int = 1, left_out: dict | None = None, setup: dict | None = None
) -> StreamScoring:
    normalisation = Normalisation(torch.zeros(N_CHANNELS), torch.full((N_CHANNELS,), 1e6), False, torch.ones(12))
    return StreamScoring(
        raw=raw,
        normalised=raw,
        normalisation=normalisation,
        adabn=True,
        adaptation="cross_fitted",
        adaptation_frames=10_000,
        protocol=protocol,
        update_frames=update_frames,
        left_out=left_out or {},
        setup=setup or {},
    )


def stretch_networks(scored: StreamScoring, network, subject: int, repetition: int, pool: list[int]) -> list:
    """(positions, network) of every stretch of the repetition that ``scored`` scores, in order."""
    pairs = scored.networks(network, subject, repetition, pool)
    return [(positions, adapted) for adapted, stretches in pairs for positions in stretches]


def test_the_past_is_every_frame_of_the_user_before_the_last_update_outside_left_out_repetitions(raw):
    streams, subject = raw.streams, 1
    first = int(streams.offset[subject])
    start = first + 450
    every, cut = past_positions(raw, subject, start, update_frames=1, left_out=[])
    assert cut == start and torch.equal(every, torch.arange(first, start)[streams.repetition[first:start] != 0])
    updated, cut = past_positions(raw, subject, start, update_frames=100, left_out=[2, 5])
    assert cut == first + 400  # the statistics of the update at 400 frames into the user's session
    assert updated.max() < cut and bool((streams.subject[updated] == subject).all())
    assert not bool(torch.isin(streams.repetition[updated], torch.tensor([0, 2, 5])).any())
    kept = torch.arange(first, cut)[~torch.isin(streams.repetition[first:cut], torch.tensor([0, 2, 5]))]
    assert torch.equal(updated, kept)


def test_no_later_frame_and_no_left_out_repetition_reaches_a_deployable_stretchs_statistics(raw):
    """Scaling every frame from a stretch's start on, and the left-out repetitions' frames before it, leaves the
    statistics it is scored with as they were; under the transductive protocol the same change moves them."""
    subject, repetition, pool = 1, 6, [1, 3, 4, 6]
    target = scored_stretches(raw, subject, [repetition])[9]  # gesture 9's: pool frames before it and after it
    start = int(target[0])

    def statistics(protocol: str, data: DB23) -> torch.Tensor:
        networks = stretch_networks(
            scoring(data, protocol, left_out={subject: [2, 5]}), model(data), subject, repetition, pool
        )
        (network,) = [network for positions, network in networks if positions[0] == start]
        return torch.cat([torch.cat(layer[:2]) for layer in batchnorm_statistics(network)])

    changed = copy.copy(raw)
    frames = raw.streams.frames.clone()
    later = torch.arange(len(frames)) >= start
    left_out = torch.isin(raw.streams.repetition, torch.tensor([2, 5])) & (raw.streams.subject == subject)
    frames[later | left_out] *= 5
    changed.streams = replace(raw.streams, frames=frames)
    assert torch.equal(statistics("past", raw), statistics("past", changed))
    assert not torch.equal(statistics("transductive", raw), statistics("transductive", changed))


def test_a_stretch_with_too_little_recording_before_it_is_not_scored(raw):
    """The user's first stretches come before two seconds of their recording: a controller has nothing of theirs
    to adapt on, so they are left out; transductive scores every stretch."""
    subject = 0
    stretches = {r: scored_stretches(raw, subject, [r]) for r in range(1, 7)}
    every = [p for r in stretches for p in stretches[r]]
    earliest = min(every, key=lambda positions: positions[0])
    network = model(raw)
    past = [p for r in stretches for p, _ in stretch_networks(scoring(raw, "past"), network, subject, r, [])]
    transductive = [
        p for r in stretches for p, _ in stretch_networks(scoring(raw, "transductive"), network, subject, r, [1, 2])
    ]
    assert len(transductive) == len(every) > len(past) > 0
    assert not any(np.array_equal(p, earliest) for p in past)
    first = int(raw.streams.offset[subject])
    assert all(p[0] - first >= adaptation.MIN_PAST_S * raw.frame_rate_hz for p in past)


def test_the_protocol_a_model_is_scored_under():
    assert protocol_of(False, "none", "setup") == "none"
    assert protocol_of(True, "cross_fitted", "past") == "past"
    assert protocol_of(True, "cross_fitted", "setup") == "setup"
    assert protocol_of(True, "cross_fitted", "transductive") == "transductive"
    assert protocol_of(True, "scored_frames", "setup") == "transductive"  # it reads the scored frames
    with pytest.raises(InputError, match=r"evaluation\.adaptation_protocol"):
        protocol_of(True, "cross_fitted", "causal")


def test_setup_adapts_a_user_on_their_setup_repetitions_alone_and_a_user_without_any_on_their_past(raw):
    """Every stretch of a user with setup repetitions is scored by one network adapted on exactly those: scaling
    every other frame of theirs leaves it as it was, scaling a setup repetition moves it. A user without setup
    repetitions is scored as past (their first stretches left out)."""
    subject, setup = 1, {1: [1, 3, 4]}

    def networks(data: DB23, protocol: str = "setup") -> list:
        by_repetition = [
            stretch_networks(scoring(data, protocol, setup=setup), model(data), s, r, [2, 5])
            for s in (0, 1)
            for r in (2, 5)
        ]
        return by_repetition

    def statistics(network) -> torch.Tensor:
        return torch.cat([torch.cat(layer[:2]) for layer in batchnorm_statistics(network)])

    plain = networks(raw)
    user = [statistics(n) for rows in plain[2:] for _, n in rows]  # subject 1, repetitions 2 and 5
    assert all(torch.equal(user[0], other) for other in user)
    every_stretch = sum(len(scored_stretches(raw, 0, [r])) for r in (2, 5))
    assert 0 < sum(len(rows) for rows in plain[:2]) < every_stretch  # subject 0: past, the earliest left out

    def scaled(where: torch.Tensor) -> DB23:
        changed, frames = copy.copy(raw), raw.streams.frames.clone()
        frames[where] *= 5
        changed.streams = replace(raw.streams, frames=frames)
        return changed

    mine = raw.streams.subject == subject
    in_setup = torch.isin(raw.streams.repetition, torch.tensor(setup[subject]))
    others = networks(scaled(mine & ~in_setup))
    assert torch.equal(statistics(others[2][0][1]), user[0])
    moved = networks(scaled(mine & in_setup))
    assert not torch.equal(statistics(moved[2][0][1]), user[0])
