"""The real-time controller's compute per decision, one CPU thread: one 10 ms chunk of 12 channels at 2 kHz in,
its decision out (band-pass, RMS, normalisation, the default encoder over 41 classes, a 250 ms vote). Goals: median
<= 1 ms and 99th percentile <= 2 ms, printed also as a share of the 10 ms frame period. Beside it, the same network
exported to ONNX, per frame, against PyTorch's.
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from contrastive_prosthetics.config import default_config
from contrastive_prosthetics.core.atomic import atomic_torch_save
from contrastive_prosthetics.data.ninapro import DB2, class_names
from contrastive_prosthetics.data.preprocess import PreprocessParams
from contrastive_prosthetics.learning.dataset import Normalisation
from contrastive_prosthetics.learning.models import ModelConfig, build_model
from contrastive_prosthetics.realtime.controller import Controller

from .results import Result

DECISIONS, WARM_UP = 2000, 200
FRAME_MS = 10.0


def per_push_ms(controller, chunks) -> np.ndarray:
    times = []
    for chunk in chunks:
        start = time.perf_counter()
        controller.push(chunk)
        times.append(time.perf_counter() - start)
    return 1000 * np.array(times[WARM_UP:])


def main() -> list[Result]:
    torch.set_num_threads(1)
    config = default_config()
    classes = class_names(["B", "C"])
    architecture = config["architecture"]
    model_config = ModelConfig(
        "contrastive",
        12,
        len(classes),
        architecture["embedding_dim"],
        architecture["conv_maps"],
        architecture["width"],
        architecture["depth"],
        0.0,
        architecture["context_frames"],
    )
    torch.manual_seed(0)
    model = build_model(model_config).eval()
    normalisation = Normalisation(torch.full((12,), -10.0), torch.ones(12), True, torch.full((12,), 1e-7))
    params = PreprocessParams(**config["preprocess"])
    chunks = np.random.default_rng(0).standard_normal((DECISIONS, 20, 12)) * 5e-5  # 10 ms of 2 kHz EMG each
    controller = Controller.from_model(model, normalisation, classes, params, DB2, classes[1:], vote_frames=25)
    times = per_push_ms(controller, chunks)
    median, p99 = np.median(times), np.percentile(times, 99)
    print("== controller, one 10 ms chunk (20 samples x 12 channels at 2 kHz) -> one decision, 1 thread")
    print(
        f"PyTorch: median {median:.3f} ms ({median / FRAME_MS:.1%} of the frame period), 99th percentile "
        f"{p99:.3f} ms ({p99 / FRAME_MS:.1%}) (goals <= 1 ms, <= 2 ms) {'OK' if median <= 1 and p99 <= 2 else 'MISSED'}"
    )
    results = [
        Result(
            "controller decision, median", f"{median:.3f} ms = {median / FRAME_MS:.1%} of 10 ms", "<= 1 ms", median <= 1
        ),
        Result(
            "controller decision, 99th percentile", f"{p99:.3f} ms = {p99 / FRAME_MS:.1%} of 10 ms", "<= 2 ms", p99 <= 2
        ),
    ]
    try:
        from contrastive_prosthetics.realtime.export import export_model, exported_controller
    except ImportError:
        return results
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        atomic_torch_save(
            {
                "state_dict": model.state_dict(),
                "model_config": model_config.as_dict(),
                "classes": classes,
                "normalisation": normalisation.state_dict(),
                "frame_rate_hz": 100.0,
                "preprocess": params.as_dict(),
                "model": "bench",
                "fold": "none",
                "window": "none",
                "adabn": False,
                "adaptation": "none",
            },
            folder / "model.pt",
        )
        try:
            export_model(folder / "model.pt", folder / "deploy")
            onnx = exported_controller(folder / "deploy", DB2, classes[1:], 25, "onnx")
        except Exception as error:  # ONNX Runtime missing: make bench installs it
            print(f"ONNX: skipped ({error})")
            return results
        onnx_times = per_push_ms(onnx, chunks)
    onnx_median = np.median(onnx_times)
    print(f"ONNX Runtime: median {onnx_median:.3f} ms per decision, {onnx_median / median:.2f} x PyTorch's")
    results.append(Result("controller decision on ONNX, median", f"{onnx_median:.3f} ms", "<= 1 ms", onnx_median <= 1))
    return results


if __name__ == "__main__":
    main()
