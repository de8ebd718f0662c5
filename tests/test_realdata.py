"""The real NinaPro DB1 recordings in $NINAPRO_DB1_DIR (skipped when absent)."""

import hashlib

import pytest
import torch
from conftest import PREPROCESS, first_window

from contrastive_prosthetics.convert import convert_subject as convert_to_tensors
from contrastive_prosthetics.ninapro import DB1
from contrastive_prosthetics.sources import find_local_files


def convert_subject(*args, **kwargs) -> dict:
    """The conversion's output with its first window's segments at the top, as these tests read it."""
    return first_window(convert_to_tensors(*args, **kwargs))


@pytest.mark.realdata
@pytest.mark.parametrize("subject", [1, 2, 3, 4])
def test_real_db1_subject_converts_completely(db1_dir, tmp_path, subject):
    sources = find_local_files(db1_dir, DB1, subject, ["A"])
    raw = sources["A"]
    before = hashlib.sha256(open(raw, "rb").read()).hexdigest()
    tensors = convert_subject(DB1, subject, sources, ["A"], PREPROCESS, tmp_path / f"s{subject}.pt")
    assert tensors["emg"].shape == (13, 10, 100, 10)
    assert tensors["valid"].all()
    assert tensors["channel_mask"].all()
    assert torch.isfinite(tensors["emg"]).all() and (tensors["emg"] >= 0).all()  # rectified envelopes
    # Movement is louder than rest on average: the segments sit on the movements.
    assert tensors["emg"][1:].mean() > 1.25 * tensors["emg"][0].mean()
    assert hashlib.sha256(open(raw, "rb").read()).hexdigest() == before


@pytest.mark.realdata
def test_lda_baseline_beats_chance_by_far_on_real_db1(db1_dir, tmp_path):
    from contrastive_prosthetics.baseline import train_lda_fold

    paths = []
    for subject in (1, 2, 3, 4):
        sources = find_local_files(db1_dir, DB1, subject, ["A"])
        paths.append(tmp_path / f"s{subject}.pt")
        convert_subject(DB1, subject, sources, ["A"], PREPROCESS, paths[-1])
    fold = {"scheme": "repetitions", "train": [1, 3, 4, 8, 9, 10], "validation": [6], "test": [2, 5, 7]}
    train_lda_fold(paths, "lda", "reps-2-5-7", fold, 0, tmp_path / "lda")
    logits = torch.load(tmp_path / "lda" / "logits.pt", weights_only=False)
    accuracy = (logits["logits"].argmax(1) == logits["label"]).float().mean().item()
    chance = 1 / 13
    assert accuracy > 4 * chance, accuracy  # per frame, before any voting
    assert set(logits["repetition"].tolist()) == {2, 5, 7}
