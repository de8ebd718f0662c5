"""NinaPro database specifications: one table-driven description per database.

Every other module asks this one for subject counts, channels, sampling rates, file names, which exercise a
file holds and how its labels are numbered, instead of carrying its own constants.

Movements are named by exercise and number in one catalogue shared by every database: ``rest``, ``A1``-``A12``
(finger movements, DB1 only), ``B1``-``B17``, ``C1``-``C23`` and ``D1``-``D9`` (force patterns). A run selects
exercises; its class axis is ``rest`` followed by the selected exercises' movements in catalogue order, so the
default selection B + C gives the reference's 41 classes whose indices equal DB2's numbering (B1 = 1, C1 = 18).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import InputError

REST = "rest"

MOVEMENT_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "A": (
        "Index flexion",
        "Index extension",
        "Middle flexion",
        "Middle extension",
        "Ring flexion",
        "Ring extension",
        "Little finger flexion",
        "Little finger extension",
        "Thumb adduction",
        "Thumb abduction",
        "Thumb flexion",
        "Thumb extension",
    ),
    "B": (
        "Thumb up",
        "Extension of index and middle, flexion of the others",
        "Flexion of ring and little finger, extension of the others",
        "Thumb opposing base of little finger",
        "Abduction of all fingers",
        "Fingers flexed together in fist",
        "Pointing index",
        "Adduction of extended fingers",
        "Wrist supination (axis: middle finger)",
        "Wrist pronation (axis: middle finger)",
        "Wrist supination (axis: little finger)",
        "Wrist pronation (axis: little finger)",
        "Wrist flexion",
        "Wrist extension",
        "Wrist radial deviation",
        "Wrist ulnar deviation",
        "Wrist extension with closed hand",
    ),
    "C": (
        "Large diameter grasp",
        "Small diameter grasp (power grip)",
        "Fixed hook grasp",
        "Index finger extension grasp",
        "Medium wrap",
        "Ring grasp",
        "Prismatic four fingers grasp",
        "Stick grasp",
        "Writing tripod grasp",
        "Power sphere grasp",
        "Three finger sphere grasp",
        "Precision sphere grasp",
        "Tripod grasp",
        "Prismatic pinch grasp",
        "Tip pinch grasp",
        "Quadpod grasp",
        "Lateral grasp",
        "Parallel extension grasp",
        "Extension type grasp",
        "Power disk grasp",
        "Open a bottle with a tripod grasp",
        "Turn a screw (grasp the screwdriver with a stick grasp)",
        "Cut something (grasp the knife with an index finger extension grasp)",
    ),
    "D": (
        "Flexion of the little finger",
        "Flexion of the ring finger",
        "Flexion of the middle finger",
        "Flexion of the index finger",
        "Abduction of the thumb",
        "Flexion of the thumb",
        "Flexion of index and little finger",
        "Flexion of ring and middle finger",
        "Flexion of index finger and thumb",
    ),
}
EXERCISES = tuple(MOVEMENT_DESCRIPTIONS)
GLOVE_CHANNELS = 22


def movement_names(exercise: str) -> list[str]:
    """``['B1', ..., 'B17']`` for exercise ``'B'``."""
    return [f"{exercise}{i}" for i in range(1, len(MOVEMENT_DESCRIPTIONS[exercise]) + 1)]


def class_names(exercises: list[str] | tuple[str, ...]) -> list[str]:
    """The class axis of a run: rest, then each selected exercise's movements in catalogue order."""
    unknown = [e for e in exercises if e not in MOVEMENT_DESCRIPTIONS]
    if unknown:
        raise InputError(f"unknown exercise(s) {unknown}; NinaPro exercises are {list(EXERCISES)}")
    ordered = [e for e in EXERCISES if e in exercises]
    return [REST] + [name for e in ordered for name in movement_names(e)]


def describe(name: str) -> str:
    """NinaPro's description of a class name such as ``'C6'`` (``'Rest'`` for rest)."""
    if name == REST:
        return "Rest"
    return MOVEMENT_DESCRIPTIONS[name[0]][int(name[1:]) - 1]


@dataclass(frozen=True)
class DatabaseSpec:
    """What a NinaPro database looks like on disk and in its labels."""

    name: str
    n_subjects: int
    n_channels: int
    sampling_rate_hz: float
    repetitions: int
    amputee: bool
    # Otto Bock electrodes (DB1) deliver rectified, RMS-smoothed envelopes: no band-pass or RMS here.
    already_rectified: bool
    file_template: str  # formatted with subject= and file_index=
    # file index (the E in the file name) -> exercise held in that file
    file_exercises: dict[int, str]
    # file index -> the label the file's first movement carries (1 when numbering restarts in each file)
    first_label: dict[int, int]
    # subject -> electrodes that were not fitted (their columns exist but are flat), 0-based
    missing_electrodes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    # subject -> class names that were never recorded
    missing_movements: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def subjects(self) -> range:
        return range(1, self.n_subjects + 1)

    def file_index(self, exercise: str) -> int:
        for index, held in self.file_exercises.items():
            if held == exercise:
                return index
        raise InputError(
            f"{self.name} has no exercise {exercise!r}; it has {sorted(self.file_exercises.values())}: "
            "fix data.exercises in the config"
        )

    def file_name(self, subject: int, exercise: str) -> str:
        return self.file_template.format(subject=subject, file_index=self.file_index(exercise))

    def check_subject(self, subject: int) -> None:
        if subject not in self.subjects:
            raise InputError(
                f"{self.name} has subjects 1-{self.n_subjects}, not {subject}: fix data.databases.{self.name}"
            )

    def global_labels(self, exercise: str, file_labels: np.ndarray, source: str = "") -> np.ndarray:
        """Map a file's movement labels (0 = rest) to movement numbers 1..n within ``exercise``.

        DB2/DB3 number exercise C 18-40 in their files; a file that restarts at 1 instead is detected and
        shifted. Labels that fit neither numbering are an error naming the file.
        """
        n_movements = len(MOVEMENT_DESCRIPTIONS[exercise])
        first = self.first_label[self.file_index(exercise)]
        moving = file_labels[file_labels != 0]
        lo, hi = (int(moving.min()), int(moving.max())) if moving.size else (first, first)
        if first <= lo and hi < first + n_movements:
            offset = first - 1
        elif 1 <= lo and hi <= n_movements:
            offset = 0  # a file that restarts its numbering at 1
        else:
            numbering = f"1-{n_movements}"
            if first != 1:
                numbering = f"{first}-{first + n_movements - 1} (or {numbering} when a file restarts at 1)"
            raise InputError(
                f"{source}: field 'restimulus' holds movement labels {lo}-{hi}, but exercise {exercise} of "
                f"{self.name} has {n_movements} movements, numbered {numbering}; is this the file of exercise "
                f"{exercise}? Check data.exercises and the file's name"
            )
        return np.where(file_labels != 0, file_labels - offset, 0)


def exercise_from_file_name(spec: DatabaseSpec, subject: int, file_name: str) -> str:
    """The exercise a NinaPro file name holds: ``S1_E2_A1.mat`` of DB2 holds exercise C."""
    for exercise in spec.file_exercises.values():
        if spec.file_name(subject, exercise) == file_name:
            return exercise
    expected = [spec.file_name(subject, e) for e in spec.file_exercises.values()]
    raise InputError(f"{file_name} is not a {spec.name} file of subject {subject}; expected one of {expected}")


DB1 = DatabaseSpec(
    name="db1",
    n_subjects=27,
    n_channels=10,
    sampling_rate_hz=100.0,
    repetitions=10,
    amputee=False,
    already_rectified=True,
    file_template="S{subject}_A1_E{file_index}.mat",
    file_exercises={1: "A", 2: "B", 3: "C"},
    first_label={1: 1, 2: 1, 3: 1},
)
DB2 = DatabaseSpec(
    name="db2",
    n_subjects=40,
    n_channels=12,
    sampling_rate_hz=2000.0,
    repetitions=6,
    amputee=False,
    already_rectified=False,
    file_template="S{subject}_E{file_index}_A1.mat",
    file_exercises={1: "B", 2: "C", 3: "D"},
    first_label={1: 1, 2: 18, 3: 41},
)
DB3 = DatabaseSpec(
    name="db3",
    n_subjects=11,
    n_channels=12,
    sampling_rate_hz=2000.0,
    repetitions=6,
    amputee=True,
    already_rectified=False,
    file_template="S{subject}_E{file_index}_A1.mat",
    file_exercises={1: "B", 2: "C", 3: "D"},
    first_label={1: 1, 2: 18, 3: 41},
    # Subjects 6 and 7 had room for only 10 electrodes; their files still carry 12 columns.
    missing_electrodes={6: (10, 11), 7: (10, 11)},
    # Subject 1 stopped before the last grasps (labels 30-40 = C13-C23).
    missing_movements={1: tuple(f"C{i}" for i in range(13, 24))},
)
DATABASES: dict[str, DatabaseSpec] = {spec.name: spec for spec in (DB1, DB2, DB3)}


def subject_name_pattern() -> str:
    """The regular expression a subject's name (``db2/s7``: database, then subject number) matches, over every
    database of :data:`DATABASES`: the configuration schema's, so that a database added here needs no second edit."""
    return f"^({'|'.join(re.escape(name) for name in DATABASES)})/s[0-9]+$"


def database(name: str) -> DatabaseSpec:
    try:
        return DATABASES[name]
    except KeyError:
        raise InputError(f"unknown database {name!r}; choose from {sorted(DATABASES)}") from None
