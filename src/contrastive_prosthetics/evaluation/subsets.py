"""Subset-size accuracy: the user picks k gestures (rest is added), the classifier chooses among just those.

For k = 1..K, ``trials`` random subsets per k (:func:`.subset_scores.draw_subsets`, the same for every model and
fold with one seed: paired comparisons). Per subset every frame's prediction is its argmax over the subset's
classes, windows are majority-voted (:mod:`.voting`), and the windows whose true class is in the subset are scored
(:func:`.subset_scores.subset_metrics`).
:func:`straightforward_subset_size_accuracy` computes exactly that, one subset at a time: the reference.

Subset accuracy is evaluated without an argmax over every frame for every subset (the full evaluation has 5760
subsets of 420 k frames × 41 classes). A frame predicts its true class y in subset S iff no class of S beats y.
A frame where y ranks first ("certain") thus predicts y in every subset holding y, and a window whose certain
frames are a strict majority is right in every subset holding its class. Only the other ("uncertain") windows
are worked out per subset, many subsets at once, with classes as bits of int64 masks: y's votes are the frames
whose mask of classes beating y misses S, one AND per frame. A strict majority is right and no vote is wrong;
for the rest ("contested") the window's rivals, the classes most often beating y, are counted the same way
(a rival gets a frame's vote iff it is in S, beats y there and no class of S beats it there) until one outvotes
y (wrong) or no class left beats y in enough frames to draw level (right). The few pairs still open are voted
in full: a frame's prediction is the first class of its score ranking, cut just below y, that lies in S. The
numbers are exactly those of the straightforward per-subset masked argmax and vote,
which the tests compare them against.

The rest false activation counts the test rest windows when they are given (:mod:`.rest_windows`), scored per
subset by the same code as the segments, and the rest segments otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ..learning.decisions import vote
from .subset_scores import draw_subsets as draw_subsets
from .subset_scores import subset_frame, subset_membership, subset_metrics
from .voting import (
    checked_scores,
    majority_vote,
    rest_index,
    window_frame_matrix,
    window_ids,
    window_score_sums,
)

BITS_PER_WORD = 63  # class bit masks live in int64 words; the sign bit stays unused so shifts never overflow
# Elements per chunk of the subset evaluation: large enough to amortise each tensor op's overhead, small
# enough to stay in cache and to reuse memory rather than fault in fresh pages for every chunk.
CHUNK_ELEMENTS = 1 << 20
PAIR_CHUNK_ELEMENTS = 1 << 21  # contested pairs are settled in chunks of about this many frames
BLOCK_PAIRS = 1 << 22  # (trial, uncertain window) pairs held at once
MAX_RIVALS = 8  # rivals examined one by one before a contested pair is voted in full


def beats_true_class(scores: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """[frame, class]: does the class beat the frame's true class y in an argmax over any set holding both?

    It does when its logit is larger, or equal with a lower class index (``torch.argmax`` takes the first).
    """
    truth = scores.gather(1, label[:, None])
    lower = torch.arange(scores.shape[1]) < label[:, None]
    return torch.where(lower, scores >= truth, scores > truth)


def _bit_masks(flags: torch.Tensor) -> torch.Tensor:
    """[..., C] booleans as [..., words] int64 bit masks, class c at bit c % 63 of word c // 63."""
    n_classes = flags.shape[-1]
    words = -(-n_classes // BITS_PER_WORD)
    rows = flags.reshape(-1, n_classes)
    masks = torch.empty(len(rows), words, dtype=torch.long)
    # In chunks of rows: the int64 bits take 8 bytes per flag, more memory than anything else here.
    for chunk in _chunks(len(rows), max(1, CHUNK_ELEMENTS // (words * BITS_PER_WORD))):
        padded = torch.nn.functional.pad(rows[chunk], (0, words * BITS_PER_WORD - n_classes))
        bits = padded.view(-1, words, BITS_PER_WORD).long() << torch.arange(BITS_PER_WORD)
        masks[chunk] = bits.sum(-1)  # distinct powers of two: the sum is the bitwise or
    return masks.view(*flags.shape[:-1], words)


def straightforward_subset_size_accuracy(
    payload: dict,
    window_frames: int,
    subsets: dict[int, torch.Tensor],
    include_rest: bool = True,
    rest_windows: dict | None = None,
) -> pd.DataFrame:
    """The definition of :func:`subset_size_accuracy`, one subset at a time: slow, and kept as its reference.

    Per subset: argmax of every frame's logits over the subset's classes, majority vote per window, score the
    windows whose class is in the subset; the rest windows (``rest_windows``: a
    :func:`.rest_windows.rest_window_payload`) alike. The tests check the fast version against it; the benchmark
    times both.
    """
    membership, k, trial = subset_membership(subsets, payload["classes"], include_rest)
    correct, windows = _straightforward_correct(payload, window_frames, membership)
    rest = rest_index(payload["classes"])
    rest_counts = None
    if rest_windows is not None and rest is not None:
        rest_correct, rest_total = _straightforward_correct(rest_windows, window_frames, membership)
        rest_counts = rest_correct[:, rest], rest_total[rest]
    return subset_frame(k, trial, subset_metrics(correct, windows, membership, rest, rest_counts))


def _straightforward_correct(
    payload: dict, window_frames: int, membership: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """([trial, class] windows right in each subset, [class] windows), one subset at a time."""
    scores, label = checked_scores(payload), payload["label"]
    ids, n_windows = window_ids(payload, window_frames)
    scored = ids >= 0
    truth = torch.zeros(n_windows, dtype=torch.long).index_put_((ids[scored],), label[scored])
    n_classes = scores.shape[1]
    correct = torch.zeros(len(membership), n_classes, dtype=torch.long)
    for t, allowed in enumerate(membership):
        chosen = allowed.nonzero().squeeze(1)
        predictions = chosen[scores[:, chosen].argmax(1)]
        votes = majority_vote(predictions, scores, ids, n_windows, allowed)
        right = (votes == truth) & allowed[truth]
        correct[t] = torch.bincount(truth[right], minlength=n_classes)
    return correct, torch.bincount(truth, minlength=n_classes)


@dataclass(frozen=True)
class _SubsetTable:
    """What the subset evaluation needs from one payload, whatever the subset. Units are subjects.

    Per uncertain window (see the module's docstring), its rivals are the classes that most often beat its true
    class y, the most frequent first. A rival d gets a frame's vote in subset S iff d is in S, d beats y in that
    frame and no class of S beats d there; every other class gets at most as many votes as frames it beats y in.
    """

    window_frames: int
    n_classes: int
    n_units: int
    windows: torch.Tensor  # [unit * class] test windows
    certain: torch.Tensor  # [unit * class] windows right in every subset holding their class
    uncertain_key: torch.Tensor  # [uncertain window] unit * n_classes + class
    uncertain_class: torch.Tensor  # [uncertain window]
    beaten_by: torch.Tensor  # [uncertain window, frame, word] bit mask of the classes beating y
    rivals: torch.Tensor  # [rival, uncertain window]
    rival_beaten_by: torch.Tensor  # [rival, uncertain window, frame, word] classes beating the rival (all bits
    # set in frames where the rival ranks below y, as it can never be predicted there: y is in every S scored)
    rival_wins_ties: torch.Tensor  # [rival, uncertain window] the rival beats y in a vote tie
    unexamined_bound: torch.Tensor  # [rival, uncertain window] most frames any class after this rival beats y in
    ranked: torch.Tensor  # [uncertain window, frame, depth] classes by falling score, cut below y
    depth: torch.Tensor  # [uncertain window] ranks down to y in the window's worst frame
    score_sums: torch.Tensor | None  # [uncertain window, class] the vote's tie-breaker (None for single frames)


def _rival_beaten_by(window_scores: torch.Tensor, beaten: torch.Tensor, rivals: torch.Tensor) -> torch.Tensor:
    """[rival, window, frame, word] bit masks of the classes beating each rival.

    From the windows' [window, frame, class] logits and :func:`beats_true_class` flags, and [window, rival] classes.
    """
    n_windows, n_frames, n_classes = window_scores.shape
    words = -(-n_classes // BITS_PER_WORD)
    masks = torch.empty(rivals.shape[1], n_windows, n_frames, words, dtype=torch.long)
    # In chunks of windows: the flags are [window, frame, rival, class], rivals times the logits.
    for chunk in _chunks(n_windows, max(1, CHUNK_ELEMENTS // max(1, n_frames * rivals.shape[1] * n_classes))):
        per_frame = rivals[chunk, None, :].expand(-1, n_frames, -1)  # [window, frame, rival]
        rival_scores = window_scores[chunk].gather(2, per_frame)[..., None]
        lower = torch.arange(n_classes) < per_frame[..., None]
        # The rule of beats_true_class: a larger logit, or an equal one with a lower class index.
        candidates = window_scores[chunk, :, None]
        chunk_masks = _bit_masks(torch.where(lower, candidates >= rival_scores, candidates > rival_scores))
        rival_beats_truth = beaten[chunk].gather(2, per_frame)
        masks[:, chunk] = chunk_masks.masked_fill(~rival_beats_truth[..., None], -1).permute(2, 0, 1, 3)
    return masks


def _rivals_winning_ties(score_sums: torch.Tensor | None, truth: torch.Tensor, rivals: torch.Tensor) -> torch.Tensor:
    """[window, rival]: would the rival win a tie in votes with the true class? (See :func:`vote`.)"""
    if score_sums is None:  # single frames never tie: only the rival's count matters
        return torch.zeros_like(rivals, dtype=torch.bool)
    truth_sum, rival_sum = score_sums.gather(1, truth[:, None]), score_sums.gather(1, rivals)
    return (rival_sum > truth_sum) | ((rival_sum == truth_sum) & (rivals < truth[:, None]))


def subset_table(payload: dict, window_frames: int) -> _SubsetTable:
    scores, label, subject = checked_scores(payload), payload["label"], payload["subject"]
    n_classes, n_units = scores.shape[1], len(payload["subjects"])
    ids, n_windows = window_ids(payload, window_frames)
    frames = window_frame_matrix(ids, n_windows, window_frames)
    window_class = label[frames[:, 0]]
    window_key = subject[frames[:, 0]] * n_classes + window_class
    beaten = beats_true_class(scores, label)
    rank = beaten.sum(1)  # classes ranked above the true class
    certain = 2 * (rank[frames] == 0).sum(1) > window_frames
    uncertain = (~certain).nonzero().squeeze(1)
    uncertain_frames = frames[uncertain]
    uncertain_scores, uncertain_beaten = scores[uncertain_frames], beaten[uncertain_frames]
    depth = rank[uncertain_frames].amax(1) + 1 if len(uncertain) else torch.zeros(0, dtype=torch.long)
    ranking = torch.sort(uncertain_scores, dim=-1, descending=True, stable=True).indices

    beating_frames = uncertain_beaten.sum(1)  # [window, class] frames where the class beats y
    by_frequency = torch.sort(beating_frames, dim=1, descending=True, stable=True)
    n_rivals = min(MAX_RIVALS, n_classes - 1)
    rivals = by_frequency.indices[:, :n_rivals]
    sums = window_score_sums(scores, ids, n_windows)[uncertain] if window_frames > 1 else None

    units_classes = n_units * n_classes
    return _SubsetTable(
        window_frames=window_frames,
        n_classes=n_classes,
        n_units=n_units,
        windows=torch.bincount(window_key, minlength=units_classes),
        certain=torch.bincount(window_key[certain], minlength=units_classes),
        uncertain_key=window_key[uncertain],
        uncertain_class=window_class[uncertain],
        beaten_by=_bit_masks(uncertain_beaten),
        rivals=rivals.T.contiguous(),
        rival_beaten_by=_rival_beaten_by(uncertain_scores, uncertain_beaten, rivals),
        rival_wins_ties=_rivals_winning_ties(sums, window_class[uncertain], rivals).T.contiguous(),
        unexamined_bound=by_frequency.values[:, 1 : n_rivals + 1].T.contiguous(),
        ranked=ranking[..., : int(depth.max()) if len(depth) else 1].contiguous(),
        depth=depth,
        score_sums=sums,
    )


def _unhit_frames(beaten_by: torch.Tensor, subset_bits: torch.Tensor) -> torch.Tensor:
    """Frames (second last axis of ``beaten_by``, [..., frame, word]) where no class of the subset is set.

    ``subset_bits`` [..., word] broadcasts against ``beaten_by`` without its frame axis.
    """
    missed = (beaten_by[..., 0] & subset_bits[..., None, 0]) == 0
    for word in range(1, beaten_by.shape[-1]):
        missed &= (beaten_by[..., word] & subset_bits[..., None, word]) == 0
    # Summing bytes into bytes is the fastest count, when the frames per window allow it.
    return missed.view(torch.uint8).sum(-1, dtype=torch.uint8 if beaten_by.shape[-2] < 256 else torch.int16)


def _chunks(total: int, size: int):
    for start in range(0, total, size):
        yield slice(start, min(total, start + size))


def _full_votes_right(
    table: _SubsetTable, membership: torch.Tensor, trial: torch.Tensor, window: torch.Tensor
) -> torch.Tensor:
    """Is each (trial, uncertain window) pair's vote right? Every frame's prediction worked out: the last resort."""
    right = torch.empty(len(trial), dtype=torch.bool)
    by_depth = torch.argsort(table.depth[window], stable=True)  # similar depths together: little padding
    trial, window = trial[by_depth], window[by_depth]
    depth = table.depth[window]
    frames_per_window, n_classes = table.window_frames, table.n_classes
    start = 0
    while start < len(trial):
        # Size each chunk by the depth at its end, the largest in it.
        end = min(len(trial), start + max(1, CHUNK_ELEMENTS // (frames_per_window * int(depth[start]))))
        end = min(end, start + max(1, CHUNK_ELEMENTS // (frames_per_window * int(depth[end - 1]))))
        t, w = trial[start:end], window[start:end]
        ranked = table.ranked.index_select(0, w)[..., : int(depth[end - 1])]
        # The first ranked class in the subset; y, the last of every cut ranking, is in the subset.
        in_subset = membership.view(-1).take(t[:, None, None] * n_classes + ranked)
        predictions = ranked.gather(-1, in_subset.to(torch.uint8).argmax(-1, keepdim=True)).squeeze(-1)
        counts = torch.zeros(end - start, n_classes, dtype=torch.long)
        counts.scatter_add_(1, predictions, torch.ones_like(predictions))
        votes = vote(counts, table.score_sums.index_select(0, w))
        right[by_depth[start:end]] = votes == table.uncertain_class.index_select(0, w)
        start = end
    return right


def _contested_right(
    table: _SubsetTable,
    membership: torch.Tensor,
    subset_bits: torch.Tensor,
    trial: torch.Tensor,
    window: torch.Tensor,
    truth_votes: torch.Tensor,
) -> torch.Tensor:
    """Is each contested (trial, uncertain window) pair's vote right? y has ``truth_votes`` votes.

    Rival by rival, most frequent first: a rival with more votes, or as many and the better tie-break, makes the
    pair wrong; once no class left unexamined beats y in enough frames to draw level, the pair is right. The
    few pairs still open after every rival are voted in full. (index_select rather than indexing with tensors:
    several times faster on the CPU.)
    """
    right = torch.zeros(len(trial), dtype=torch.bool)
    pair = torch.arange(len(trial))  # the open pairs' places in the arguments
    for place in range(len(table.rivals)):
        rival = table.rivals[place].index_select(0, window)
        rival_in_subset = membership.view(-1).index_select(0, trial * table.n_classes + rival)
        # A rival outside the subset has no votes: count only the others.
        counted = rival_in_subset.nonzero().squeeze(1)
        rival_votes = torch.zeros_like(truth_votes)
        rival_votes[counted] = _unhit_frames(
            table.rival_beaten_by[place].index_select(0, window.index_select(0, counted)),
            subset_bits.index_select(0, trial.index_select(0, counted)),
        ).to(rival_votes.dtype)
        wins_ties = table.rival_wins_ties[place].index_select(0, window)
        beaten = (rival_votes > truth_votes) | ((rival_votes == truth_votes) & wins_ties)
        unbeatable = ~beaten & (table.unexamined_bound[place].index_select(0, window) < truth_votes)
        right[pair[unbeatable]] = True
        still_open = (~beaten & ~unbeatable).nonzero().squeeze(1)
        pair, trial, window, truth_votes = (x.index_select(0, still_open) for x in (pair, trial, window, truth_votes))
        if not len(pair):
            return right
    right[pair] = _full_votes_right(table, membership, trial, window)
    return right


def _uncertain_windows_right(table: _SubsetTable, membership: torch.Tensor) -> torch.Tensor:
    """[trial, uncertain window]: scored (its class is in the subset) and right."""
    frames_per_window, n_uncertain = table.window_frames, len(table.uncertain_class)
    if n_uncertain == 0:  # every window is right wherever its class is chosen
        return torch.zeros((len(membership), 0), dtype=torch.bool)
    subset_bits = _bit_masks(membership)
    truth_votes = torch.empty(len(membership), n_uncertain, dtype=torch.int16)
    step = max(1, CHUNK_ELEMENTS // max(1, table.beaten_by.numel()))
    for chunk in _chunks(len(membership), step):
        truth_votes[chunk] = _unhit_frames(table.beaten_by[None], subset_bits[chunk, None])
    scored = membership[:, table.uncertain_class]
    half = frames_per_window // 2
    right = scored & (truth_votes > half)  # a strict majority
    # Neither a strict majority for y nor no vote at all: the other classes' votes decide.
    contested = (scored & (truth_votes > 0) & (truth_votes <= half)).view(-1).nonzero().squeeze(1)
    pairs_per_chunk = max(1, PAIR_CHUNK_ELEMENTS // max(1, table.beaten_by[0].numel()))
    for chunk in _chunks(len(contested), pairs_per_chunk):
        flat = contested[chunk]
        trial, window, votes = flat // n_uncertain, flat % n_uncertain, truth_votes.view(-1).index_select(0, flat)
        right.view(-1)[flat] = _contested_right(table, membership, subset_bits, trial, window, votes)
    return right


def subset_correct(table: _SubsetTable, membership: torch.Tensor) -> torch.Tensor:
    """[trial, unit * class] windows scored and right in each trial's subset."""
    per_class = membership.repeat(1, table.n_units)  # column unit * n_classes + class holds that class
    correct = per_class.to(torch.int32) * table.certain.to(torch.int32)
    # Blocks of trials bound the memory of the per-(trial, window) intermediates, whatever the model's accuracy.
    block = max(1, BLOCK_PAIRS // max(1, len(table.uncertain_class)))
    for trials in _chunks(len(membership), block):
        uncertain_right = _uncertain_windows_right(table, membership[trials])
        correct[trials].index_add_(1, table.uncertain_key, uncertain_right.to(torch.int32))
    return correct


def rest_window_right(rest_windows: dict, window_frames: int, membership: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """([trial, unit] rest windows decided as rest in each trial's subset, [unit] rest windows) of a
    :func:`.rest_windows.rest_window_payload`, scored per subset as the segments are."""
    n_units, n_classes = len(rest_windows["subjects"]), len(rest_windows["classes"])
    rest = rest_index(rest_windows["classes"])
    if window_ids(rest_windows, window_frames)[1] == 0:  # no rest window holds a whole vote window
        return torch.zeros((len(membership), n_units), dtype=torch.int32), torch.zeros(n_units, dtype=torch.long)
    table = subset_table(rest_windows, window_frames)
    right = subset_correct(table, membership).view(len(membership), n_units, n_classes)[:, :, rest]
    return right, table.windows.view(n_units, n_classes)[:, rest]


def subset_size_accuracy(
    payload: dict,
    window_frames: int,
    subsets: dict[int, torch.Tensor],
    include_rest: bool = True,
    rest_windows: dict | None = None,
) -> pd.DataFrame:
    """Accuracy when the classifier chooses among a subset of the gestures (plus rest), per drawn subset.

    ``subsets`` is :func:`draw_subsets`' output over the payload's gestures. For each subset every frame's
    prediction is its argmax over the subset's classes, windows of ``window_frames`` frames are majority-voted
    (1: per frame), and the windows whose true class is in the subset are scored. Columns k, trial, accuracy,
    balanced_accuracy (mean over the subset's tested classes of their recall), gesture_accuracy,
    rest_false_activation (over ``rest_windows``, a :func:`.rest_windows.rest_window_payload`, when given; else
    over the rest segments), n (windows scored), rest_windows (rest windows counted). Exactly the numbers of
    :func:`straightforward_subset_size_accuracy`, much faster (see the module's docstring).
    """
    membership, k, trial = subset_membership(subsets, payload["classes"], include_rest)
    table = subset_table(payload, window_frames)
    shape = (len(membership), table.n_units, table.n_classes)
    correct = subset_correct(table, membership).view(shape).sum(1)
    windows = table.windows.view(shape[1:]).sum(0)
    rest = rest_index(payload["classes"])
    rest_counts = None
    if rest_windows is not None and rest is not None:
        right, total = rest_window_right(rest_windows, window_frames, membership)
        rest_counts = right.sum(1), total.sum()
    return subset_frame(k, trial, subset_metrics(correct, windows, membership, rest, rest_counts))
