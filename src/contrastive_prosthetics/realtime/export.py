"""Export a trained network for a device: ONNX and TorchScript, with the normalisation of training baked in.

The exported network takes raw RMS frames (as :class:`.frames.FrameMaker` makes them), [batch, channel] or
[batch, context, channel], and returns the logits over every class: log-amplitude with the training floor,
standardisation, dead channels zeroed, then the network with its batch-norm statistics: an AdaBN model's adapted to
its user (on their unlabelled recording, ``adapt_on``, or given, ``batchnorm_state``; :mod:`.adabn`), for it has no
statistics of its own and is refused without; any other model's trained ones. Beside the two files,
``deployment.json`` holds what a controller needs to run it: classes, context, frame rate and preprocessing, and
where its batch-norm statistics came from. A model with a pose class encoder can be given gestures by their pose
(``descriptions``, as :meth:`.controller.Controller.describe` takes them): their codes are baked in, and the exported
network decides them as the controller of model.pt given the same descriptions does (``described`` in
deployment.json keeps the poses). ONNX Runtime is an optional extra (``make test`` installs it; the pipeline does not
need it).

    contrastive-prosthetics export --model results/models/contrastive_adabn/reps-2-5/onset/model.pt --out-dir deploy \
        --adapt-on S1_E1_A1.mat --database db2
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_write, atomic_write_text
from ..core.errors import InputError
from ..data.ninapro import DatabaseSpec
from ..data.preprocess import PreprocessParams
from ..learning.dataset import Normalisation
from ..learning.decision_rules import Hysteresis
from ..learning.inference import FrameScorer
from ..learning.model_file import load_model_file
from ..learning.onset_gate import OnsetGate
from ..learning.stream_scoring import class_bias
from .adabn import adapt_to_user, load_batchnorm_state, not_adabn_message, unadapted_message
from .controller import Controller
from .network import PoseCoding, described

log = logging.getLogger(__name__)
ONNX_NAME, TORCHSCRIPT_NAME, DEPLOYMENT_NAME = "model.onnx", "model.ts", "deployment.json"


class DeployedNetwork(torch.nn.Module):
    """Raw RMS frames → logits: the training normalisation, then the network."""

    def __init__(self, network: torch.nn.Module, normalisation: Normalisation, live_channels: torch.Tensor):
        super().__init__()
        self.network = network.eval()
        self.log_amplitude = normalisation.log_amplitude
        self.register_buffer("epsilon", normalisation.epsilon.float())
        self.register_buffer("mean", normalisation.mean.float())
        self.register_buffer("std", normalisation.std.float())
        self.register_buffer("live", torch.as_tensor(live_channels, dtype=torch.float32))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = torch.log(frames + self.epsilon) if self.log_amplitude else frames
        return self.network((x - self.mean) / self.std * self.live)


def deployed_statistics(
    saved: dict,
    live: torch.Tensor,
    batchnorm_state: dict | None,
    adapt_on: np.ndarray | None,
    spec: DatabaseSpec | None,
    source: str,
) -> str:
    """Set the batch-norm statistics the exported network carries (:mod:`.adabn`); says where they came from."""
    network = saved["network"]
    if batchnorm_state is not None and adapt_on is not None:
        raise InputError(f"{source}: give batchnorm_state or adapt_on, not both")
    if batchnorm_state is not None:
        load_batchnorm_state(network, batchnorm_state, source)
        return "given (batchnorm_state)"
    if adapt_on is None:
        if saved["adabn"]:
            raise InputError(unadapted_message(source))
        return "trained"
    if not saved["adabn"]:
        raise InputError(not_adabn_message(source))
    if spec is None:
        raise InputError(f"{source}: adapting on a recording needs its database: spec= (command line: --database)")
    params = PreprocessParams(**saved["preprocess"])
    n_frames = adapt_to_user(network, saved["normalisation_"], live, params, spec, adapt_on, source)
    return f"adapted on {n_frames} frames of the user's recording"


def export_model(
    model_path: Path,
    out_dir: Path,
    live_channels: list[bool] | None = None,
    batchnorm_state: dict | None = None,
    adapt_on: np.ndarray | None = None,
    spec: DatabaseSpec | None = None,
    descriptions: dict[str, np.ndarray] | None = None,
) -> dict[str, Path]:
    """Write ``model.onnx``, ``model.ts`` and ``deployment.json`` of a trained network into ``out_dir``. An AdaBN
    model is first adapted on ``adapt_on``, its user's unlabelled raw EMG [sample, channel] recorded as ``spec``
    says, or given ``batchnorm_state``; without either it is refused. ``descriptions`` (name → pose) are gestures
    given by their pose (:func:`.network.described`), decided among the model's classes."""
    saved = load_model_file(model_path)
    network = saved["network"]
    coding, source = PoseCoding.of(saved), str(model_path)
    for name, pose in (descriptions or {}).items():  # a calibrated model's kept pose class encoder codes them
        saved["classes"] = described(network, saved["classes"], name, pose, coding, source, saved["pose_encoder_"])
    n_channels, context = network.config.n_channels, network.config.context
    live = torch.ones(n_channels, dtype=torch.bool) if live_channels is None else torch.tensor(live_channels) > 0
    statistics = deployed_statistics(saved, live, batchnorm_state, adapt_on, spec, str(model_path))
    deployed = DeployedNetwork(network, saved["normalisation_"], live).eval()
    example = torch.rand((2, n_channels) if context == 1 else (2, context, n_channels)) + 0.1
    out_dir = Path(out_dir)
    paths = {
        "onnx": out_dir / ONNX_NAME,
        "torchscript": out_dir / TORCHSCRIPT_NAME,
        "deployment": out_dir / DEPLOYMENT_NAME,
    }
    with warnings.catch_warnings():  # the exporters narrate their passes
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            deployed,
            (example,),
            input_names=["frames"],
            output_names=["logits"],
            dynamic_shapes={"frames": {0: torch.export.Dim("batch", min=1)}},
            dynamo=True,
            verbose=False,
        )
        scripted = torch.jit.trace(deployed, example)
    atomic_write(paths["onnx"], lambda stream: stream.write(program.model_proto.SerializeToString()))
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript is deprecated upstream, and still what many runtimes load
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, buffer)
    atomic_write(paths["torchscript"], lambda stream: stream.write(buffer.getvalue()))
    description = {
        "classes": saved["classes"],
        "context": context,
        "n_channels": n_channels,
        "frame_rate_hz": saved["frame_rate_hz"],
        "preprocess": saved["preprocess"],
        "model": saved["model"],
        "fold": saved["fold"],
        "window": saved["window"],
        "described": {name: np.asarray(pose, dtype=float).tolist() for name, pose in (descriptions or {}).items()},
        "rest_bias": saved.get("rest_bias", 0.0),
        "onset_gate": saved.get("onset_gate"),
        "decision": saved.get("decision"),  # the decision rule (None: the vote; learning/decision_rules.py)
        "adabn": bool(saved["adabn"]),
        "batchnorm_statistics": statistics,
        "input": "raw RMS frames [batch, channel] (context 1) or [batch, context, channel], float32",
        "output": "logits over classes [batch, class]; the controller adds rest_bias to rest's logit before deciding",
    }
    atomic_write_text(paths["deployment"], json.dumps(description, indent=2) + "\n")
    return paths


class OnnxNetwork:
    """An exported network run by ONNX Runtime: torch tensors in, torch tensors out."""

    def __init__(self, path: Path, threads: int = 1):
        try:
            import onnxruntime
        except ImportError:
            raise InputError("ONNX Runtime is not installed: pip install onnxruntime (make test installs it)") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"frames": frames.numpy()})[0])


def exported_controller(
    folder: Path,
    spec: DatabaseSpec,
    gestures: list[str],
    vote_frames: int,
    backend: str = "onnx",
    gate_rest: np.ndarray | None = None,
) -> Controller:
    """A controller running an exported network (``onnx`` or ``torchscript``) from :func:`export_model`'s folder,
    with the model's onset gate (``gate_rest``: the user's rest, see :meth:`.controller.Controller.set_rest`)."""
    folder = Path(folder)
    description = json.loads((folder / DEPLOYMENT_NAME).read_text())
    if "batchnorm_statistics" not in description:  # an older export, of an AdaBN model perhaps unadapted
        raise InputError(
            f"{folder / DEPLOYMENT_NAME}: no batchnorm_statistics: written by an older version, which exported AdaBN "
            "models unadapted; export the model.pt again"
        )
    if backend == "onnx":
        network = OnnxNetwork(folder / ONNX_NAME)
    elif backend == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            network = torch.jit.load(str(folder / TORCHSCRIPT_NAME)).eval()
    else:
        raise InputError(f"unknown backend {backend!r}; use onnx or torchscript")
    live = torch.ones(description["n_channels"], dtype=torch.bool)  # the exported network zeroes dead channels
    bias = class_bias(description["classes"], description.get("rest_bias", 0.0))  # as the controller of model.pt
    scorer = FrameScorer(network, None, live, len(description["classes"]), bias=bias)
    params = PreprocessParams(**description["preprocess"])
    gate = OnsetGate.from_dict(description.get("onset_gate"))
    classes, context = description["classes"], description["context"]
    rule = Hysteresis.from_dict(description.get("decision"))
    return Controller(
        scorer, classes, params, spec, gestures, vote_frames, context, gate=gate, gate_rest=gate_rest, rule=rule
    )
