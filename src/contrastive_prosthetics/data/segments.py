"""Where each class × repetition happens in a recording's stream of frames, from its label vectors.

A movement repetition is the longest relabelled run (``restimulus``) of that movement with that repetition number,
taken from ``rerepetition`` (or, where that is 0, from the run's position among the movement's runs). Rest has no
repetition labels worth trusting (files differ in what ``rerepetition`` holds during rest), so a rest run belongs
to the repetition of the movement that follows it (the trailing rest to the one before it), whatever the file says.

Every frame of the stream thus gets a class (the relabelled movement at its last sample; rest = 0) and a
repetition (its run's; 0 outside 1..R). Runs are kept in frames: the first frame that ends inside the run to the
last frame that ends inside it.

A movement's segment starts ``offset`` frames after its run's first frame. The rest segment of repetition ``r`` is
centred in one rest run of repetition ``r``, drawn (seeded by the run's seed, the database, the subject and ``r``)
from every long-enough rest run of that repetition in all of the subject's files: test rest is then not always the
same moment of the session, and the draw depends on nothing but the labels' timing and the seed.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass

import numpy as np

from .preprocess import Window, find_runs

log = logging.getLogger(__name__)
REST_CLASS = 0


@dataclass(frozen=True)
class Run:
    """A class × repetition's stretch of the stream, in frames (inclusive bounds)."""

    class_index: int
    repetition: int  # 1-based
    first_frame: int
    last_frame: int

    @property
    def n_frames(self) -> int:
        return self.last_frame - self.first_frame + 1

    def shifted(self, frames: int) -> Run:
        return Run(self.class_index, self.repetition, self.first_frame + frames, self.last_frame + frames)


def run_repetitions(movements: np.ndarray, rerepetition: np.ndarray, repetitions: int) -> tuple[np.ndarray, ...]:
    """Runs of the movement labels (starts, stops, values) and each run's repetition (0 when outside 1..R).

    Movement runs take ``rerepetition`` at their middle, or their position among the runs of their movement where
    it holds 0; rest runs take the repetition of the next movement run (the last one for trailing rest).
    """
    starts, stops, values = find_runs(movements)
    labelled = rerepetition[(starts + stops) // 2].astype(np.int64)
    moving = values != 0
    position = np.zeros(len(values), np.int64)
    for movement in np.unique(values[moving]):
        runs = np.flatnonzero(values == movement)
        position[runs] = np.arange(1, len(runs) + 1)
    repetition = np.where(moving, np.where(labelled > 0, labelled, position), 0)
    moving_runs = np.flatnonzero(moving)
    if moving_runs.size:
        following = np.searchsorted(moving_runs, np.arange(len(values)), side="left")
        neighbour = moving_runs[np.minimum(following, len(moving_runs) - 1)]
        repetition = np.where(moving, repetition, repetition[neighbour])
    repetition = np.where((repetition >= 1) & (repetition <= repetitions), repetition, 0)
    return starts, stops, values, repetition


def frame_bounds(starts: np.ndarray, stops: np.ndarray, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last frame (inclusive) whose last sample lies in [start, stop); frame f ends at (f + 1) hop - 1."""
    return (starts + hop) // hop - 1, stops // hop - 1


def file_runs(
    source: str,
    movements: np.ndarray,
    rerepetition: np.ndarray,
    class_of_movement: dict[int, int],
    repetitions: int,
    hop: int,
) -> tuple[list[Run], list[Run], np.ndarray, np.ndarray]:
    """One file's movement runs (the longest per class × repetition), rest runs, and each frame's class and
    repetition ([frame] arrays). Frames are the file's own, from 0."""
    starts, stops, values, repetition = run_repetitions(movements, rerepetition, repetitions)
    first, last = frame_bounds(starts, stops, hop)
    ignored = sorted({int(v) for v, r in zip(values, repetition, strict=True) if v != 0 and r == 0})
    if ignored:
        log.warning(
            "%s: movement(s) %s have repetitions outside 1-%d; those runs are ignored", source, ignored, repetitions
        )
    longest: dict[tuple[int, int], Run] = {}
    rests = []
    for value, rep, a, b in zip(values, repetition, first, last, strict=True):
        if rep == 0 or b < a:
            continue
        run = Run(class_of_movement[int(value)] if value else REST_CLASS, int(rep), int(a), int(b))
        if value == 0:
            rests.append(run)
        elif (run.class_index, run.repetition) not in longest or run.n_frames > longest[run.class_index, rep].n_frames:
            longest[run.class_index, run.repetition] = run
    n_frames = len(movements) // hop
    ends = (np.arange(n_frames) + 1) * hop - 1
    run_of_frame = np.searchsorted(starts, ends, side="right") - 1
    classes = np.array([class_of_movement[int(v)] if v else REST_CLASS for v in values], np.int16)
    return (
        sorted(longest.values(), key=lambda r: (r.class_index, r.repetition)),
        rests,
        classes[run_of_frame],
        (repetition[run_of_frame].astype(np.int16)),
    )


def rest_draw_seed(seed: int, database: str, subject: int, repetition: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, zlib.crc32(database.encode()), subject, repetition])


@dataclass(frozen=True)
class Segments:
    """Chosen segments, one set per window, all on the same (class, repetition) cells: those whose run is long
    enough for every window."""

    start: dict[str, np.ndarray]  # window → [class, rep] first stream frame (-1: not valid)
    run_first: np.ndarray  # [class, rep] the run's first frame (-1: none)
    run_last: np.ndarray  # [class, rep] long
    too_short: dict[int, int]  # class → frames of its longest run, for classes recorded but never long enough


def choose_segments(
    movement_runs: list[Run],
    rest_runs: list[Run],
    shape: tuple[int, int],
    windows: dict[str, Window],
    seed: int,
    database: str,
    subject: int,
) -> Segments:
    """For every window, movement segments ``offset`` frames into their run; one rest segment per repetition,
    centred in a rest run drawn among that repetition's rest runs long enough for every window. A cell is valid
    when its run fits every window, so that windows are compared on the same repetitions."""
    run_first, run_last = np.full(shape, -1, np.int64), np.full(shape, -1, np.int64)
    reach = max(window.reach for window in windows.values())
    longest_rest_window = max(window.length for window in windows.values())
    longest: dict[int, int] = {}
    for run in movement_runs:
        longest[run.class_index] = max(longest.get(run.class_index, 0), run.n_frames)
        if reach <= run.n_frames:
            run_first[run.class_index, run.repetition - 1] = run.first_frame
            run_last[run.class_index, run.repetition - 1] = run.last_frame
    for run in rest_runs:
        longest[REST_CLASS] = max(longest.get(REST_CLASS, 0), run.n_frames)
    for repetition in range(1, shape[1] + 1):
        candidates = [r for r in rest_runs if r.repetition == repetition and r.n_frames >= longest_rest_window]
        if candidates:
            rng = np.random.default_rng(rest_draw_seed(seed, database, subject, repetition))
            run = candidates[rng.integers(len(candidates))]
            run_first[REST_CLASS, repetition - 1], run_last[REST_CLASS, repetition - 1] = (
                run.first_frame,
                run.last_frame,
            )
    valid = run_first >= 0
    start = {}
    for name, window in windows.items():
        movement_start = run_first + window.offset
        rest_start = run_first + (run_last - run_first + 1 - window.length) // 2  # centred: rest has no onset
        first = np.where(np.arange(shape[0])[:, None] == REST_CLASS, rest_start, movement_start)
        start[name] = np.where(valid, first, -1)
    too_short = {c: longest[c] for c in sorted(longest) if not valid[c].any()}
    return Segments(start, run_first, run_last, too_short)


def preceding_rest(run_first: np.ndarray, rest_runs: list[Run]) -> tuple[np.ndarray, np.ndarray]:
    """For each cell's run (``run_first`` [class, rep], -1: none), the first and last frame of the latest rest run
    that ends before it (-1 where there is none): the hand's resting pose a movement's pose is measured from."""
    ends = np.array(sorted(run.last_frame for run in rest_runs), dtype=np.int64)
    starts = np.array([run.first_frame for run in sorted(rest_runs, key=lambda run: run.last_frame)], dtype=np.int64)
    if not len(ends):
        return np.full_like(run_first, -1), np.full_like(run_first, -1)
    which = np.searchsorted(ends, run_first, side="left") - 1  # the last rest run ending before the run starts
    found = (which >= 0) & (run_first >= 0)
    which = np.maximum(which, 0)
    return np.where(found, starts[which], -1), np.where(found, ends[which], -1)
