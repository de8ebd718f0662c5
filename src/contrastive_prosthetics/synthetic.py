"""Synthetic NinaPro recordings: MATLAB v5 files with NinaPro's variables, shapes, dtypes and label numbering.

This is the pipeline's embedded default dataset: no machine that runs the tests can download the real databases,
so the generator has to be realistic enough that band-pass filtering, moving-RMS features, cutting by
``restimulus`` × ``rerepetition`` and a per-frame classifier behave as they do on real data. Downstream code reads
these files exactly as it reads real ones.

Protocol (per file, i.e. per subject × exercise)
    A leading rest, then every movement of the exercise in catalogue order, each repeated
    ``spec.repetitions`` times: ``movement_s`` of cue (``stimulus`` = the file's label, ``repetition`` = 1..R)
    followed by ``rest_s`` of rest (both 0). Movements the subject never performed
    (``spec.missing_movements``) are left out; the remaining ones keep their label numbers. The relabelled
    tracks (``restimulus``/``rerepetition``) mark the movement the subject actually made: it starts after a
    reaction delay of 0.1-0.3 s and ends 0.05-0.2 s before the cue does, so it lies inside the cue. EMG and glove
    follow the relabelled movement, not the cue. During rest ``rerepetition`` is 0 (as in the real DB1/DB2 files)
    or, with ``rerepetition_in_rest="repetition"``, the number of the last repetition made (1 before the first).

Signal model
    Muscles. Fourteen muscles that surface electrodes on the forearm and upper arm pick up (finger, thumb and
    wrist flexors and extensors, pronator, supinator, brachioradialis, biceps and triceps), each with its angle
    around the limb and its depth under the skin (``MUSCLES``).

    Classes. Movements are built from eleven anatomical muscle synergies (finger flexion, wrist extension,
    supination, ...: ``SYNERGIES``; the seed perturbs their weights by ±20 %). Each class of the catalogue
    (A1..D9, the same class in every database) gets a log-normal synergy activation vector, log c = separability
    × 1.2 × z, and an overall effort of 0.3 × exp(separability × 0.2 × z) of maximal voluntary contraction (MVC)
    for its most active muscle. With separability 0 every class recruits the same broad co-contraction; larger
    values let each class lean on its own few synergies. These prototypes, and each class's 22-joint hand pose
    (drawn from four postural synergies, as hand postures are low-dimensional), come from a generator seeded by
    ``seed`` alone, so a class means the same thing for every subject and database. Each subject recruits each
    class with its own small deviation (log-normal, σ = 0.15 × separability).

    Envelopes. Each repetition's muscle activation follows the relabelled movement with raised-cosine onset and
    offset ramps of 80-150 ms and a plateau, its amplitude varied per repetition (log-normal σ 0.15 overall, 0.2
    per muscle: nobody repeats a movement with the same effort). On top of the tonic rest activity (about
    1.5 % MVC) every muscle fluctuates slowly (log-normal σ 0.1, a few hertz) and all share a small physiological
    tremor (8-12 Hz, 3 %).

    Surface EMG (2 kHz databases, Delsys Trigno). Each muscle's envelope modulates white Gaussian noise (the
    superposition of its motor-unit action-potential trains). The electrodes see a subject-specific mixing of the
    muscles (volume conduction): weight exp(-1.2 × depth) × exp(-Δangle² / 2σ²), σ = 25-35° widened by depth,
    with cross-talk of 2 % between the forearm and the upper arm, times a per-electrode gain (log-normal
    σ 0.25: skin, fat, contact). Electrodes 1-8 form a ring around the forearm, rotated by a random amount per
    subject; further electrodes sit over FDS, EDC, biceps and triceps, as in NinaPro. The shape of the
    action potentials and the tissue's low-pass filtering give surface EMG its spectrum; a first-order
    Butterworth band-pass 60-120 Hz on the mixed signal reproduces it (peak ≈ 85 Hz, median ≈ 100 Hz, as in
    forearm sEMG). Then an electrode noise floor (3 µV RMS) is added and everything passes the amplifier's
    20-450 Hz 4th-order Butterworth band-pass. A muscle right under an electrode at MVC gives about 300 µV RMS,
    so movements read 30-100 µV RMS and rest 5-10 µV RMS (volts, as NinaPro stores them). Mains interference
    (``mains_hz``, about 1.5 µV, random phase per electrode) is added to the amplified signal, and after the
    drift below a 16-bit converter over ±7.8 mV (step 2⁻²² V ≈ 0.24 µV) digitises it.

    Otto Bock electrodes (DB1, ``spec.already_rectified``, 100 Hz). They deliver the rectified, RMS-smoothed
    EMG: the square root of the volume-conducted sum of the muscles' mean squares plus a noise floor, times a
    smoothly fluctuating positive factor (the variance of a short-window RMS estimate), about 2 V per MVC under
    the electrode, 0.01 V floor, saturating at the 5 V output. No mains interference (filtered in the electrode).

    Amputees (``spec.amputee``). Residual-limb activation is 0.4-0.6 times as strong, varies 1.5 times as much
    between repetitions, and the noise floor is 1.8 times higher: weaker activation relative to noise.

    Drift. Each electrode's gain follows a slow AR(1) random walk over the repetitions (σ 0.015 per
    repetition, log scale: electrode shift, sweat, fatigue), interpolated linearly in time. Consecutive
    repetitions of a movement share it, as on real data, so it leaks a little class information: kept small.

    Dead electrodes (``spec.missing_electrodes`` plus ``params.dead_electrodes``) are written as exact zeros.

    Glove (22 CyberGlove joint angles, degrees). A subject-specific neutral pose; during each relabelled movement
    the hand moves from it to the class pose (varied per repetition) and back with raised-cosine ramps of
    0.3-0.5 s, plus 0.5° sensor noise. The glove is read at its own 25 Hz; NinaPro's files carry it at the EMG
    rate, and here each reading is held until the next (zero-order hold), which keeps the 22-column array
    compressible and makes writing a 2 kHz file several times faster than smooth interpolation would.

Randomness
    Class prototypes come from ``SeedSequence([seed])``; a subject's session (electrode placement, anatomy,
    neutral pose) from ``SeedSequence([seed, database, subject, 0])``; everything specific to one file from
    ``SeedSequence([seed, database, subject, file index])``, split into one stream per component. A file therefore
    does not depend on which other files are generated, and the same seed gives byte-identical files (with the
    same numpy, scipy and zlib): the MAT header's creation date is replaced by a fixed text.

Files
    MATLAB v5, one per subject × exercise, named ``spec.file_name``, with NinaPro's variables: ``emg`` float64
    (N, channels), ``glove`` float64 (N, 22), ``stimulus``/``restimulus``/``repetition``/``rerepetition`` uint8
    (N, 1), ``subject`` and ``exercise`` (the file index) 1×1 double. scipy.io.savemat encodes the variables;
    compression (``compress``) is zlib level 1 in MATLAB's miCOMPRESSED elements. Written atomically (temporary
    file, then rename).
"""

from __future__ import annotations

import io
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import scipy.io
import scipy.signal

from contrastive_prosthetics.ninapro import EXERCISES, GLOVE_CHANNELS, DatabaseSpec, movement_names

# ---------------------------------------------------------------------------------------------------------------
# Anatomy


@dataclass(frozen=True)
class Muscle:
    name: str
    angle_deg: float  # around the limb: 0 volar midline, 90 radial border, 180 dorsal midline, 270 ulnar border
    depth: float  # 0 superficial .. 1 deep: deeper muscles reach the skin weaker and more spread out
    upper_arm: bool = False


MUSCLES: tuple[Muscle, ...] = (
    Muscle("FDS", 0.0, 0.3),  # flexor digitorum superficialis
    Muscle("FDP", 320.0, 0.9),  # flexor digitorum profundus
    Muscle("FPL", 40.0, 0.9),  # flexor pollicis longus
    Muscle("FCR", 35.0, 0.1),  # flexor carpi radialis
    Muscle("FCU", 290.0, 0.1),  # flexor carpi ulnaris
    Muscle("PT", 65.0, 0.4),  # pronator teres
    Muscle("BR", 95.0, 0.1),  # brachioradialis
    Muscle("ECR", 130.0, 0.1),  # extensor carpi radialis longus and brevis
    Muscle("SUP", 150.0, 1.0),  # supinator
    Muscle("APL", 165.0, 0.7),  # abductor pollicis longus and the thumb extensors
    Muscle("EDC", 190.0, 0.1),  # extensor digitorum communis
    Muscle("ECU", 235.0, 0.1),  # extensor carpi ulnaris
    Muscle("BIC", 0.0, 0.1, upper_arm=True),  # biceps brachii: supination, elbow stabilisation
    Muscle("TRI", 180.0, 0.1, upper_arm=True),  # triceps brachii: elbow stabilisation
)
MUSCLE_INDEX = {muscle.name: i for i, muscle in enumerate(MUSCLES)}

# Synergy -> the muscles it recruits and how strongly (relative).
SYNERGIES: dict[str, dict[str, float]] = {
    "finger flexion": {"FDS": 1.0, "FDP": 0.9, "FCU": 0.2, "FCR": 0.2},
    "finger extension": {"EDC": 1.0, "ECU": 0.3, "ECR": 0.3},
    "thumb flexion and opposition": {"FPL": 1.0, "FDS": 0.2},
    "thumb extension and abduction": {"APL": 1.0, "ECR": 0.3, "EDC": 0.2},
    "wrist flexion": {"FCR": 1.0, "FCU": 1.0, "FDS": 0.3},
    "wrist extension": {"ECR": 1.0, "ECU": 0.8, "EDC": 0.3},
    "radial deviation": {"FCR": 0.6, "ECR": 0.8, "APL": 0.4, "BR": 0.3},
    "ulnar deviation": {"FCU": 0.8, "ECU": 0.9},
    "pronation": {"PT": 1.0, "FCR": 0.3, "BR": 0.2},
    "supination": {"SUP": 1.0, "BIC": 0.8, "BR": 0.3},
    "arm stabilisation": {"BIC": 0.5, "TRI": 0.7, "BR": 0.4},
}
# NinaPro: 8 electrodes equally spaced around the forearm, then the activity spots of these muscles.
RING_ELECTRODES = 8
SPOT_ELECTRODE_MUSCLES = ("FDS", "EDC", "BIC", "TRI")
POSTURAL_SYNERGIES = 4
HAND_POSE_SCALE_DEG = 10.0  # per postural synergy: class poses depart from neutral by 15° at a typical joint
JOINT_RANGE_DEG = (-30.0, 110.0)  # no joint the glove measures bends further
NEUTRAL_POSE_DEG = (0.0, 30.0)  # a relaxed hand is slightly flexed

# ---------------------------------------------------------------------------------------------------------------
# Amplitudes and variability (see the module docstring for where they come from)

MVC_RMS_V = 3e-4  # surface EMG RMS of a muscle right under an electrode at maximal voluntary contraction
NOISE_FLOOR_RMS_V = 3e-6
MAINS_AMPLITUDE_V = 1.5e-6
OTTO_BOCK_V_PER_MVC = 2.0
OTTO_BOCK_NOISE_FLOOR_V = 0.01
OTTO_BOCK_SATURATION_V = 5.0
TONIC_REST_MVC = 0.015
CLASS_EFFORT_MVC = 0.3
MAX_ACTIVATION_MVC = 0.9
SYNERGY_SPREAD = 1.2  # log-normal σ of a class's synergy activations at separability 1
EFFORT_SPREAD = 0.2
SUBJECT_RECRUITMENT_SPREAD = 0.15
REPETITION_AMPLITUDE_SPREAD = 0.15
REPETITION_MUSCLE_SPREAD = 0.2
AMPUTEE_ACTIVATION = (0.4, 0.6)
AMPUTEE_VARIABILITY = 1.5
AMPUTEE_NOISE = 1.8
REACTION_DELAY_S = (0.1, 0.3)
EARLY_END_S = (0.05, 0.2)
MUSCLE_RAMP_S = (0.08, 0.15)
HAND_RAMP_S = (0.3, 0.5)
DRIFT_STEP = 0.015
DRIFT_PERSISTENCE = 0.97
GLOVE_RATE_HZ = 25.0
GLOVE_NOISE_DEG = 0.5
TISSUE_BAND_HZ = (60.0, 120.0)
AMPLIFIER_BAND_HZ = (20.0, 450.0)

# 16 bits over ±7.8 mV. A power-of-two step keeps the doubles' mantissas short: the files compress to a quarter.
ADC_STEP_V = 2.0**-22

MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by: contrastive-prosthetics synthetic"
MAT_HEADER_TEXT_BYTES = 116
MAT_HEADER_BYTES = 128
MI_COMPRESSED = 15  # MAT v5 data type of a zlib-compressed element

# ---------------------------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class SyntheticParams:
    movement_s: float = 1.5  # cued movement duration per repetition (NinaPro real: 5 s)
    rest_s: float = 1.0  # rest between repetitions (NinaPro real: 3 s)
    separability: float = 1.0  # 0 = all classes share one activation pattern, larger = more distinct
    rerepetition_in_rest: str = "zero"  # "zero" (real DB1/DB2) or "repetition" (the last repetition's number)
    dead_electrodes: tuple[int, ...] = ()  # 0-based columns written flat in addition to spec.missing_electrodes
    mains_hz: float = 50.0  # 0 switches mains interference off
    compress: bool = True  # MATLAB and NinaPro write compressed v5 files

    def __post_init__(self) -> None:
        shortest = REACTION_DELAY_S[1] + EARLY_END_S[1] + 0.3  # leaves at least 0.3 s of relabelled movement
        if self.movement_s < shortest:
            raise ValueError(f"synthetic movement_s must be at least {shortest:g} s, not {self.movement_s}")
        if self.rest_s <= 0:
            raise ValueError(f"synthetic rest_s must be positive, not {self.rest_s}")
        if self.separability < 0:
            raise ValueError(f"synthetic separability must be >= 0, not {self.separability}")
        if self.rerepetition_in_rest not in ("zero", "repetition"):
            raise ValueError(
                f"synthetic rerepetition_in_rest must be 'zero' or 'repetition', not {self.rerepetition_in_rest!r}"
            )
        if self.mains_hz < 0:
            raise ValueError(f"synthetic mains_hz must be >= 0, not {self.mains_hz}")


def generate_recording(
    spec: DatabaseSpec, subject: int, exercise: str, params: SyntheticParams, seed: int
) -> dict[str, np.ndarray]:
    """One subject × exercise recording as NinaPro's MATLAB variables (see the module docstring)."""
    spec.check_subject(subject)
    file_index = spec.file_index(exercise)
    fs = spec.sampling_rate_hz
    dead = _dead_electrodes(spec, subject, params)
    if not spec.already_rectified and params.mains_hz >= fs / 2:
        raise ValueError(f"mains_hz {params.mains_hz} is above the Nyquist frequency of {spec.name} ({fs / 2} Hz)")

    prototypes = _class_prototypes(seed, params.separability)
    session = _subject_session(spec, subject, seed, params.separability)
    streams = [np.random.default_rng(s) for s in _seed_sequence(seed, spec, subject, file_index).spawn(6)]
    timing_rng, envelope_rng, emg_rng, noise_rng, drift_rng, glove_rng = streams

    protocol = _lay_out_protocol(spec, subject, exercise, params, fs, timing_rng)
    envelopes = _muscle_envelopes(protocol, prototypes, session, spec.amputee, fs, envelope_rng)
    if spec.already_rectified:
        emg = _otto_bock_emg(envelopes, session, fs, noise_rng)
    else:
        emg = _surface_emg(envelopes, session, fs, params.mains_hz, emg_rng, noise_rng)
    del envelopes
    _apply_electrode_drift(emg, protocol, drift_rng)
    if spec.already_rectified:
        np.minimum(emg, OTTO_BOCK_SATURATION_V, out=emg)  # the electrode's output stage saturates
    else:
        _digitise(emg)
    emg[list(dead)] = 0.0
    glove = _glove(protocol, prototypes, session, fs, glove_rng)

    labels = _label_tracks(protocol, params.rerepetition_in_rest)
    # Channel-major arrays transposed: Fortran-ordered (N, channels), which savemat writes without a copy.
    return {
        "emg": emg.T,
        "stimulus": labels["stimulus"],
        "glove": glove.T,
        "subject": np.array([[subject]], dtype=np.float64),
        "exercise": np.array([[file_index]], dtype=np.float64),
        "repetition": labels["repetition"],
        "restimulus": labels["restimulus"],
        "rerepetition": labels["rerepetition"],
    }


def write_subject_file(
    spec: DatabaseSpec, subject: int, exercise: str, path: Path, params: SyntheticParams, seed: int
) -> Path:
    """Generate one recording and write it to ``path`` atomically; returns ``path``."""
    path = Path(path)
    variables = generate_recording(spec, subject, exercise, params, seed)
    _write_mat_atomically(path, variables, params.compress)
    return path


def write_subject(
    spec: DatabaseSpec, subject: int, exercises: list[str], out_dir: Path, params: SyntheticParams, seed: int
) -> list[Path]:
    """One file per exercise in ``out_dir``, named as NinaPro names it (``spec.file_name``)."""
    out_dir = Path(out_dir)
    return [
        write_subject_file(spec, subject, exercise, out_dir / spec.file_name(subject, exercise), params, seed)
        for exercise in exercises
    ]


# ---------------------------------------------------------------------------------------------------------------
# Seeds, classes and subjects


def _database_seed_index(spec: DatabaseSpec) -> int:
    """db1 -> 1, db2 -> 2, ...: stable however many databases ninapro.py lists; other names hash."""
    digits = spec.name.removeprefix("db")
    return int(digits) if digits.isdigit() else zlib.crc32(spec.name.encode())


def _seed_sequence(seed: int, spec: DatabaseSpec, subject: int, file_index: int) -> np.random.SeedSequence:
    # File indices start at 1, so index 0 names the subject's session, shared by all of the subject's files.
    return np.random.SeedSequence([seed, _database_seed_index(spec), subject, file_index])


def _catalogue() -> list[str]:
    """Every movement of every exercise, in a fixed order, so that a class's prototype never depends on which
    exercises a run selects."""
    return [name for exercise in EXERCISES for name in movement_names(exercise)]


@dataclass(frozen=True)
class _ClassPrototypes:
    index: dict[str, int]  # movement name -> row
    activation: np.ndarray  # (classes, muscles), fraction of MVC
    hand_pose: np.ndarray  # (classes, 22), joint-angle offsets from the neutral pose in degrees


def _class_prototypes(seed: int, separability: float) -> _ClassPrototypes:
    names = _catalogue()
    rng = np.random.default_rng(np.random.SeedSequence([seed]))
    # Draw everything before scaling, so separability changes how far classes spread, never which way.
    synergy_jitter = rng.lognormal(0.0, 0.2, size=(len(MUSCLES), len(SYNERGIES)))
    synergy_z = rng.standard_normal((len(names), len(SYNERGIES)))
    effort_z = rng.standard_normal(len(names))
    postural_synergies = rng.standard_normal((GLOVE_CHANNELS, POSTURAL_SYNERGIES))
    posture_z = rng.standard_normal((len(names), POSTURAL_SYNERGIES))

    synergy_matrix = _synergy_matrix() * synergy_jitter
    synergy_activation = np.exp(separability * SYNERGY_SPREAD * synergy_z)
    muscle_pattern = synergy_activation @ synergy_matrix.T
    muscle_pattern /= muscle_pattern.max(axis=1, keepdims=True)
    effort = CLASS_EFFORT_MVC * np.exp(separability * EFFORT_SPREAD * effort_z)
    activation = np.minimum(muscle_pattern * effort[:, None], MAX_ACTIVATION_MVC)
    hand_pose = HAND_POSE_SCALE_DEG * posture_z @ postural_synergies.T
    return _ClassPrototypes({name: i for i, name in enumerate(names)}, activation, hand_pose)


def _synergy_matrix() -> np.ndarray:
    """(muscles, synergies) weights from the SYNERGIES table."""
    matrix = np.zeros((len(MUSCLES), len(SYNERGIES)))
    for column, weights in enumerate(SYNERGIES.values()):
        for muscle, weight in weights.items():
            matrix[MUSCLE_INDEX[muscle], column] = weight
    return matrix


@dataclass(frozen=True)
class _Session:
    """What stays fixed over one subject's recording session: anatomy, electrode placement, baseline levels."""

    mixing: np.ndarray  # (electrodes, muscles): how much of each muscle each electrode sees, electrode gain included
    recruitment: np.ndarray  # (classes, muscles): the subject's multiplicative deviation from each prototype
    tonic: np.ndarray  # (muscles,) rest activity, fraction of MVC
    activation_scale: float  # 1 for intact limbs; lower for a residual limb
    noise_rms: np.ndarray  # (electrodes,) noise floor, in the database's output units
    mains_amplitude: np.ndarray  # (electrodes,) volts
    neutral_pose: np.ndarray  # (22,) degrees


def _subject_session(spec: DatabaseSpec, subject: int, seed: int, separability: float) -> _Session:
    rng = np.random.default_rng(_seed_sequence(seed, spec, subject, 0))
    mixing = _volume_conduction(spec.n_channels, rng)
    mixing *= rng.lognormal(0.0, 0.25, size=(spec.n_channels, 1))  # skin, fat and contact differ per electrode
    recruitment = np.exp(
        separability * SUBJECT_RECRUITMENT_SPREAD * rng.standard_normal((len(_catalogue()), len(MUSCLES)))
    )
    tonic = TONIC_REST_MVC * rng.lognormal(0.0, 0.3, size=len(MUSCLES))
    activation_scale = rng.uniform(*AMPUTEE_ACTIVATION) if spec.amputee else 1.0
    noise_scale = AMPUTEE_NOISE if spec.amputee else 1.0
    floor = OTTO_BOCK_NOISE_FLOOR_V if spec.already_rectified else NOISE_FLOOR_RMS_V
    noise_rms = floor * noise_scale * rng.lognormal(0.0, 0.2, size=spec.n_channels)
    mains_amplitude = MAINS_AMPLITUDE_V * rng.lognormal(0.0, 0.5, size=spec.n_channels)
    neutral_pose = rng.uniform(*NEUTRAL_POSE_DEG, size=GLOVE_CHANNELS)
    return _Session(mixing, recruitment, tonic, activation_scale, noise_rms, mains_amplitude, neutral_pose)


def _volume_conduction(n_electrodes: int, rng: np.random.Generator) -> np.ndarray:
    """(electrodes, muscles) weights: each electrode mostly sees the muscles under it, deep ones weaker and wider."""
    if n_electrodes > RING_ELECTRODES + len(SPOT_ELECTRODE_MUSCLES):
        raise ValueError(f"the synthetic electrode layout has room for at most 12 electrodes, not {n_electrodes}")
    ring_rotation = rng.uniform(0.0, 360.0 / RING_ELECTRODES)  # where the subject's electrode 1 landed
    ring = ring_rotation + np.arange(min(n_electrodes, RING_ELECTRODES)) * 360.0 / RING_ELECTRODES
    spots = SPOT_ELECTRODE_MUSCLES[: max(n_electrodes - RING_ELECTRODES, 0)]
    spot_angles = np.array([MUSCLES[MUSCLE_INDEX[m]].angle_deg for m in spots]) + rng.normal(0, 8.0, len(spots))
    electrode_angle = np.concatenate([ring, spot_angles])
    electrode_upper_arm = np.array([False] * len(ring) + [MUSCLES[MUSCLE_INDEX[m]].upper_arm for m in spots])

    muscle_angle = np.array([m.angle_deg for m in MUSCLES])
    muscle_depth = np.array([m.depth for m in MUSCLES])
    muscle_upper_arm = np.array([m.upper_arm for m in MUSCLES])
    spread_deg = rng.uniform(25.0, 35.0) + 12.0 * muscle_depth  # subcutaneous fat differs between subjects
    distance = (electrode_angle[:, None] - muscle_angle[None, :] + 180.0) % 360.0 - 180.0
    weight = np.exp(-1.2 * muscle_depth) * np.exp(-(distance**2) / (2.0 * spread_deg**2))
    same_segment = electrode_upper_arm[:, None] == muscle_upper_arm[None, :]
    return weight * np.where(same_segment, 1.0, 0.02)


def _dead_electrodes(spec: DatabaseSpec, subject: int, params: SyntheticParams) -> tuple[int, ...]:
    dead = tuple(sorted(set(spec.missing_electrodes.get(subject, ())) | set(params.dead_electrodes)))
    out_of_range = [c for c in dead if not 0 <= c < spec.n_channels]
    if out_of_range:
        raise ValueError(f"dead electrodes {out_of_range} are outside {spec.name}'s columns 0-{spec.n_channels - 1}")
    return dead


# ---------------------------------------------------------------------------------------------------------------
# Protocol and labels


@dataclass(frozen=True)
class _Protocol:
    """One entry per performed repetition, in recording order; sample indices are [start, end)."""

    n_samples: int
    movement: list[str]  # catalogue name, e.g. 'C6'
    label: np.ndarray  # the label the file gives the movement
    number: np.ndarray  # repetition 1..R
    cue_start: np.ndarray  # stimulus
    cue_end: np.ndarray
    start: np.ndarray  # restimulus: the movement the subject actually made
    end: np.ndarray


def _lay_out_protocol(
    spec: DatabaseSpec, subject: int, exercise: str, params: SyntheticParams, fs: float, rng: np.random.Generator
) -> _Protocol:
    first_label = spec.first_label[spec.file_index(exercise)]
    missing = set(spec.missing_movements.get(subject, ()))
    names = movement_names(exercise)
    performed = [(name, first_label + i) for i, name in enumerate(names) if name not in missing]
    reps = spec.repetitions
    n_movement, n_rest = round(params.movement_s * fs), round(params.rest_s * fs)
    n_total = len(performed) * reps

    cue_start = n_rest + np.arange(n_total) * (n_movement + n_rest)  # a leading rest, then cue + rest blocks
    cue_end = cue_start + n_movement
    start = cue_start + np.round(rng.uniform(*REACTION_DELAY_S, size=n_total) * fs).astype(int)
    end = cue_end - np.round(rng.uniform(*EARLY_END_S, size=n_total) * fs).astype(int)
    return _Protocol(
        n_samples=n_rest + n_total * (n_movement + n_rest),
        movement=[name for name, _ in performed for _ in range(reps)],
        label=np.repeat([label for _, label in performed], reps),
        number=np.tile(np.arange(1, reps + 1), len(performed)),
        cue_start=cue_start,
        cue_end=cue_end,
        start=start,
        end=end,
    )


def _label_tracks(protocol: _Protocol, rerepetition_in_rest: str) -> dict[str, np.ndarray]:
    """NinaPro's four label columns, uint8 (N, 1)."""
    names = ("stimulus", "repetition", "restimulus", "rerepetition")
    tracks = {name: np.zeros(protocol.n_samples, dtype=np.uint8) for name in names}
    for i in range(len(protocol.label)):
        cue = slice(protocol.cue_start[i], protocol.cue_end[i])
        moving = slice(protocol.start[i], protocol.end[i])
        tracks["stimulus"][cue], tracks["repetition"][cue] = protocol.label[i], protocol.number[i]
        tracks["restimulus"][moving], tracks["rerepetition"][moving] = protocol.label[i], protocol.number[i]
    if rerepetition_in_rest == "repetition":
        tracks["rerepetition"] = _carry_last_repetition(tracks["rerepetition"])
    return {name: track[:, None] for name, track in tracks.items()}


def _carry_last_repetition(rerepetition: np.ndarray) -> np.ndarray:
    """Rest samples take the number of the last repetition made; rest before the first movement takes 1."""
    positions = np.where(rerepetition > 0, np.arange(rerepetition.size), 0)
    last_moving = np.maximum.accumulate(positions)
    carried = rerepetition[last_moving]
    return np.where(carried > 0, carried, 1).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Signals


def _raised_cosine_window(t: np.ndarray, duration: float, rise: float, fall: float) -> np.ndarray:
    """1 on the plateau of [0, duration], raised-cosine ramps of length rise and fall at its ends, 0 outside."""
    up = np.clip(t / rise, 0.0, 1.0)
    down = np.clip((duration - t) / fall, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down))


def _interpolated_noise(rng: np.random.Generator, n_samples: int, fs: float, knot_hz: float) -> np.ndarray:
    """Unit Gaussian knots at knot_hz, linearly interpolated to fs: noise with a few hertz of bandwidth."""
    spacing = fs / knot_hz
    n_knots = int(np.ceil(n_samples / spacing)) + 1
    return np.interp(np.arange(n_samples), np.arange(n_knots) * spacing, rng.standard_normal(n_knots))


def _muscle_envelopes(
    protocol: _Protocol,
    prototypes: _ClassPrototypes,
    session: _Session,
    amputee: bool,
    fs: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """(muscles, N) activation in fractions of MVC: tonic rest plus one ramped plateau per repetition."""
    variability = AMPUTEE_VARIABILITY if amputee else 1.0
    n_reps = len(protocol.label)
    rows = np.array([prototypes.index[name] for name in protocol.movement], dtype=int)
    activation = prototypes.activation[rows] * session.recruitment[rows] * session.activation_scale
    activation *= rng.lognormal(0.0, variability * REPETITION_AMPLITUDE_SPREAD, size=(n_reps, 1))
    activation *= rng.lognormal(0.0, variability * REPETITION_MUSCLE_SPREAD, size=activation.shape)
    activation = np.minimum(activation, MAX_ACTIVATION_MVC)
    rise = rng.uniform(*MUSCLE_RAMP_S, size=n_reps)
    fall = rng.uniform(*MUSCLE_RAMP_S, size=n_reps)

    envelopes = np.empty((len(MUSCLES), protocol.n_samples))
    envelopes[:] = (session.tonic * session.activation_scale)[:, None]
    for i in range(n_reps):
        duration = (protocol.end[i] - protocol.start[i]) / fs
        t = np.arange(protocol.end[i] - protocol.start[i]) / fs
        profile = _raised_cosine_window(t, duration, min(rise[i], duration / 3), min(fall[i], duration / 3))
        envelopes[:, protocol.start[i] : protocol.end[i]] += activation[i][:, None] * profile[None, :]

    # Slow fluctuation of each muscle's drive, and a physiological tremor common to all of them.
    for row in envelopes:
        row *= np.exp(0.1 * _interpolated_noise(rng, protocol.n_samples, fs, knot_hz=4.0))
    tremor_hz, tremor_phase = rng.uniform(8.0, 12.0), rng.uniform(0.0, 2 * np.pi)
    envelopes *= 1.0 + 0.03 * np.sin(2 * np.pi * tremor_hz * np.arange(protocol.n_samples) / fs + tremor_phase)
    return envelopes


def _power_gain(sos: np.ndarray, fs: float) -> float:
    """Output/input variance of a filter fed white noise."""
    _, response = scipy.signal.sosfreqz(sos, worN=4096, fs=fs)
    return float(np.mean(np.abs(response) ** 2))


def _surface_emg(
    envelopes: np.ndarray,
    session: _Session,
    fs: float,
    mains_hz: float,
    emg_rng: np.random.Generator,
    noise_rng: np.random.Generator,
) -> np.ndarray:
    """(electrodes, N) volts. Overwrites ``envelopes`` with the muscles' white-noise carriers."""
    tissue = scipy.signal.butter(1, TISSUE_BAND_HZ, btype="bandpass", fs=fs, output="sos")
    amplifier = scipy.signal.butter(4, AMPLIFIER_BAND_HZ, btype="bandpass", fs=fs, output="sos")
    emg_gain = np.sqrt(_power_gain(np.vstack([tissue, amplifier]), fs))
    noise_gain = np.sqrt(_power_gain(amplifier, fs))

    for row in envelopes:  # in place, row by row: one (muscles, N) array instead of three
        row *= emg_rng.standard_normal(row.size)
    emg = (session.mixing * (MVC_RMS_V / emg_gain)) @ envelopes
    emg = scipy.signal.sosfilt(tissue, emg, axis=-1)
    for row, noise_rms in zip(emg, session.noise_rms, strict=True):
        row += noise_rng.standard_normal(row.size) * (noise_rms / noise_gain)
    emg = scipy.signal.sosfilt(amplifier, emg, axis=-1)

    if mains_hz > 0:
        phase_in_time = 2 * np.pi * mains_hz * np.arange(emg.shape[1]) / fs
        sine, cosine = np.sin(phase_in_time), np.cos(phase_in_time)
        phases = noise_rng.uniform(0.0, 2 * np.pi, size=len(emg))
        for row, amplitude, phase in zip(emg, session.mains_amplitude, phases, strict=True):
            row += amplitude * (np.cos(phase) * sine + np.sin(phase) * cosine)
    return emg


def _otto_bock_emg(envelopes: np.ndarray, session: _Session, fs: float, rng: np.random.Generator) -> np.ndarray:
    """(electrodes, N) volts of rectified, RMS-smoothed EMG. Overwrites ``envelopes`` with their squares."""
    np.square(envelopes, out=envelopes)
    # Independent muscles add in power; the electrode reports the RMS (in MVC units, then volts).
    mean_square = (session.mixing**2) @ envelopes * OTTO_BOCK_V_PER_MVC**2 + (session.noise_rms**2)[:, None]
    emg = np.sqrt(mean_square)
    # A short-window RMS of a random signal fluctuates around its expectation by roughly 15 %.
    for row in emg:
        row *= np.exp(0.15 * _interpolated_noise(rng, row.size, fs, knot_hz=15.0) - 0.15**2 / 2)
    return emg


def _apply_electrode_drift(emg: np.ndarray, protocol: _Protocol, rng: np.random.Generator) -> None:
    """Multiply each electrode by a gain that wanders slowly from repetition to repetition (in place)."""
    knots = np.concatenate([[0], protocol.cue_start])
    steps = rng.normal(0.0, DRIFT_STEP, size=(len(emg), knots.size))
    log_gain = scipy.signal.lfilter([1.0], [1.0, -DRIFT_PERSISTENCE], steps, axis=1)
    samples = np.arange(emg.shape[1])
    for row, gain in zip(emg, np.exp(log_gain), strict=True):
        row *= np.interp(samples, knots, gain)


def _digitise(emg: np.ndarray) -> None:
    """Round to the ADC's step and clip to its range (in place), as the amplifier's 16-bit converter does."""
    np.multiply(emg, 1.0 / ADC_STEP_V, out=emg)
    np.round(emg, out=emg)
    np.clip(emg, -(2**15), 2**15 - 1, out=emg)
    emg *= ADC_STEP_V


def _glove(
    protocol: _Protocol, prototypes: _ClassPrototypes, session: _Session, fs: float, rng: np.random.Generator
) -> np.ndarray:
    """(22, N) joint angles in degrees, read at GLOVE_RATE_HZ and held between readings."""
    n_readings = int(np.floor((protocol.n_samples - 1) * GLOVE_RATE_HZ / fs)) + 1
    reading_time = np.arange(n_readings) / GLOVE_RATE_HZ
    n_reps = len(protocol.label)
    rows = np.array([prototypes.index[name] for name in protocol.movement], dtype=int)
    pose = prototypes.hand_pose[rows] * rng.lognormal(0.0, 0.1, size=(n_reps, 1))
    pose += rng.normal(0.0, 2.0, size=pose.shape)  # the hand never takes exactly the same pose twice
    rise = rng.uniform(*HAND_RAMP_S, size=n_reps)
    fall = rng.uniform(*HAND_RAMP_S, size=n_reps)

    angles = np.repeat(session.neutral_pose[:, None], n_readings, axis=1)
    for i in range(n_reps):
        start, end = protocol.start[i] / fs, protocol.end[i] / fs
        first, last = np.searchsorted(reading_time, [start, end])
        t = reading_time[first:last] - start
        duration = end - start
        window = _raised_cosine_window(t, duration, min(rise[i], duration / 2), min(fall[i], duration / 2))
        angles[:, first:last] += pose[i][:, None] * window[None, :]
    np.clip(angles, *JOINT_RANGE_DEG, out=angles)
    angles += rng.normal(0.0, GLOVE_NOISE_DEG, size=angles.shape)

    reading_of_sample = np.floor(np.arange(protocol.n_samples) * (GLOVE_RATE_HZ / fs)).astype(int)
    return angles[:, reading_of_sample]


# ---------------------------------------------------------------------------------------------------------------
# Writing


def _write_mat_atomically(path: Path, variables: dict[str, np.ndarray], compress: bool) -> None:
    """Write the MAT file into a temporary file next to ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            _write_mat(stream, variables, compress)
        os.chmod(temporary, 0o644)  # mkstemp creates files only the owner can read
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_mat(stream: BinaryIO, variables: dict[str, np.ndarray], compress: bool) -> None:
    """A MATLAB v5 file whose bytes depend on the variables only.

    scipy.io.savemat writes each variable (uncompressed, format 5); its header text, which carries the creation
    date, is replaced by a fixed one. Compression is done here, as savemat would do it (one zlib stream per
    variable in a miCOMPRESSED element), but at zlib level 1: on digitised EMG savemat's level 6 takes about six
    times as long for a file only about 15 % smaller.
    """
    header_written = False
    for name, value in variables.items():
        single = io.BytesIO()
        scipy.io.savemat(single, {name: value}, format="5", do_compression=False, oned_as="column")
        with single.getbuffer() as written:
            if not header_written:
                # Keep savemat's version and byte-order marks, which follow the text.
                stream.write(MAT_HEADER_TEXT.ljust(MAT_HEADER_TEXT_BYTES, b" "))
                stream.write(written[MAT_HEADER_TEXT_BYTES:MAT_HEADER_BYTES])
                header_written = True
            element = written[MAT_HEADER_BYTES:]
            if compress:
                packed = zlib.compress(element, level=1)
                stream.write(np.array([MI_COMPRESSED, len(packed)], dtype=np.uint32).tobytes())
                stream.write(packed)
            else:
                stream.write(element)
