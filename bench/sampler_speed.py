"""Contrastive sampler throughput (frames/s) on the CPU, on a DB23 the size of full DB2 + DB3. Goal ≥ 20 M/s."""

import torch

from contrastive_prosthetics.data.ninapro import class_names
from contrastive_prosthetics.learning.dataset import DB23, SubjectInfo
from contrastive_prosthetics.learning.sampling import ContrastiveSampler

from .results import Result
from .timing import best_of

SUBJECTS, REPS, FRAMES, CHANNELS = 51, 6, 100, 12
GROUPS, DRAWS = 1024, 100


def full_size_db23() -> DB23:
    classes = class_names(["B", "C"])
    generator = torch.Generator().manual_seed(0)
    emg = torch.rand((SUBJECTS, len(classes), REPS, FRAMES, CHANNELS), generator=generator)
    valid = torch.ones((SUBJECTS, len(classes), REPS), dtype=torch.bool)
    valid[40, 30:] = False  # DB3 subject 1 lacks grasps 30-40
    subjects = [SubjectInfo("db2" if s < 40 else "db3", s % 40 + 1, s >= 40) for s in range(SUBJECTS)]
    channel_mask = torch.ones((SUBJECTS, CHANNELS), dtype=torch.bool)
    return DB23(emg, valid, channel_mask, None, classes, subjects, torch.device("cpu"), frame_rate_hz=100.0)


def main() -> list[Result]:
    data = full_size_db23()
    train = data.select(repetitions=[1, 3, 4])
    print(f"== contrastive sampler, {SUBJECTS} subjects x 41 classes, {GROUPS} groups per draw (best of 3)")
    results = []
    for per_subject in (False, True):
        sampler = ContrastiveSampler(data, train, groups=GROUPS, seed=0, per_subject=per_subject)
        seconds = best_of(lambda s=sampler: [s.draw() for _ in range(DRAWS)], 3)
        rate = GROUPS * len(data.classes) * DRAWS / seconds
        verdict = "OK" if rate >= 20e6 else "MISSED"
        print(f"per_subject={per_subject!s:5}: {rate / 1e6:.1f} M frames/s (goal >= 20 M/s) {verdict}")
        name = "sampler, per-subject batches" if per_subject else "sampler, mixed batches"
        results.append(Result(name, f"{rate / 1e6:.1f} M frames/s", ">= 20 M/s", rate >= 20e6))
    return results


if __name__ == "__main__":
    main()
