"""The real-time stage's subcommands calibrate and export and their options, as :mod:`..cli` lists them."""

from __future__ import annotations

from ..core.command_line import (
    DESCRIBE,
    MODEL_FILE,
    OneOf,
    Option,
    Subcommand,
    helped,
    option,
    positive_int,
)
from ..data.commands import DATABASE
from .commands import command_calibrate, command_export

REALTIME_SUBCOMMANDS: dict[Subcommand, tuple[Option | OneOf, ...]] = {
    Subcommand("calibrate", "personalise a model.pt to a user from their recording", command_calibrate): (
        helped(MODEL_FILE, "a network's model.pt (trained on other people)"),
        option(
            "--recording",
            "the user's NinaPro .mat recording(s): labelled (restimulus; rerepetition for --repetitions), unless "
            "--unlabelled (none with --calibration-free)",
            nargs="+",
            required=False,
        ),
        DATABASE,
        OneOf(
            (
                option(
                    "--method",
                    "calibrate on the recording's labels: adabn, prototypes or fine_tune",
                    choices=["adabn", "prototypes", "fine_tune"],
                ),
                option(
                    "--unlabelled",
                    "the calibration-free start, reading the user's unlabelled EMG only (the file's labels are not "
                    "read): an AdaBN model's batch norms adapt to it (method adabn) and the rest bias stays the "
                    "model's, set in training on validation subjects adapted alike",
                    action="store_true",
                ),
                option(
                    "--calibration-free",
                    "the start that reads nothing of the user: an AdaBN model trained on other people with its "
                    "batch-norm statistics pooled over its training subjects and the rest bias set on its "
                    "validation subjects under them (model.pt's calibration_free); no --recording",
                    action="store_true",
                ),
            ),
            required=True,
        ),
        OneOf(
            (
                option("--seconds", "use each recording's first seconds (default: all)", type=float),
                option(
                    "--repetitions",
                    "use the first C repetitions of every gesture of each recording, each with the rest before it",
                    type=positive_int,
                    metavar="C",
                ),
            )
        ),
        option(
            "--keep-trained-gestures",
            "a gesture with no calibration frame keeps its trained class embedding (classifier: head row) instead of "
            "refusing the calibration",
            action="store_true",
            required=False,
        ),
        option("--vote-ms", "the vote the rest bias is set with", type=float, default=250.0, required=False),
        option(
            "--rest-target",
            "overrides the model's rest false activation target (negative: keep its bias); the new model records it",
            type=float,
            required=False,
        ),
        option(
            "--guard-ms",
            "overrides the model's training.guard_ms (frames this close to a change of label are not fitted on); "
            "the new model records it",
            type=float,
            required=False,
        ),
        option("--out", "the personalised model.pt"),
    ),
    Subcommand("export", "export a network as ONNX and TorchScript, normalisation baked in", command_export): (
        MODEL_FILE,
        option("--out-dir", "where model.onnx, model.ts and deployment.json go"),
        option("--adapt-on", "AdaBN: the user's recording to adapt on (a NinaPro .mat)", required=False),
        option(
            "--adapt-seconds", "adapt on its first seconds (default 100)", type=float, default=100.0, required=False
        ),
        helped((DATABASE[0], {**DATABASE[1], "required": False}), "the --adapt-on recording's database"),
        DESCRIBE,
    ),
}
