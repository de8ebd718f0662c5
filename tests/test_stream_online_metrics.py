"""The field's online metrics (active error rate, instability, movements detected within 250 ms of onset) on small
decision sequences worked out by hand, by the vectorised path and the straightforward reference alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastive_prosthetics.data.ninapro import class_names
from contrastive_prosthetics.evaluation.stream_metrics import stream_metrics
from contrastive_prosthetics.evaluation.stream_metrics_reference import straightforward_stream_metrics

CLASSES = class_names(["A"])  # rest + 12 gestures
FRAME_MS = 10.0  # 250 ms is 25 frames
GESTURES_3_AND_5 = {2: torch.tensor([[False, False, True, False, True] + [False] * 7])}
GESTURE_3 = {1: torch.tensor([[False, False, True] + [False] * 9])}
# A late and confused movement, and two movements of gesture 3 (the first two tests work their metrics out).
LATE_TRUTH = np.array([0] * 10 + [3] * 20 + [0] * 10)
LATE_DECISIONS = [0] * 4 + [5] * 2 + [0] * 7 + [3] * 8 + [5] * 2 + [3] * 7 + [0] * 10
TWO_TRUTH = np.array([0] * 10 + [3] * 50 + [0] * 10 + [3] * 50 + [0] * 10)
TWO_DECISIONS = [3 if frame == 34 or 50 <= frame < 60 or 95 <= frame < 120 else 0 for frame in range(130)]


def decided_as(decisions: list[int]) -> torch.Tensor:
    """Logits whose argmax is ``decisions`` frame by frame: with no vote (0 frames) the controller decides them."""
    logits = torch.zeros((len(decisions), len(CLASSES)))
    logits[torch.arange(len(decisions)), torch.tensor(decisions)] = 1.0
    return logits


def rows(scored: list, subsets: dict) -> list:
    """The one row (one subset, no vote) of both paths."""
    both = (stream_metrics, straightforward_stream_metrics)
    return [metrics(scored, CLASSES, subsets, [0], FRAME_MS).iloc[0] for metrics in both]


def test_active_error_and_instability_of_a_late_and_confused_movement():
    """Rest 10 frames, gesture 3 for 20, rest 10; gestures 3 and 5 chosen. Decided: rest, but gesture 5 on frames 4-5
    (a false activation); during the movement rest on 10-12 (late), 3 on 13-20, 5 on 21-22 (confused), 3 on 23-29;
    rest after. Frames decided as a gesture: 2 + 8 + 2 + 7 = 19, of them wrong 2 + 2 = 4: active error 4/19.
    Decision changes at frames 4, 6, 13, 21, 23, 30: 6; the truth changes at 10 and 30: 2; instability (6 - 2) / 40.
    The onset is detected at frame 13, 30 ms after it: 1 of 1 within 250 ms."""
    for row in rows([(0, np.arange(40), decided_as(LATE_DECISIONS), LATE_TRUTH)], GESTURES_3_AND_5):
        assert row["active_error_rate"] == pytest.approx(4 / 19)
        assert row["instability"] == pytest.approx(4 / 40)
        assert row["onset_within_250ms"] == 1.0
        assert row["frames"] == 40


def test_an_onset_is_detected_by_a_right_decision_before_250_ms_whether_or_not_it_stays():
    """Rest 10, gesture 3 for 50, rest 10, gesture 3 for 50, rest 10 (130 frames). First movement (frames 10-59):
    right on frame 34 alone (24 frames = 240 ms after its onset), then from frame 50 to its end: detected within
    250 ms, though its onset delay (stably right for 100 ms) is 400 ms. Second (frames 70-119): right from frame 95
    (25 frames = 250 ms) to its end: not detected within 250 ms, though its onset delay is 250 ms. 1 of 2 detected.
    Decided as a gesture: 1 + 10 + 25 = 36 frames, all right: active error 0. Decision changes: at 34, 35, 50, 60,
    95, 120: 6; truth changes at 10, 60, 70, 120: 4; instability 2 / 130."""
    for row in rows([(0, np.arange(130), decided_as(TWO_DECISIONS), TWO_TRUTH)], GESTURE_3):
        assert row["onset_within_250ms"] == 0.5
        assert row["onset_delay_p50_ms"] == pytest.approx((400 + 250) / 2) and row["onsets_missed"] == 0.0
        assert row["active_error_rate"] == 0.0
        assert row["instability"] == pytest.approx(2 / 130)


def test_a_controller_that_never_moves_has_no_active_error_and_no_instability():
    """The same truth decided rest throughout: no frame decided as a gesture, so the active error is undefined (NaN),
    not 0; no decision changes against the truth's 4 gives -4, floored at 0; no onset detected (0 of 2)."""
    for row in rows([(0, np.arange(130), decided_as([0] * 130), TWO_TRUTH)], GESTURE_3):
        assert np.isnan(row["active_error_rate"])
        assert row["instability"] == 0.0
        assert row["onset_within_250ms"] == 0.0


def test_instability_counts_only_changes_between_scored_frames_of_one_stretch():
    """Two stretches. The first: rest 10, gesture 4 (not chosen: its frames are not scored) for 10, rest 10, decided
    rest but gesture 3 on frames 11, 13 and 15, inside the unscored movement: no change lies between two scored
    frames, and those gesture decisions are not counted as active. The second: rest 10 decided gesture 3 from its
    first frame; the change from the first stretch's last decision (rest) is the controller's restart, not a change.
    Instability 0 over the 20 + 10 scored frames (every frame pair counted, as over one file: (6 + 1 - 2) / 40);
    active error 10 / 10 (the second stretch's rest decided as gesture 3, none of the first's); no chosen movement,
    so the share of onsets detected is NaN."""
    first_truth = np.array([0] * 10 + [4] * 10 + [0] * 10)
    first = [0] * 30
    first[11] = first[13] = first[15] = 3
    second_truth = np.zeros(10, dtype=int)
    scored = [
        (0, np.arange(30), decided_as(first), first_truth),
        (0, np.arange(30, 40), decided_as([3] * 10), second_truth),
    ]
    for row in rows(scored, GESTURE_3):
        assert row["frames"] == 30
        assert row["instability"] == 0.0
        assert row["active_error_rate"] == 1.0
        assert np.isnan(row["onset_within_250ms"])


def test_pooled_rows_sum_the_subjects_counts_and_the_table_lists_the_columns():
    """Subject 0 is the late, confused movement above (active error 4 / 19, instability 4 / 40, 1 of 1 onset), subject
    1 the two movements (0 / 36, 2 / 130, 1 of 2). Pooled, the counts add up before the ratio: active error
    4 / 55, instability 6 / 170, 2 of 3 onsets; and stream_metrics.tsv lists the three columns."""
    from types import SimpleNamespace

    from contrastive_prosthetics.evaluation.stream_metrics import POOLED, per_subject_metrics
    from contrastive_prosthetics.evaluation.tables import OPTIONAL_COLUMNS

    scored = [
        (0, np.arange(40), decided_as(LATE_DECISIONS), LATE_TRUTH),
        (1, np.arange(40, 170), decided_as(TWO_DECISIONS), TWO_TRUTH),
    ]
    raw = SimpleNamespace(classes=CLASSES, subject_names=["s1", "s2"])
    pooled = stream_metrics(scored, CLASSES, GESTURES_3_AND_5, [0], FRAME_MS).assign(subject=POOLED)
    subjects = per_subject_metrics(scored, raw, GESTURES_3_AND_5, [0], FRAME_MS)
    expected = {
        "s1": (4 / 19, 4 / 40, 1.0),
        "s2": (0.0, 2 / 130, 0.5),
        POOLED: (4 / 55, 6 / 170, 2 / 3),
    }
    for row in (*(table.iloc[0] for table in subjects), pooled.iloc[0]):
        got = (row["active_error_rate"], row["instability"], row["onset_within_250ms"])
        assert got == pytest.approx(expected[row["subject"]]), row["subject"]
    assert {"active_error_rate", "instability", "onset_within_250ms"} <= set(OPTIONAL_COLUMNS["stream_metrics"])
    assert set(pooled.columns) <= set(OPTIONAL_COLUMNS["stream_metrics"])
