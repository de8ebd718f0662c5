"""Real-time control: raw EMG in, one decision per frame out, as a prosthesis controller runs.

The pieces, each shared with the offline stream evaluation (:mod:`..evaluation.stream`) so that offline numbers are
the device's numbers:

``FrameMaker``    raw EMG chunks of any length → the frames conversion stores in the stream, bit for bit
                  (:mod:`.frames`).
``FrameScorer``   frames (with the ``context`` - 1 frames before each) → logits over every class, one frame at a
                  time (:mod:`..learning.inference`).
``decide``        logits → each frame's decision among the chosen gestures + rest: the most similar class, then a
                  causal majority vote over the last ``vote_frames`` decisions (ties to the larger summed score,
                  then the lower class index) (:mod:`..learning.decisions`).
``Controller``    all three, fed chunks: ``push(chunk)`` returns the decisions of the frames the chunk completed;
                  ``choose(gestures)`` changes the chosen gestures with no retraining. Decisions are identical
                  whether a recording is fed sample by sample, in 10 ms chunks or whole (a test proves it).

A gesture given only its pose (:meth:`Controller.describe`, :func:`.network.described`): a model with a pose class
encoder decides it once described by the mean glove pose of its movement, as a zero-shot fold's stream evaluation
decides an unseen gesture. Described before :meth:`Controller.calibrate`, it keeps its pose's embedding if kept
(``keep_trained_gestures``); described after, the trained pose class encoder codes it beside the user's embeddings,
in the controller that calibrated or in one of the model.pt the calibrate command wrote, which keeps that encoder.

Adaptation (:mod:`.adabn`): a model trained with AdaBN decides only once it is adapted to its user: on their
unlabelled raw EMG (``adapt_on``, or :meth:`Controller.adapt`), exactly as the pipeline's AdaBN adapts a test
subject, or with given batch-norm statistics (``batchnorm_state``); without either it refuses to decide. With
``online_adaptation`` (a momentum) it then keeps updating running estimates of every batch-norm layer's input mean
and variance from the stream as it runs (each frame moves them by that fraction): personalisation that needs no
labels and no backpropagation. A model trained without AdaBN decides with its training statistics.

Calibration to a new user (:meth:`Controller.calibrate`): on a labelled recording (the first repetitions of every
gesture), each class's embedding fitted and the rest bias set again, a class without frames refused unless its
trained embedding is kept; or, with no labels (:meth:`Controller.calibrate_unlabelled`), an AdaBN model's batch
norms adapted and its trained rest bias kept.
"""

from __future__ import annotations

import copy
import logging
from collections import deque
from pathlib import Path

import numpy as np
import torch

from ..core.errors import InputError
from ..data.ninapro import REST, DatabaseSpec
from ..data.preprocess import PreprocessParams
from ..learning.calibration_free import calibration_free_start
from ..learning.dataset import Normalisation
from ..learning.decision_rules import Hysteresis, RuleState
from ..learning.decisions import allowed_classes, decide_latest
from ..learning.inference import FrameScorer
from ..learning.model_file import load_model_file, rest_target_of
from ..learning.onset_gate import GateState, OnsetGate, frame_amplitude, gated, rest_level
from ..learning.personalise import (
    CalibrationRecording,
    CalibrationSettings,
    first_repetitions,
    frames_table,
    personalise,
    user_rest_bias,
)
from ..learning.rest_bias import RestCalibration, subject_rest_bias
from ..learning.stream_sampling import guard_width
from ..learning.stream_scoring import class_bias
from .adabn import (
    MIN_ADAPTATION_FRAMES,
    checked_emg,
    load_batchnorm_state,
    not_adabn_message,
    unadapted_message,
    user_frames,
)
from .frames import FrameMaker
from .network import PoseCoding, TorchNetwork, described

log = logging.getLogger(__name__)


class Controller:
    """A trained network as a prosthesis controller: raw EMG chunks in, decisions (class names) out.

    Build it from a torch model (:meth:`from_model`, :meth:`from_model_file`) or from an exported one
    (:func:`.export.exported_controller`); ``spec`` says what the recording is (its rate, whether it arrives
    rectified), ``gestures`` which gestures the user wants now, ``vote_frames`` how many decisions the vote spans.
    """

    def __init__(
        self,
        scorer: FrameScorer,
        classes: list[str],
        params: PreprocessParams,
        spec: DatabaseSpec,
        gestures: list[str],
        vote_frames: int,
        context: int,
        network: TorchNetwork | None = None,
        gate: OnsetGate | None = None,
        gate_rest: np.ndarray | None = None,
        rule: Hysteresis | None = None,
    ):
        self.scorer = scorer
        self.rule, self.rule_state = rule, None  # the decision rule instead of the vote (None: the vote)
        self.network = network  # None for an exported network, whose statistics were fixed at export
        self.params, self.spec = params, spec
        self.unadapted: str | None = None  # why it refuses to decide until adapted (an AdaBN model), or None
        self.classes = list(classes)
        self.context = context
        self.vote_frames = vote_frames
        self.maker = FrameMaker(spec.sampling_rate_hz, params, spec.already_rectified, spec.n_channels)
        self.live = scorer.live
        self.frames: deque = deque(maxlen=context)  # the latest raw frames, for the encoder's context
        self.scores: deque = deque(maxlen=max(vote_frames, 1))  # the latest frames' logits, for the vote
        self.gate, self.gate_state, self.rest_amplitudes = gate, None, []
        # What :meth:`calibrate` fits and sets the rest bias with: the model's own (from_model_file reads them from
        # model.pt); set either to override it, and the calibrated model records the value used.
        self.rest_target: float | None = None  # the rest false activation target (None: the bias is kept)
        self.guard_ms: float | None = None  # training.guard_ms (None: unknown, and calibrate asks for it)
        self.fit_frames: dict[str, int] = {}  # each class's frames the last calibrate fitted on
        self.calibration_frames = 0  # the frames the last calibration read (every one adapts the batch norms)
        if gate is not None and gate_rest is not None:
            self.set_rest(gate_rest)
        self.choose(gestures)

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        normalisation: Normalisation,
        classes: list[str],
        params: PreprocessParams,
        spec: DatabaseSpec,
        gestures: list[str],
        vote_frames: int,
        live_channels: torch.Tensor | None = None,
        batchnorm_state: dict | None = None,
        online_adaptation: float | None = None,
        rest_bias: float = 0.0,
        adabn: bool = False,
        adapt_on: np.ndarray | None = None,
        source: str = "the model",
        gate: OnsetGate | None = None,
        gate_rest: np.ndarray | None = None,
        rest_target: float | None = None,
        guard_ms: float | None = None,
        rule: Hysteresis | None = None,
        pose_coding: PoseCoding | None = None,
        pose_encoder: torch.nn.Module | None = None,
    ) -> Controller:
        """A controller of a torch model (see the module for ``adabn``, ``adapt_on``, ``batchnorm_state``,
        ``online_adaptation``, ``gate`` and ``gate_rest``); ``source`` names the model in errors; ``rest_target``
        and ``guard_ms`` are what :meth:`calibrate` uses (the model's training and calibration values);
        ``pose_coding`` and ``pose_encoder`` (a calibrated model's trained pose class encoder) what :meth:`describe`
        does (model.pt's)."""
        if batchnorm_state is not None and adapt_on is not None:
            raise InputError(f"{source}: give batchnorm_state or adapt_on, not both")
        model = copy.deepcopy(model).eval()  # the caller's model is left as it was
        if batchnorm_state is not None:
            load_batchnorm_state(model, batchnorm_state, source)
        live = torch.ones(spec.n_channels, dtype=torch.bool) if live_channels is None else live_channels
        bias = class_bias(classes, rest_bias)
        network = TorchNetwork(model, normalisation, live, bias, online_adaptation, adabn, source)
        network.coding, network.pose_encoder = pose_coding or PoseCoding(), copy.deepcopy(pose_encoder)
        network.track()
        context = model.config.context
        scorer = network.scorer(len(classes))
        controller = cls(scorer, classes, params, spec, gestures, vote_frames, context, network, gate, gate_rest, rule)
        controller.rest_target, controller.guard_ms = rest_target, guard_ms
        if adabn and batchnorm_state is None:
            controller.unadapted = unadapted_message(source)
        if adapt_on is not None:
            controller.adapt(adapt_on)
        return controller

    @classmethod
    def from_model_file(cls, path: Path, spec: DatabaseSpec, gestures: list[str], vote_frames: int, **options):
        """A controller of a ``model.pt`` written by training (networks only); an AdaBN one (``adabn`` in the file)
        decides once adapted (``adapt_on=`` or :meth:`adapt`, or ``batchnorm_state=``). ``subject=`` (``db1/s3``):
        whose recording it decides, so that a user the model validated on decides with their own rest bias, as the
        stream evaluation does (``evaluation.rest_promise: per_user``); anyone else with the model's."""
        saved = load_model_file(path)
        if options.pop("calibration_free", False):
            saved = calibration_free_start(saved, str(path))
        subject = options.pop("subject", None)
        rest_bias = saved.get("rest_bias", 0.0) if subject is None else subject_rest_bias(saved, subject)
        return cls.from_model(
            saved["network"],
            saved["normalisation_"],
            saved["classes"],
            PreprocessParams(**saved["preprocess"]),
            spec,
            gestures,
            vote_frames,
            **{
                "rest_bias": rest_bias,
                "adabn": bool(saved["adabn"]),
                "source": str(path),
                "gate": OnsetGate.from_dict(saved.get("onset_gate")),
                "rest_target": rest_target_of(saved),
                "guard_ms": saved.get("guard_ms"),
                "rule": Hysteresis.from_dict(saved.get("decision")),
                "pose_coding": PoseCoding.of(saved),
                "pose_encoder": saved["pose_encoder_"],
                **options,
            },
        )

    def adapt(self, emg: np.ndarray) -> int:
        """Adapt an AdaBN model to its user: re-estimate every batch-norm statistic on their unlabelled raw EMG
        [sample, channel] at the recording's rate (e.g. the first 100 s of a calibration recording) exactly as the
        pipeline's AdaBN does (:mod:`.adabn`). The stream being decided is not touched; the vote starts afresh.
        Returns the number of frames adapted on."""
        network = self.network
        if network is None:
            raise InputError(
                "an exported network's batch-norm statistics were fixed at export: export the model.pt again with "
                "adapt_on (contrastive-prosthetics export --adapt-on)"
            )
        if not network.adabn:
            raise InputError(not_adabn_message(network.source))
        n_frames = network.adapt(self.params, self.spec, emg)
        self.scorer = network.scorer(len(self.classes))
        self.unadapted = None
        self.restart()  # scored with the old statistics
        return n_frames

    def calibrate(
        self,
        recordings: list[tuple],
        method: str = "prototypes",
        settings: CalibrationSettings | None = None,
        repetitions: int | None = None,
        keep_trained_gestures: bool = False,
        recorded_in: str = "the calibration recording",
    ) -> RestCalibration | None:
        """Personalise the model to its user from a short labelled recording (:mod:`..learning.personalise`): each
        of ``recordings`` is raw EMG [sample, channel] at the recording's rate with each sample's class name (e.g.
        the first repetition or two of every gesture) and, for ``repetitions``, each sample's repetition number
        (NinaPro's ``rerepetition``). With ``repetitions`` C only the first C repetitions of every gesture calibrate,
        each with the rest before it, as stretches of consecutive frames in time order (the frames are made of the
        whole recording, so each stretch's first frames are those a controller running through it makes).
        ``method`` adabn, prototypes or fine_tune; frames within :attr:`guard_ms` of a change of label are not
        fitted on. The rest bias is then set on the same frames for :attr:`rest_target` (None: kept). Both are the
        model's unless set. An AdaBN model needs no other adaptation afterwards; the vote starts afresh.

        Each class's frames to fit on are logged and kept in :attr:`fit_frames`. A class of the model with none is
        refused (an error naming the classes and ``recorded_in``), unless ``keep_trained_gestures``: then they keep
        their trained class embeddings (a classifier: head rows), and the log names them. A gesture given by its
        pose (:meth:`describe`) is such a class unless recorded: kept, its embedding stays the one its pose gave.
        Gestures can be described after calibrating too, coded by the trained pose class encoder (kept in
        ``network.pose_encoder``, which the calibrate command's model.pt carries). Returns the rest calibration (None
        when kept)."""
        network = self.calibrated_network()
        guard_ms, rest_target = self.guard_ms, self.rest_target
        if guard_ms is None:
            raise InputError(
                f"{network.source} does not say the guard band it was trained with: set the controller's guard_ms "
                "(training.guard_ms; the calibrate command's --guard-ms) before calibrating"
            )
        stretches = [part for labelled in recordings for part in self.labelled_stretches(labelled, repetitions)]
        recording = CalibrationRecording.of(stretches, guard_width(guard_ms, self.params.frame_rate_hz), network.live)
        self.fit_frames = recording.fit_frames(self.classes)
        self.calibration_frames = sum(len(frames) for frames, _ in stretches)
        log.info(
            "%s: frames to fit on per class (outside the guard band)\n%s", recorded_in, frames_table(self.fit_frames)
        )
        missing = [name for name, count in self.fit_frames.items() if count == 0]
        if missing and not keep_trained_gestures:
            raise InputError(
                f"{recorded_in}: no calibration frame of {missing} (outside the {guard_ms:g} ms guard band), which "
                f"{network.source} decides; record those gestures, calibrate on the first repetitions of every "
                "gesture (--repetitions C; repetitions=C) rather than the recording's first seconds, or keep their "
                "trained (or described) class embeddings (--keep-trained-gestures; keep_trained_gestures=True)"
            )
        if missing:
            log.warning(
                "%s: no calibration frame of %s: they keep their trained (or described) class embeddings",
                recorded_in,
                missing,
            )
        settings = settings or CalibrationSettings()
        for hook in network.hooks:  # online tracking would move the statistics calibration sets
            hook.remove()
        trained = network.model
        network.model = personalise(trained, network.normalisation, recording, method, settings)
        if trained.config.class_encoder == "pose" and network.model.config.class_encoder != "pose":
            # prototypes and fine_tune replaced the pose class encoder by a one-hot one: describe codes with this
            network.pose_encoder = trained.class_encoder
        calibration = None
        if rest_target is not None and REST not in missing:  # without rest frames the trained bias is kept
            rest, votes = self.classes.index(REST), self.vote_frames
            calibration = user_rest_bias(network.model, network.normalisation, recording, rest, votes, rest_target)
            network.bias = class_bias(self.classes, calibration.bias)
        self.calibrated(network)
        return calibration

    def calibrate_unlabelled(self, recordings: list[np.ndarray], settings: CalibrationSettings | None = None) -> int:
        """The calibration-free start: adapt an AdaBN model's batch norms to its user on their unlabelled raw EMG
        [sample, channel] (each of ``recordings``), the calibration method adabn, no label read; the rest bias stays
        the model's, set in training on validation subjects adapted alike. Returns the number of frames read."""
        network = self.calibrated_network()
        if not network.adabn:
            raise InputError(
                f"{network.source}: a model trained without AdaBN (adabn: false) decides with its training statistics "
                "and its rest bias was set with them: it starts as it is, with no calibration; adapting its batch "
                "norms without labels would leave a rest bias no evaluation set. Use it as it is, or calibrate with "
                "labels (--method)"
            )
        frames = [
            user_frames(checked_emg(emg, self.spec, network.source), self.spec, self.params, self.context)
            for emg in recordings
        ]
        n_frames = sum(len(part) for part in frames)
        if n_frames < MIN_ADAPTATION_FRAMES:
            raise InputError(
                f"{network.source}: {n_frames} frames of EMG to adapt on; AdaBN needs at least "
                f"{MIN_ADAPTATION_FRAMES} (1 s): give more of the user's recording"
            )
        for hook in network.hooks:
            hook.remove()
        recording = CalibrationRecording.unlabelled(frames, network.live)
        network.model = personalise(
            network.model, network.normalisation, recording, "adabn", settings or CalibrationSettings()
        )
        self.calibrated(network)
        self.fit_frames, self.calibration_frames = {}, n_frames
        return n_frames

    def calibrated_network(self) -> TorchNetwork:
        """The torch network calibration changes; an exported one cannot be."""
        if self.network is None:
            raise InputError("an exported network cannot be calibrated: calibrate the model.pt, then export it")
        return self.network

    def calibrated(self, network: TorchNetwork) -> None:
        """Decide with the calibrated ``network`` from now on: tracking restarts, the vote starts afresh."""
        network.track()
        self.scorer = network.scorer(len(self.classes))
        self.unadapted = None
        self.restart()

    def labelled_stretches(self, labelled: tuple, repetitions: int | None) -> list[tuple[torch.Tensor, np.ndarray]]:
        """One labelled recording (raw EMG, each sample's class name[, repetition]) as stretches of consecutive
        frames with their class indices: all of it, or its first ``repetitions`` of every gesture."""
        source = self.network.source
        emg, names = labelled[0], np.asarray(labelled[1])
        frames = user_frames(checked_emg(emg, self.spec, source), self.spec, self.params, self.context)
        ends = (np.arange(len(frames)) + 1) * self.maker.hop - 1
        unknown = sorted(set(names[ends].tolist()) - set(self.classes))
        if unknown:
            raise InputError(f"calibration labels {unknown} are not classes of {source}: {self.classes}")
        labels = np.array([self.classes.index(name) for name in names[ends]])
        if repetitions is None:
            return [(frames, labels)]
        if len(labelled) < 3:
            raise InputError(
                "calibrating on the first repetitions needs each recording's repetition numbers: give (emg, names, "
                "repetition), repetition as NinaPro's rerepetition"
            )
        chosen = np.flatnonzero(first_repetitions(names, REST, np.asarray(labelled[2]), repetitions)[ends])
        parts = np.split(chosen, np.flatnonzero(np.diff(chosen) != 1) + 1) if len(chosen) else []
        return [(frames[part], labels[part]) for part in parts]

    def set_rest(self, emg: np.ndarray) -> float:
        """Set the onset gate's threshold from the user's rest: raw EMG [sample, channel] at the recording's rate,
        of which the first ``gate.rest_frames`` frames count (as offline, the first seconds of the recording). Without
        it, the gate sets itself from the first frames it is fed, deciding rest until then. Returns the level."""
        if self.gate is None:
            raise InputError("this model has no onset gate (evaluation.onset_gate was null when it was trained)")
        maker = FrameMaker(self.spec.sampling_rate_hz, self.params, self.spec.already_rectified, self.spec.n_channels)
        frames = torch.from_numpy(maker.push(np.asarray(emg)))
        frames[:, ~self.live] = 0.0
        level = rest_level(frames, self.live, self.gate, "the rest recording")
        self.gate_state, self.rest_amplitudes = GateState(self.gate, level), []
        return level

    def gate_open(self, frame: torch.Tensor) -> bool:
        """The gate after this raw frame (True without a gate); until its level is set, closed."""
        if self.gate is None:
            return True
        amplitude = float(frame_amplitude(frame[None], self.live)[0])
        if self.gate_state is None:  # still reading the user's rest
            self.rest_amplitudes.append(amplitude)
            if len(self.rest_amplitudes) == self.gate.rest_frames:
                self.gate_state = GateState(self.gate, float(np.median(self.rest_amplitudes)))
            return False
        return self.gate_state.push(amplitude)

    def describe(self, name: str, pose: np.ndarray) -> None:
        """Decide the gesture ``name`` given only its pose: ``pose``, its mean glove pose (22 raw glove values: the
        mean glove over the movement less the mean over the rest before it, e.g. averaged over other people), coded
        as training coded every class (:func:`.network.described`, which says what is refused). ``name`` is then a
        class :meth:`choose` takes; the chosen gestures stay, the vote starts afresh. Before :meth:`calibrate` the
        described class is one it calibrates (recorded, or kept with ``keep_trained_gestures``); after it (here, or
        in the model.pt the calibrate command wrote), the class's embedding is the trained pose class encoder's of
        the code, beside the user's calibrated ones."""
        network = self.network
        if network is None:
            raise InputError(
                "an exported network's class codes were fixed at export: describe the gesture when exporting "
                "(contrastive-prosthetics export --describe NAME=FILE)"
            )
        rest_bias = float(network.bias[self.classes.index(REST)])
        self.classes = described(
            network.model, self.classes, name, pose, network.coding, network.source, network.pose_encoder
        )
        network.bias = class_bias(self.classes, rest_bias)
        self.scorer = network.scorer(len(self.classes))
        self.choose(self.gestures)

    def choose(self, gestures: list[str]) -> None:
        """The gestures the user wants now (rest is always added); no retraining, the vote starts afresh."""
        self.gestures = list(gestures)
        self.allowed = allowed_classes(self.classes, gestures)
        self.allowed_mask = self.allowed.numpy()
        rest = self.classes.index(REST)
        self.rule_state = None if self.rule is None else RuleState(self.rule, self.allowed_mask, rest)
        self.restart()

    def restart(self) -> None:
        """The vote emptied, the decision rule back at rest: decisions start afresh."""
        self.scores.clear()
        if self.rule_state is not None:
            self.rule_state.reset()

    def push(self, chunk: np.ndarray) -> list[str]:
        """Feed raw EMG [sample, channel] (any number of samples); returns the decisions of completed frames."""
        if self.unadapted is not None:
            raise InputError(self.unadapted)
        frames = self.maker.push(chunk)
        frames[:, ~self.live.numpy()] = 0.0
        decisions = []
        for frame in torch.from_numpy(frames):
            if not self.frames:  # before the recording's first frame the context repeats it, as offline
                self.frames.extend([frame] * self.context)
            self.frames.append(frame)
            window = torch.stack(list(self.frames))[None]  # [1, context, channel]
            scores = self.scorer(window if self.context > 1 else window[:, 0])
            if self.gate is not None:
                scores = gated(scores, np.array([self.gate_open(frame)]), self.classes.index(REST))
            if self.rule_state is not None:  # the saved decision rule (learning/decision_rules.py)
                decisions.append(self.classes[self.rule_state.push(scores[0].numpy())])
                continue
            self.scores.append(scores[0].numpy())
            latest = decide_latest(np.stack(self.scores), self.allowed_mask, self.vote_frames)
            decisions.append(self.classes[latest])
        return decisions
