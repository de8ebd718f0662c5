"""What a prosthesis user gets from one model × fold, computed from its test logits (``logits.pt``).

Tables made by :func:`evaluate_payload`, each led by the columns model, adabn, fold, group:

    subset_accuracy  k, trial, accuracy, balanced_accuracy, n: the user picks k gestures (rest is always added),
                     the classifier chooses among just those classes, and windows of ``window_frames`` frames
                     are majority-voted; k = 1..K, ``trials`` random subsets per k, the same subsets for every
                     model and fold (paired comparisons)
    subset_exact     k, accuracy, balanced_accuracy: the expectation over all C(K, k) subsets, per frame
    voting           window_frames, window_ms, accuracy, balanced_accuracy, n over all classes
    metrics          level (frame | vote), metric, class, value
    confusion        level, true, predicted, count

Groups: all test frames, the intact and the amputee subjects, and each subject.

Definitions used throughout. A frame's prediction within a set of classes is the argmax of its logits over that
set; equal logits go to the lower class index, as ``torch.argmax`` does. A window is ``window_frames`` consecutive
frames of one (subject, class, repetition) segment; an incomplete trailing window is not scored. A window's vote
is its most frequent frame prediction; a tie is broken by the larger sum of the tied classes' logits over the
window's frames, and a tie in that sum by the lower class index. Accuracy counts windows (frames when
``window_frames`` is 1); balanced accuracy is the mean recall over the classes that have test windows.

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
:func:`straightforward_subset_size_accuracy`, which the tests compare them against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

REST = "rest"
LEADING_COLUMNS = ["model", "adabn", "fold", "group"]
PER_FRAME = ("logits", "label", "subject", "repetition", "frame")
FRAME_MS = 10  # logits.pt frames come at 100 Hz
LEVELS = ("frame", "vote")
BITS_PER_WORD = 63  # class bit masks live in int64 words; the sign bit stays unused so shifts never overflow
# Elements per chunk of the subset evaluation: large enough to amortise each tensor op's overhead, small
# enough to stay in cache and to reuse memory rather than fault in fresh pages for every chunk.
CHUNK_ELEMENTS = 1 << 20
PAIR_CHUNK_ELEMENTS = 1 << 21  # contested pairs are settled in chunks of about this many frames
BLOCK_PAIRS = 1 << 22  # (trial, uncertain window) pairs held at once
MAX_RIVALS = 8  # rivals examined one by one before a contested pair is voted in full


# ---------------------------------------------------------------------------------------------------------
# Classes, windows and votes


def _rest_index(classes: list[str]) -> int | None:
    return 0 if classes and classes[0] == REST else None


def _gesture_indices(classes: list[str]) -> torch.Tensor:
    start = 0 if _rest_index(classes) is None else 1
    return torch.arange(start, len(classes))


def _scores(payload: dict) -> torch.Tensor:
    """The payload's logits. NaN is refused: argmax takes it for the largest value, every comparison for none."""
    scores = payload["logits"]
    if torch.isnan(scores).any():
        raise ValueError(f"logits of {payload.get('model')}/{payload.get('fold')} contain NaN")
    return scores


def _segments(payload: dict) -> torch.Tensor:
    """Each frame's (subject, label, repetition) segment, numbered in that lexicographic order."""
    label, repetition = payload["label"], payload["repetition"]
    key = (payload["subject"] * (int(label.max()) + 1) + label) * (int(repetition.max()) + 1) + repetition
    return torch.unique(key, return_inverse=True)[1]


def window_ids(payload: dict, window_frames: int) -> tuple[torch.Tensor, int]:
    """Each frame's window: ``window_frames`` consecutive frames of one (subject, label, repetition) segment.

    Windows do not overlap and are numbered segment by segment in (subject, label, repetition) order, then in
    time. Frames of an incomplete trailing window get -1 and are not scored. ``frame`` must count 0, 1, ...
    within each segment (as in logits.pt); the rows may come in any order.
    """
    if window_frames < 1:
        raise ValueError(f"window_frames must be at least 1, not {window_frames}")
    frame = payload["frame"]
    if frame.numel() == 0:
        return torch.empty(0, dtype=torch.long), 0
    segment = _segments(payload)
    whole_windows = torch.bincount(segment) // window_frames  # a segment's length is its frame count
    first_window = torch.cumsum(whole_windows, 0) - whole_windows
    within = frame // window_frames
    ids = torch.where(within < whole_windows[segment], first_window[segment] + within, -1)
    return ids, int(whole_windows.sum())


def _window_frame_matrix(ids: torch.Tensor, n_windows: int, window_frames: int) -> torch.Tensor:
    """[window, frame] row indices of every window's frames (each scored window is complete)."""
    scored = (ids >= 0).nonzero().squeeze(1)
    return scored[torch.argsort(ids[scored], stable=True)].view(n_windows, window_frames)


def _window_score_sums(scores: torch.Tensor, ids: torch.Tensor, n_windows: int) -> torch.Tensor:
    """[window, class] sum of each class's logit over the window's frames: the vote's tie-breaker.

    Both subset evaluations take it from here, from the same payload, so they break ties in float sums alike.
    """
    scored = ids >= 0
    return torch.zeros(n_windows, scores.shape[1], dtype=scores.dtype).index_add_(0, ids[scored], scores[scored])


def _vote(counts: torch.Tensor, score_sums: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Most frequent class per row of ``counts``; ties go to the larger score sum, then to the lower index."""
    if allowed is not None:
        counts = counts.masked_fill(~allowed, -1)
    tied = counts == counts.amax(1, keepdim=True)
    tied_sums = score_sums.masked_fill(~tied, -math.inf)
    # Comparing against the tied classes' best sum (not taking a plain argmax) keeps the winner among the tied
    # classes even when their sums are -inf.
    winners = tied & (tied_sums == tied_sums.amax(1, keepdim=True))
    return winners.to(torch.uint8).argmax(1)  # argmax returns the first of equal maxima: the lower index


def majority_vote(
    predictions: torch.Tensor,
    scores: torch.Tensor,
    ids: torch.Tensor,
    n_windows: int,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each window's most frequent frame prediction: [n_windows] class indices.

    A tie between classes predicted equally often goes to the class with the larger summed score (its logit
    summed over the window's frames), among the tied classes only; a tie in that sum to the lower class index.
    Frames with id -1 take no part. Classes outside ``allowed`` (a [C] mask) never win.
    """
    n_classes = scores.shape[1]
    scored = ids >= 0
    counts = torch.bincount(ids[scored] * n_classes + predictions[scored], minlength=n_windows * n_classes)
    return _vote(counts.view(n_windows, n_classes), _window_score_sums(scores, ids, n_windows), allowed)


def _beaten(scores: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
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


# ---------------------------------------------------------------------------------------------------------
# Subsets


def draw_subsets(n_gestures: int, trials: int, seed: int) -> dict[int, torch.Tensor]:
    """For k = 1..n_gestures: [trials, n_gestures] masks of k gestures drawn uniformly without replacement.

    Each k has its own generator seeded by (seed, k) only, so every model and fold evaluated with one seed sees
    the very same subsets, and changing ``trials`` for one k leaves the others alone.
    """
    subsets = {}
    for k in range(1, n_gestures + 1):
        rng = np.random.default_rng(np.random.SeedSequence([seed, k]))
        order = rng.permuted(np.tile(np.arange(n_gestures), (trials, 1)), axis=1)  # a uniform permutation per row
        chosen = np.zeros((trials, n_gestures), dtype=bool)
        np.put_along_axis(chosen, order[:, :k], True, axis=1)
        subsets[k] = torch.from_numpy(chosen)
    return subsets


def _subset_membership(
    subsets: dict[int, torch.Tensor], classes: list[str], include_rest: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """([trial, class] mask of every subset's classes in ascending k, each trial's k, its number within k)."""
    gestures = _gesture_indices(classes)
    sizes = sorted(subsets)
    chosen = torch.cat([subsets[k] for k in sizes])
    if chosen.shape[1] != len(gestures):
        raise ValueError(f"subsets are over {chosen.shape[1]} gestures; the payload has {len(gestures)}")
    membership = torch.zeros(len(chosen), len(classes), dtype=torch.bool)
    membership[:, gestures] = chosen
    rest = _rest_index(classes)
    if include_rest and rest is not None:
        membership[:, rest] = True
    k = torch.cat([torch.full((len(subsets[size]),), size) for size in sizes])
    trial = torch.cat([torch.arange(len(subsets[size])) for size in sizes])
    return membership, k, trial


def _subset_metrics(
    correct: torch.Tensor, windows: torch.Tensor, membership: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Accuracy, balanced accuracy and windows scored per trial, from [trial, class] right windows.

    ``windows`` [class] counts each class's test windows; a trial scores the windows of its classes.
    """
    n = (membership * windows).sum(1)
    accuracy = correct.sum(1).double() / n  # 0/0 gives NaN when no window of the subset was tested
    counted = membership & (windows > 0)
    recall = torch.where(counted, correct.double() / windows.clamp(min=1), 0.0)
    return accuracy, recall.sum(1) / counted.sum(1), n


def _subset_frame(k: torch.Tensor, trial: torch.Tensor, metrics: tuple) -> pd.DataFrame:
    accuracy, balanced, n = metrics
    return pd.DataFrame(
        {
            "k": k.numpy(),
            "trial": trial.numpy(),
            "accuracy": accuracy.numpy(),
            "balanced_accuracy": balanced.numpy(),
            "n": n.numpy(),
        }
    )


def straightforward_subset_size_accuracy(
    payload: dict, window_frames: int, subsets: dict[int, torch.Tensor], include_rest: bool = True
) -> pd.DataFrame:
    """The definition of :func:`subset_size_accuracy`, one subset at a time: slow, and kept as its reference.

    Per subset: argmax of every frame's logits over the subset's classes, majority vote per window, score the
    windows whose class is in the subset. The tests check the fast version against it; the benchmark times both.
    """
    scores, label = _scores(payload), payload["label"]
    membership, k, trial = _subset_membership(subsets, payload["classes"], include_rest)
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
    windows = torch.bincount(truth, minlength=n_classes)
    return _subset_frame(k, trial, _subset_metrics(correct, windows, membership))


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

    From the windows' [window, frame, class] logits and :func:`_beaten` flags, and [window, rival] classes.
    """
    n_windows, n_frames, n_classes = window_scores.shape
    words = -(-n_classes // BITS_PER_WORD)
    masks = torch.empty(rivals.shape[1], n_windows, n_frames, words, dtype=torch.long)
    # In chunks of windows: the flags are [window, frame, rival, class], rivals times the logits.
    for chunk in _chunks(n_windows, max(1, CHUNK_ELEMENTS // max(1, n_frames * rivals.shape[1] * n_classes))):
        per_frame = rivals[chunk, None, :].expand(-1, n_frames, -1)  # [window, frame, rival]
        rival_scores = window_scores[chunk].gather(2, per_frame)[..., None]
        lower = torch.arange(n_classes) < per_frame[..., None]
        # The rule of _beaten: a larger logit, or an equal one with a lower class index.
        candidates = window_scores[chunk, :, None]
        chunk_masks = _bit_masks(torch.where(lower, candidates >= rival_scores, candidates > rival_scores))
        rival_beats_truth = beaten[chunk].gather(2, per_frame)
        masks[:, chunk] = chunk_masks.masked_fill(~rival_beats_truth[..., None], -1).permute(2, 0, 1, 3)
    return masks


def _rivals_winning_ties(score_sums: torch.Tensor | None, truth: torch.Tensor, rivals: torch.Tensor) -> torch.Tensor:
    """[window, rival]: would the rival win a tie in votes with the true class? (See :func:`_vote`.)"""
    if score_sums is None:  # single frames never tie: only the rival's count matters
        return torch.zeros_like(rivals, dtype=torch.bool)
    truth_sum, rival_sum = score_sums.gather(1, truth[:, None]), score_sums.gather(1, rivals)
    return (rival_sum > truth_sum) | ((rival_sum == truth_sum) & (rivals < truth[:, None]))


def _subset_table(payload: dict, window_frames: int) -> _SubsetTable:
    scores, label, subject = _scores(payload), payload["label"], payload["subject"]
    n_classes, n_units = scores.shape[1], len(payload["subjects"])
    ids, n_windows = window_ids(payload, window_frames)
    frames = _window_frame_matrix(ids, n_windows, window_frames)
    window_class = label[frames[:, 0]]
    window_key = subject[frames[:, 0]] * n_classes + window_class
    beaten = _beaten(scores, label)
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
    sums = _window_score_sums(scores, ids, n_windows)[uncertain] if window_frames > 1 else None

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
        votes = _vote(counts, table.score_sums.index_select(0, w))
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


def _subset_correct(table: _SubsetTable, membership: torch.Tensor) -> torch.Tensor:
    """[trial, unit * class] windows scored and right in each trial's subset."""
    per_class = membership.repeat(1, table.n_units)  # column unit * n_classes + class holds that class
    correct = per_class.to(torch.int32) * table.certain.to(torch.int32)
    # Blocks of trials bound the memory of the per-(trial, window) intermediates, whatever the model's accuracy.
    block = max(1, BLOCK_PAIRS // max(1, len(table.uncertain_class)))
    for trials in _chunks(len(membership), block):
        uncertain_right = _uncertain_windows_right(table, membership[trials])
        correct[trials].index_add_(1, table.uncertain_key, uncertain_right.to(torch.int32))
    return correct


def subset_size_accuracy(
    payload: dict, window_frames: int, subsets: dict[int, torch.Tensor], include_rest: bool = True
) -> pd.DataFrame:
    """Accuracy when the classifier chooses among a subset of the gestures (plus rest), per drawn subset.

    ``subsets`` is :func:`draw_subsets`' output over the payload's gestures. For each subset every frame's
    prediction is its argmax over the subset's classes, windows of ``window_frames`` frames are majority-voted
    (1: per frame), and the windows whose true class is in the subset are scored. Columns k, trial, accuracy,
    balanced_accuracy (mean over the subset's tested classes of their recall), n (windows scored). Exactly the
    numbers of :func:`straightforward_subset_size_accuracy`, much faster (see the module's docstring).
    """
    membership, k, trial = _subset_membership(subsets, payload["classes"], include_rest)
    table = _subset_table(payload, window_frames)
    shape = (len(membership), table.n_units, table.n_classes)
    correct = _subset_correct(table, membership).view(shape).sum(1)
    windows = table.windows.view(shape[1:]).sum(0)
    return _subset_frame(k, trial, _subset_metrics(correct, windows, membership))


# ---------------------------------------------------------------------------------------------------------
# Exact expectation over all subsets


def _log_binomial(n: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """log C(n, r), -inf where C(n, r) is 0 (r < 0, r > n); float64."""
    n, r = torch.broadcast_tensors(n.double(), r.double())
    possible = (r >= 0) & (r <= n)
    n, r = n.clamp(min=0), r.clamp(min=0)
    value = torch.lgamma(n + 1) - torch.lgamma(r + 1) - torch.lgamma((n - r).clamp(min=0) + 1)
    return torch.where(possible, value, -math.inf)


def exact_subset_accuracy(payload: dict, include_rest: bool = True) -> pd.DataFrame:
    """Per-frame accuracy and balanced accuracy averaged over all C(K, k) subsets of k gestures, k = 1..K.

    A frame with true class y is right in subset S iff no class of S beats y (:func:`_beaten`). With b gestures
    beating a gesture frame, P(right | y in S) = C(K-1-b, k-1) / C(K-1, k-1), and 0 when rest is in S and beats
    y; a rest frame (rest in every S) is right with probability C(K-b, k) / C(K, k).

    Balanced accuracy is exact: the expectation of the mean recall over the subset's tested classes, which with
    every class tested is (1/(k+1)) [r_rest + (k/K) sum_g r_g], r_c the mean probability over class c's frames
    (1/k without rest). Gestures without test frames still compete but do not count in the mean, so the sum is
    then taken over how many tested gestures S holds; without rest, subsets holding none (balanced accuracy
    undefined, NaN in :func:`subset_size_accuracy`) are left out, as pandas' mean leaves out NaN.

    Accuracy is the ratio of expectations sum_n P(y_n in S) P_n / sum_n P(y_n in S): the expected accuracy when
    every class has the same number of test frames (the number scored is then the same for every S), an
    approximation of it otherwise.
    """
    scores, label, classes = _scores(payload), payload["label"], payload["classes"]
    n_classes = len(classes)
    gestures = _gesture_indices(classes)
    n_gestures = len(gestures)
    rest = _rest_index(classes)
    rest_in_subsets = include_rest and rest is not None
    frames_per_class = torch.bincount(label, minlength=n_classes)
    is_gesture = torch.zeros(n_classes, dtype=torch.bool)
    is_gesture[gestures] = True
    tested = is_gesture & (frames_per_class > 0)
    n_tested = int(tested.sum())
    rest_frames = int(frames_per_class[rest]) if rest is not None else 0
    gesture_frames = int(frames_per_class[gestures].sum())
    rest_counted = rest_in_subsets and rest_frames > 0  # rest is one of the classes balanced accuracy averages

    # Per frame: tested and untested gestures beating its true class, and whether rest does (one matmul).
    kinds = torch.stack((tested, is_gesture & ~tested, torch.arange(n_classes) == (rest if rest is not None else -1)))
    tallies = (_beaten(scores, label).to(torch.float32) @ kinds.T.to(torch.float32)).long()
    tested_beating, untested_beating, rest_beats = tallies.unbind(1)
    is_rest_frame = label == rest if rest is not None else torch.zeros_like(label, dtype=torch.bool)
    gesture_alive = ~is_rest_frame & ~(rest_beats.bool() & rest_in_subsets)
    alive = gesture_alive | (is_rest_frame & rest_in_subsets)
    own_gesture = (~is_rest_frame).long()  # a gesture frame's own class must be one of S's tested gestures

    # Frames differ only by (own gesture, tested beating, untested beating): tally them once per combination.
    side = n_gestures + 1
    key = ((own_gesture * side + tested_beating) * side + untested_beating)[alive]
    weight = 1.0 / frames_per_class[label[alive]].double()
    bins, index = torch.unique(key, return_inverse=True)
    frames_in_bin = torch.bincount(index, minlength=len(bins)).double()
    weight_in_bin = torch.zeros(len(bins), dtype=torch.float64).index_add_(0, index, weight)
    bin_own, bin_tested, bin_untested = bins // (side * side), bins // side % side, bins % side

    # ways[bin, k, j]: the share of all k-subsets that hold the frame's own gesture, no class beating it and j
    # other tested gestures; its recall then counts 1 / (own + j + rest_counted) in the mean.
    k = torch.arange(1, n_gestures + 1)
    j = torch.arange(0, n_gestures + 1)
    own = bin_own[:, None, None]
    tested_free = (n_tested - bin_own - bin_tested)[:, None, None]
    untested_free = (n_gestures - n_tested - bin_untested)[:, None, None]
    k_, j_ = k[None, :, None], j[None, None, :]
    log_ways = (
        _log_binomial(tested_free, j_)
        + _log_binomial(untested_free, k_ - own - j_)
        - _log_binomial(torch.tensor(n_gestures), k_)
    )
    ways = log_ways.exp()
    classes_averaged = (bin_own[:, None] + j[None, :] + int(rest_counted)).double()
    right = (frames_in_bin[:, None] * ways.sum(2)).sum(0)
    balanced = (weight_in_bin[:, None] * (ways / classes_averaged[:, None, :].clamp(min=1)).sum(2)).sum(0)
    scored = rest_frames * int(rest_in_subsets) + gesture_frames * k.double() / n_gestures
    if not rest_counted:
        no_tested = _log_binomial(torch.tensor(n_gestures - n_tested), k) - _log_binomial(torch.tensor(n_gestures), k)
        balanced = balanced / (1 - no_tested.exp())
    return pd.DataFrame({"k": k.numpy(), "accuracy": (right / scored).numpy(), "balanced_accuracy": balanced.numpy()})


# ---------------------------------------------------------------------------------------------------------
# Voting and classification metrics over all classes


def _window_outcomes(
    payload: dict, window_frames: int, frame_predictions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(vote, true class, subject) of every scored window, over all classes."""
    if window_frames == 1:  # a single frame's vote is its prediction
        return frame_predictions, payload["label"], payload["subject"]
    ids, n_windows = window_ids(payload, window_frames)
    votes = majority_vote(frame_predictions, payload["logits"], ids, n_windows)
    first = _window_frame_matrix(ids, n_windows, window_frames)[:, 0]
    return votes, payload["label"][first], payload["subject"][first]


def _confusion(predictions: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    flat = torch.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes)
    return flat.view(n_classes, n_classes)


def _unit_confusions(
    predictions: torch.Tensor, labels: torch.Tensor, units: torch.Tensor, n_units: int, n_classes: int
) -> torch.Tensor:
    """[unit, true, predicted] counts."""
    key = (units * n_classes + labels) * n_classes + predictions
    return torch.bincount(key, minlength=n_units * n_classes * n_classes).view(n_units, n_classes, n_classes)


def _metrics_from_confusion(confusion: torch.Tensor) -> dict:
    confusion = confusion.long()
    right = confusion.diagonal().double()
    tested = confusion.sum(1)
    predicted = confusion.sum(0)
    recall = right / tested  # NaN for classes without test samples
    precision = torch.where(predicted > 0, right / predicted.clamp(min=1), 0.0)  # never predicted: precision 0
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = tested > 0
    return {
        "accuracy": float(right.sum() / tested.sum()),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "recall": recall,
        "confusion": confusion,
    }


def classification_metrics(predictions: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict:
    """Accuracy, balanced accuracy and macro F1 (both over the classes present in ``labels``), per-class recall
    ([C], NaN for absent classes) and the confusion matrix ([C, C] counts, rows true, columns predicted).

    A present class that is never predicted has precision 0 (and F1 0), as scikit-learn's default.
    """
    return _metrics_from_confusion(_confusion(predictions, labels, n_classes))


def _accuracy_and_balanced(right: torch.Tensor, windows: torch.Tensor) -> tuple[float, float]:
    """From [class] right and tested counts."""
    present = windows > 0
    right = right.double()
    return float(right.sum() / windows.sum()), float((right[present] / windows[present]).mean())


def _voting_tallies(payload: dict, max_window_frames: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per window length 1..max: [unit, class] right and tested windows."""
    n_units, n_classes = len(payload["subjects"]), len(payload["classes"])
    predictions = _scores(payload).argmax(1)
    tallies = []
    for window_frames in range(1, max_window_frames + 1):
        votes, truth, unit = _window_outcomes(payload, window_frames, predictions)
        key = unit * n_classes + truth
        windows = torch.bincount(key, minlength=n_units * n_classes).view(n_units, n_classes)
        right = torch.bincount(key[votes == truth], minlength=n_units * n_classes).view(n_units, n_classes)
        tallies.append((right, windows))
    return tallies


def _voting_frame(tallies: list[tuple[torch.Tensor, torch.Tensor]], units: torch.Tensor, frame_ms: float):
    rows = []
    for window_frames, (right, windows) in enumerate(tallies, start=1):
        accuracy, balanced = _accuracy_and_balanced(right[units].sum(0), windows[units].sum(0))
        rows.append(
            {
                "window_frames": window_frames,
                "window_ms": window_frames * frame_ms,
                "accuracy": accuracy,
                "balanced_accuracy": balanced,
                "n": int(windows[units].sum()),
            }
        )
    return pd.DataFrame(rows)


def voting_curve(payload: dict, max_window_frames: int, frame_ms: float = FRAME_MS) -> pd.DataFrame:
    """Accuracy over all classes against the voting window, 1..max_window_frames frames (1: per frame)."""
    all_units = torch.ones(len(payload["subjects"]), dtype=torch.bool)
    return _voting_frame(_voting_tallies(payload, max_window_frames), all_units, frame_ms)


# ---------------------------------------------------------------------------------------------------------
# Groups and the per-payload tables


def groups(payload: dict) -> dict[str, torch.Tensor]:
    """[N] frame masks: "all", "intact" and "amputee" (when they have test frames), "subject:<name>" per subject
    with test frames."""
    subject = payload["subject"]
    amputee = torch.tensor(payload["amputee"], dtype=torch.bool)[subject]
    masks = {"all": torch.ones_like(subject, dtype=torch.bool)}
    if (~amputee).any():
        masks["intact"] = ~amputee
    if amputee.any():
        masks["amputee"] = amputee
    for index in torch.unique(subject).tolist():
        masks[f"subject:{payload['subjects'][index]}"] = subject == index
    return masks


def _select(payload: dict, mask: torch.Tensor) -> dict:
    return {key: value[mask] if key in PER_FRAME else value for key, value in payload.items()}


def _group_units(payload: dict, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each group's frame mask as a [unit] mask of its subjects; every group must be a union of subjects."""
    subject = payload["subject"]
    units = {}
    for name, mask in masks.items():
        members = torch.zeros(len(payload["subjects"]), dtype=torch.bool)
        members[subject[mask]] = True
        if not torch.equal(members[subject], mask):
            raise ValueError(f"group {name} is not a union of subjects")
        units[name] = members
    return units


def _led(frame: pd.DataFrame, payload: dict, group: str) -> pd.DataFrame:
    leading = {"model": payload["model"], "adabn": bool(payload["adabn"]), "fold": payload["fold"], "group": group}
    return frame.assign(**leading)[LEADING_COLUMNS + list(frame.columns)]


def _metrics_frame(
    confusions: torch.Tensor, units: torch.Tensor, classes: list[str], level: str, across_subjects: bool
) -> pd.DataFrame:
    """Long-format metrics of the units' summed [unit, true, predicted] confusions."""
    metrics = _metrics_from_confusion(confusions[units].sum(0))
    names = ["accuracy", "balanced_accuracy", "macro_f1"]
    metric, label, value = names + ["recall"] * len(classes), [""] * 3 + classes, [metrics[n] for n in names]
    value += metrics["recall"].tolist()
    if across_subjects:
        members = confusions[units]
        tested = members.sum((1, 2))
        accuracy = members.diagonal(dim1=1, dim2=2).sum(1)[tested > 0].double() / tested[tested > 0]
        metric += ["subject_mean_accuracy", "subject_std_accuracy"]
        label += ["", ""]
        value += [float(accuracy.mean()), float(accuracy.std()) if len(accuracy) > 1 else math.nan]  # ddof 1
    return pd.DataFrame({"level": level, "metric": metric, "class": label, "value": value})


def _confusion_frame(confusions: torch.Tensor, units: torch.Tensor, classes: list[str], level: str) -> pd.DataFrame:
    """Long-format confusion counts of the units, zero counts omitted."""
    confusion = confusions[units].sum(0)
    true, predicted = confusion.nonzero(as_tuple=True)
    names = np.array(classes, dtype=object)
    return pd.DataFrame(
        {
            "level": level,
            "true": names[true.numpy()],
            "predicted": names[predicted.numpy()],
            "count": confusion[true, predicted].numpy(),
        }
    )


def evaluate_payload(
    payload: dict,
    *,
    window_frames: int = 25,
    trials: int = 144,
    seed: int = 0,
    include_rest: bool = True,
    max_vote_frames: int | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table of the module's docstring for one logits payload, for every group of :func:`groups`.

    Window outcomes do not depend on the group, so each is worked out once for the whole payload and tallied per
    subject; a group sums its subjects' tallies. That makes subset_accuracy for every subject group nearly free
    (it is included; its rows, trials × K per group, are most of the output). Subsets come from
    ``draw_subsets(K, trials, seed)``: the same for every payload with K gestures. About 8 s for full DB2 + DB3
    on two CPU cores.
    """
    classes = payload["classes"]
    n_classes, n_units = len(classes), len(payload["subjects"])
    frame_masks = groups(payload)
    units_of = _group_units(payload, frame_masks)

    membership, k, trial = _subset_membership(
        draw_subsets(len(_gesture_indices(classes)), trials, seed), classes, include_rest
    )
    table = _subset_table(payload, window_frames)
    subset_right = _subset_correct(table, membership).view(len(membership), n_units, n_classes)
    subset_windows = table.windows.view(n_units, n_classes)

    voting = _voting_tallies(payload, max_vote_frames or window_frames)
    frame_predictions = _scores(payload).argmax(1)
    votes, truth, window_unit = _window_outcomes(payload, window_frames, frame_predictions)
    confusions = {
        "frame": _unit_confusions(frame_predictions, payload["label"], payload["subject"], n_units, n_classes),
        "vote": _unit_confusions(votes, truth, window_unit, n_units, n_classes),
    }

    tables = {name: [] for name in ("subset_accuracy", "subset_exact", "voting", "metrics", "confusion")}
    for group, units in units_of.items():
        across_subjects = not group.startswith("subject:")
        subset_metrics = _subset_metrics(subset_right[:, units].sum(1), subset_windows[units].sum(0), membership)
        tables["subset_accuracy"].append(_led(_subset_frame(k, trial, subset_metrics), payload, group))
        exact = exact_subset_accuracy(_select(payload, frame_masks[group]), include_rest)
        tables["subset_exact"].append(_led(exact, payload, group))
        tables["voting"].append(_led(_voting_frame(voting, units, FRAME_MS), payload, group))
        metrics = [_metrics_frame(confusions[level], units, classes, level, across_subjects) for level in LEVELS]
        tables["metrics"].append(_led(pd.concat(metrics, ignore_index=True), payload, group))
        confusion = [_confusion_frame(confusions[level], units, classes, level) for level in LEVELS]
        tables["confusion"].append(_led(pd.concat(confusion, ignore_index=True), payload, group))
    return {name: pd.concat(frames, ignore_index=True) for name, frames in tables.items()}


def aggregate(tables: list[dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Concatenate :func:`evaluate_payload` outputs (one per model × fold) table by table."""
    names = list(dict.fromkeys(name for table in tables for name in table))
    return {name: pd.concat([table[name] for table in tables if name in table], ignore_index=True) for name in names}
