"""The tiny configuration shared by the workflow tests and the SLURM test: two subjects (one intact, one
amputee), exercise B, three models (two networks and LDA), a few steps of training. The whole pipeline runs in
about a minute on 2 cores.

    python tests/tiny_config.py config.yaml tiny.yaml   # writes a tiny copy of config.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def tiny(config: dict) -> None:
    """Shrink a full configuration (config.yaml's structure) in place."""
    config["data"]["databases"] = {"db2": [1], "db3": [6]}
    config["data"]["exercises"] = ["B"]
    config["synthetic"].update(movement_s=1.6, rest_s=0.8)
    config["preprocess"]["windows"] = {
        "onset": {"offset_ms": 0, "length_ms": 500},
        "steady": {"offset_ms": 500, "length_ms": 500},
    }
    config["models"] = {
        "contrastive_adabn": {"kind": "contrastive", "adabn": True, "adaptation": "cross_fitted"},
        "classifier": {"kind": "classifier", "adabn": False},
        "lda": {"kind": "lda", "adabn": False},
        "contrastive_pose": {
            "kind": "contrastive",
            "adabn": False,
            "class_encoder": "pose",
            "pose_decoder": {"weight": 1.0},  # as the default's: pose decoding and its tables are exercised
        },
    }
    config["folds"]["zero-shot"] = {
        "scheme": "zero_shot",
        "base": "reps-2-5",
        "gestures": "all",
        "size": 3,
        "sets": 1,
        "models": ["contrastive_pose"],
    }
    # Two subjects: each calibrated with the model trained on the other (validated on its repetition 6).
    config["folds"]["calibration"] = {
        "scheme": "calibration",
        "subjects": "all",
        "train": [1, 2, 3, 4, 5],
        "validation": [6],
        "calibration": [1, 3],
        "counts": [0, 1],
        "test": [2, 5],
        "models": ["classifier"],
    }
    config["calibration"]["scratch_epochs"] = 1
    config["evaluation"]["subset_trials"] = 8
    config["architecture"].update(width=16, conv_maps=4, depth=1)
    config["training"].update(groups=4, steps_per_epoch=3, threads=1)
    config["training"]["search"].update(trials=2, epochs=1)
    config["training"]["final"]["epochs"] = 2


def main(source: str, target: str) -> None:
    config = yaml.safe_load(Path(source).read_text())
    tiny(config)
    Path(target).write_text(yaml.safe_dump(config, sort_keys=False))


if __name__ == "__main__":
    main(*sys.argv[1:])
