"""The controller's decision rule (:mod:`.decisions`) for many stretches, gesture subsets and vote lengths at once:
what the stream evaluation and the rest calibration decide with, the same bits as :func:`.decisions.decide` called
once per stretch, subset and vote length (tests compare them).

Stretches are laid end to end and decided in one call, the vote restarting at each (``starts``); subsets with the
same number of allowed classes are decided together on just their classes' columns; the per-frame predictions and
their running vote counts are computed once for every vote length, and the score sums that break tied votes only
at the tied frames (:func:`.decisions.window_score_sums`).
"""

from __future__ import annotations

import torch

from .decisions import vote, window_score_sums

CHUNK_ELEMENTS = 2**23  # subsets × frames × classes per chunk of the vote: bounds memory on long recordings


def stretch_offsets(n_frames: int, starts: torch.Tensor) -> torch.Tensor:
    """[frame] frames since the start of its stretch, for stretches laid end to end that start at ``starts``."""
    first = torch.zeros(n_frames, dtype=torch.long)
    first[starts] = starts
    return torch.arange(n_frames) - first.cummax(0).values


def decide_subsets(
    logits: torch.Tensor, allowed: torch.Tensor, vote_frames: list[int], starts: torch.Tensor | None = None
) -> dict[int, torch.Tensor]:
    """:func:`.decisions.decide` for many subsets and vote lengths at once: logits [frame, class] and allowed
    [subset, class] → {vote length: decisions [subset, frame]}. ``starts`` (default: frame 0) are the frames where
    a stretch starts and the controller restarts, its vote emptied: many short stretches decided in one call.

    Each subset's classes are its columns in ascending class order, so that the first maximum is still the lowest
    class index: a subset of k gestures costs k + 1 columns, not every class."""
    n_subsets, n_frames = len(allowed), len(logits)
    starts = torch.zeros(1, dtype=torch.long) if starts is None else starts
    offsets = stretch_offsets(n_frames, starts)
    # A vote counts the frames from max(t + 1 - n, its stretch start) to t: the difference of two running counts.
    frame = torch.arange(n_frames)
    since = {votes: torch.maximum(frame + 1 - max(votes, 1), frame - offsets) for votes in vote_frames}
    decisions = {votes: torch.empty((n_subsets, n_frames), dtype=torch.long) for votes in vote_frames}
    sizes = allowed.sum(1)
    for size in sizes.unique().tolist():
        rows = (sizes == size).nonzero().squeeze(1)
        step = max(1, CHUNK_ELEMENTS // max(n_frames * size, 1))
        for first in range(0, len(rows), step):
            chosen = rows[first : first + step]
            # Each subset's classes, ascending: the indices of its True entries in order.
            columns = allowed[chosen].nonzero()[:, 1].view(len(chosen), size)
            predictions = logits[:, columns].permute(1, 0, 2).argmax(2)  # [subset, frame] among its columns
            cumulative = torch.zeros((len(chosen), n_frames + 1, size), dtype=torch.int32)
            cumulative[:, 1:] = torch.nn.functional.one_hot(predictions, size).cumsum(1, dtype=torch.int32)
            for votes in vote_frames:
                if max(votes, 1) == 1:  # a vote of one frame is its prediction (decide's tie-break never acts)
                    decisions[votes][chosen] = columns.gather(1, predictions)
                    continue
                counts = cumulative[:, 1:] - cumulative[:, since[votes]]  # the votes inside the window
                tied = counts == counts.amax(2, keepdim=True)
                local = counts.argmax(2)  # the first maximum: the decision wherever the vote has one winner
                # Where several classes share the most votes, the larger summed score wins, then the lower index.
                subset, frame = (tied.sum(2) > 1).nonzero(as_tuple=True)
                if len(frame):
                    tied_frames, row = frame.unique(return_inverse=True)
                    sums = window_score_sums(logits, tied_frames, votes, offsets)
                    local[subset, frame] = vote(counts[subset, frame], sums[row[:, None], columns[subset]])
                decisions[votes][chosen] = columns.gather(1, local)
    return decisions


def decide_stretches(logits: torch.Tensor, allowed: torch.Tensor, vote_frames: int, starts: torch.Tensor):
    """[frame] decisions of stretches laid end to end (logits [frame, class], each stretch starting at ``starts``),
    every one decided as :func:`.decisions.decide` decides it alone, among the ``allowed`` [class] classes."""
    return decide_subsets(logits, allowed[None], [vote_frames], starts)[vote_frames][0]
