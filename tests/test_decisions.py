"""The one tie rule of every vote (learning/decisions.vote): the most votes, then the larger summed score, then the
lower class index; the controller, the stream metrics and the offline windows all reach it."""

from __future__ import annotations

import numpy as np
import torch

from contrastive_prosthetics.learning.batched_decisions import decide_subsets
from contrastive_prosthetics.learning.decisions import decide, decide_latest, vote


def test_a_tie_in_votes_goes_to_the_larger_sum_then_to_the_lower_index():
    counts = torch.tensor([[2, 2, 1], [1, 2, 2], [1, 1, 1], [0, 3, 0]])
    sums = torch.tensor([[1.0, 2.0, 9.0], [5.0, 3.0, 3.0], [0.5, 0.5, 0.5], [9.0, 0.0, 9.0]], dtype=torch.float64)
    assert vote(counts, sums).tolist() == [1, 1, 0, 1]


def test_a_class_not_allowed_never_wins_however_many_votes_it_has():
    counts, sums = torch.tensor([[5, 1, 1]]), torch.tensor([[9.0, 1.0, 2.0]])
    assert vote(counts, sums, torch.tensor([False, True, True])).tolist() == [2]


def test_a_tie_stays_among_the_tied_classes_when_their_sums_are_minus_infinity():
    counts = torch.tensor([[1, 2, 2]])
    sums = torch.tensor([[0.0, -torch.inf, -torch.inf]], dtype=torch.float64)
    assert vote(counts, sums).tolist() == [1]


def test_the_causal_vote_the_controller_and_the_subsets_break_ties_alike():
    """Integer logits make ties in votes and in sums common: decide, decide_latest (one frame at a time) and
    decide_subsets (many subsets at once) decide every frame alike."""
    generator = np.random.default_rng(3)
    scores = generator.integers(-2, 2, (300, 6)).astype(np.float32)
    logits, allowed = torch.from_numpy(scores), torch.tensor([True, True, False, True, True, False])
    for votes in (2, 4, 25):
        offline = decide(logits, allowed, votes)
        latest = [decide_latest(scores[max(0, t + 1 - votes) : t + 1], allowed.numpy(), votes) for t in range(300)]
        assert offline.tolist() == latest
        assert torch.equal(decide_subsets(logits, allowed[None], [votes])[votes][0], offline)


def test_tie_sums_at_the_tied_frames_alone_are_the_whole_recordings_bits():
    """window_score_sums sums only the frames asked for; each row must be the same float64 bits as summing every
    frame's window over the whole recording (the straightforward loop decide once ran), stretch restarts included."""
    from contrastive_prosthetics.learning.batched_decisions import stretch_offsets
    from contrastive_prosthetics.learning.decisions import window_score_sums

    logits = torch.tensor(np.random.default_rng(5).normal(0, 3, (200, 7)), dtype=torch.float32)
    offsets = stretch_offsets(200, torch.tensor([0, 37, 38, 120]))
    for votes in (1, 5, 25, 300):
        scores, whole = logits.double(), torch.zeros((200, 7), dtype=torch.float64)
        for back in range(min(votes, 200) - 1, -1, -1):
            whole[back:] += torch.where((offsets[back:] >= back)[:, None], scores[: 200 - back], 0.0)
        frames = torch.tensor([0, 1, 36, 37, 38, 39, 119, 150, 199])
        assert torch.equal(window_score_sums(logits, frames, votes, offsets), whole[frames]), votes
        assert torch.equal(window_score_sums(logits, frames, votes), window_score_sums(logits, frames, votes, None))


def test_the_rest_false_activation_of_stretches_laid_end_to_end_is_each_stretchs():
    from contrastive_prosthetics.learning.rest_bias import rest_false_activation

    generator = np.random.default_rng(8)
    stretches = [
        (torch.tensor(generator.integers(-2, 3, (n, 4)), dtype=torch.float32), generator.integers(0, 4, n))
        for n in (3, 40, 1, 17)
    ]
    every = torch.ones(4, dtype=torch.bool)
    for votes, bias in ((0, 0.0), (5, 0.5), (25, -1.0)):
        false = frames = 0
        for logits, truth in stretches:  # the controller restarted at each stretch, one call each
            shifted = logits.clone()
            shifted[:, 0] += bias
            decided = decide(shifted, every, votes)
            false += int((decided[torch.from_numpy(truth == 0)] != 0).sum())
            frames += int((truth == 0).sum())
        assert rest_false_activation(stretches, 0, votes, bias) == (false / frames, frames)


def test_decide_equals_its_reference_that_sums_every_frame_and_the_controllers_latest_decision():
    """decide sums scores only where a vote is tied; the reference sums every frame's window; decide_latest skips
    the sums when one class leads. Integer logits make ties common."""
    from contrastive_prosthetics.learning.decisions import decide_summing_every_frame

    generator = np.random.default_rng(11)
    logits = torch.tensor(generator.integers(-2, 3, (300, 6)), dtype=torch.float32)
    for allowed in (torch.ones(6, dtype=torch.bool), torch.tensor([True, False, True, True, False, True])):
        for votes in (0, 1, 4, 25):
            decided = decide(logits, allowed, votes)
            assert torch.equal(decided, decide_summing_every_frame(logits, allowed, votes)), votes
            latest = [decide_latest(logits[: t + 1].numpy(), allowed.numpy(), votes) for t in range(len(logits))]
            assert latest == decided.tolist(), votes
