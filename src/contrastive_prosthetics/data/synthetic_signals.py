"""The synthetic recordings' signal model (:mod:`.synthetic` lays out the protocol and writes the files).

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

    Glove (22 CyberGlove joint angles, degrees). Each of the eleven muscle synergies also moves the hand along a
    direction of its own in the 22 joint angles (about 40 % of the joints, drawn from the seed); a class's pose is
    the sum of those directions weighted by the same (log) synergy activations that drive its muscles. Pose and
    EMG thus share their cause, as a hand's do: a gesture described by its pose alone (zero-shot, never trained
    on) can be recognised from what the synergies it uses look like in the EMG. A subject-specific neutral pose;
    during each relabelled movement the hand moves from it to the class pose (varied per repetition) and back with
    raised-cosine ramps of 0.3-0.5 s, plus 0.5° sensor noise. The glove is read at its own 25 Hz; NinaPro's files
    carry it at the EMG rate, and here each reading is held until the next (zero-order hold), which keeps the
    22-column array compressible and makes writing a 2 kHz file several times faster than smooth interpolation
    would.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import scipy.signal

from ..core.errors import InputError
from .ninapro import EXERCISES, GLOVE_CHANNELS, DatabaseSpec, movement_names

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

# ---------------------------------------------------------------------------------------------------------------
# Seeds, classes and subjects


def _database_seed_index(spec: DatabaseSpec) -> int:
    """db1 -> 1, db2 -> 2, ...: stable however many databases ninapro.py lists; other names hash."""
    digits = spec.name.removeprefix("db")
    return int(digits) if digits.isdigit() else zlib.crc32(spec.name.encode())


def seed_sequence(seed: int, spec: DatabaseSpec, subject: int, file_index: int) -> np.random.SeedSequence:
    # File indices start at 1, so index 0 names the subject's session, shared by all of the subject's files.
    return np.random.SeedSequence([seed, _database_seed_index(spec), subject, file_index])


def _catalogue() -> list[str]:
    """Every movement of every exercise, in a fixed order, so that a class's prototype never depends on which
    exercises a run selects."""
    return [name for exercise in EXERCISES for name in movement_names(exercise)]


@dataclass(frozen=True)
class ClassPrototypes:
    index: dict[str, int]  # movement name -> row
    activation: np.ndarray  # (classes, muscles), fraction of MVC
    hand_pose: np.ndarray  # (classes, 22), joint-angle offsets from the neutral pose in degrees


def class_prototypes(seed: int, separability: float) -> ClassPrototypes:
    names = _catalogue()
    rng = np.random.default_rng(np.random.SeedSequence([seed]))
    # Draw everything before scaling, so separability changes how far classes spread, never which way.
    synergy_jitter = rng.lognormal(0.0, 0.2, size=(len(MUSCLES), len(SYNERGIES)))
    synergy_z = rng.standard_normal((len(names), len(SYNERGIES)))
    effort_z = rng.standard_normal(len(names))
    # Each muscle synergy also moves the hand: a direction in the 22 joint angles (a few joints, mostly).
    synergy_pose = rng.standard_normal((len(SYNERGIES), GLOVE_CHANNELS)) * (
        rng.random((len(SYNERGIES), GLOVE_CHANNELS)) < 0.4
    )

    synergy_matrix = _synergy_matrix() * synergy_jitter
    synergy_activation = np.exp(separability * SYNERGY_SPREAD * synergy_z)
    muscle_pattern = synergy_activation @ synergy_matrix.T
    muscle_pattern /= muscle_pattern.max(axis=1, keepdims=True)
    effort = CLASS_EFFORT_MVC * np.exp(separability * EFFORT_SPREAD * effort_z)
    activation = np.minimum(muscle_pattern * effort[:, None], MAX_ACTIVATION_MVC)
    # The pose follows from the same synergy activations that drive the muscles (centred log activations), so a
    # gesture's pose says what its EMG looks like: the link a pose-described, never-trained gesture relies on.
    hand_pose = HAND_POSE_SCALE_DEG * synergy_z @ synergy_pose / np.sqrt(0.4 * len(SYNERGIES) / POSTURAL_SYNERGIES)
    return ClassPrototypes({name: i for i, name in enumerate(names)}, activation, hand_pose)


def _synergy_matrix() -> np.ndarray:
    """(muscles, synergies) weights from the SYNERGIES table."""
    matrix = np.zeros((len(MUSCLES), len(SYNERGIES)))
    for column, weights in enumerate(SYNERGIES.values()):
        for muscle, weight in weights.items():
            matrix[MUSCLE_INDEX[muscle], column] = weight
    return matrix


@dataclass(frozen=True)
class Session:
    """What stays fixed over one subject's recording session: anatomy, electrode placement, baseline levels."""

    mixing: np.ndarray  # (electrodes, muscles): how much of each muscle each electrode sees, electrode gain included
    recruitment: np.ndarray  # (classes, muscles): the subject's multiplicative deviation from each prototype
    tonic: np.ndarray  # (muscles,) rest activity, fraction of MVC
    activation_scale: float  # 1 for intact limbs; lower for a residual limb
    noise_rms: np.ndarray  # (electrodes,) noise floor, in the database's output units
    mains_amplitude: np.ndarray  # (electrodes,) volts
    neutral_pose: np.ndarray  # (22,) degrees


def subject_session(spec: DatabaseSpec, subject: int, seed: int, separability: float) -> Session:
    rng = np.random.default_rng(seed_sequence(seed, spec, subject, 0))
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
    return Session(mixing, recruitment, tonic, activation_scale, noise_rms, mains_amplitude, neutral_pose)


def _volume_conduction(n_electrodes: int, rng: np.random.Generator) -> np.ndarray:
    """(electrodes, muscles) weights: each electrode mostly sees the muscles under it, deep ones weaker and wider."""
    if n_electrodes > RING_ELECTRODES + len(SPOT_ELECTRODE_MUSCLES):
        raise InputError(f"the synthetic electrode layout has room for at most 12 electrodes, not {n_electrodes}")
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


@dataclass(frozen=True)
class Protocol:
    """One entry per performed repetition, in recording order; sample indices are [start, end)."""

    n_samples: int
    movement: list[str]  # catalogue name, e.g. 'C6'
    label: np.ndarray  # the label the file gives the movement
    number: np.ndarray  # repetition 1..R
    cue_start: np.ndarray  # stimulus
    cue_end: np.ndarray
    start: np.ndarray  # restimulus: the movement the subject actually made
    end: np.ndarray


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


def muscle_envelopes(
    protocol: Protocol,
    prototypes: ClassPrototypes,
    session: Session,
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


def surface_emg(
    envelopes: np.ndarray,
    session: Session,
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


def otto_bock_emg(envelopes: np.ndarray, session: Session, fs: float, rng: np.random.Generator) -> np.ndarray:
    """(electrodes, N) volts of rectified, RMS-smoothed EMG. Overwrites ``envelopes`` with their squares."""
    np.square(envelopes, out=envelopes)
    # Independent muscles add in power; the electrode reports the RMS (in MVC units, then volts).
    mean_square = (session.mixing**2) @ envelopes * OTTO_BOCK_V_PER_MVC**2 + (session.noise_rms**2)[:, None]
    emg = np.sqrt(mean_square)
    # A short-window RMS of a random signal fluctuates around its expectation by roughly 15 %.
    for row in emg:
        row *= np.exp(0.15 * _interpolated_noise(rng, row.size, fs, knot_hz=15.0) - 0.15**2 / 2)
    return emg


def apply_electrode_drift(emg: np.ndarray, protocol: Protocol, rng: np.random.Generator) -> None:
    """Multiply each electrode by a gain that wanders slowly from repetition to repetition (in place)."""
    knots = np.concatenate([[0], protocol.cue_start])
    steps = rng.normal(0.0, DRIFT_STEP, size=(len(emg), knots.size))
    log_gain = scipy.signal.lfilter([1.0], [1.0, -DRIFT_PERSISTENCE], steps, axis=1)
    samples = np.arange(emg.shape[1])
    for row, gain in zip(emg, np.exp(log_gain), strict=True):
        row *= np.interp(samples, knots, gain)


def digitise(emg: np.ndarray) -> None:
    """Round to the ADC's step and clip to its range (in place), as the amplifier's 16-bit converter does."""
    np.multiply(emg, 1.0 / ADC_STEP_V, out=emg)
    np.round(emg, out=emg)
    np.clip(emg, -(2**15), 2**15 - 1, out=emg)
    emg *= ADC_STEP_V


def glove_angles(
    protocol: Protocol, prototypes: ClassPrototypes, session: Session, fs: float, rng: np.random.Generator
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
