"""Command line: one subcommand per workflow rule, each a thin call into one package function.

    contrastive-prosthetics synthesize --database db2 --subject 1 --exercise B --out S1_E1_A1.mat
    contrastive-prosthetics download --database db2 --subject 1 --url https://.../DB2_s1.zip --dest-dir ...
    contrastive-prosthetics convert --database db2 --subject 1 --source B=S1_E1_A1.mat --out s1.pt

Run any subcommand with ``--help`` for its options. Errors about the data or the configuration end the
command with exit status 2 and one message naming the file and field, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from .core.errors import InputError
from .data.commands import command_convert, command_download, command_synthesize
from .data.ninapro import DATABASES
from .realtime.commands import command_calibrate, command_export, replay_recording

log = logging.getLogger("contrastive_prosthetics")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected EXERCISE=PATH, got {text!r}")
    return key, value


def command_train(args: argparse.Namespace) -> None:
    import torch

    from .learning.training_settings import TrainingSettings

    torch.set_num_threads(args.threads)
    model = json.loads(args.model_json)
    fold = json.loads(args.fold_json)
    tensors, out_dir = [Path(p) for p in args.tensors], Path(args.out_dir)
    settings = TrainingSettings.from_config(json.loads(args.training_json), json.loads(args.evaluation_json))
    # The classical baseline and the networks share the rule's outputs, not their training code.
    if model["kind"] == "lda":
        from .learning.lda import train_lda_fold

        train_lda_fold(tensors, args.model, args.fold, fold, args.seed, out_dir, settings, window=args.window)
        return
    from .learning.train import train_fold

    train_fold(
        tensors,
        args.model,
        model,
        json.loads(args.architecture_json),
        args.fold,
        fold,
        settings,
        args.seed,
        out_dir,
        device=args.device,
        window=args.window,
    )


def command_evaluate(args: argparse.Namespace) -> None:
    import torch

    from .evaluation.evaluate import evaluate_logits_file

    torch.set_num_threads(args.threads)

    evaluate_logits_file(
        Path(args.logits),
        Path(args.out_dir),
        vote_window_ms=args.vote_window_ms,
        trials=args.trials,
        seed=args.seed,
        include_rest=not args.no_rest,
    )


def command_stream(args: argparse.Namespace) -> None:
    import torch

    from .evaluation.stream import evaluate_stream

    torch.set_num_threads(args.threads)
    evaluate_stream(
        Path(args.model),
        [Path(p) for p in args.tensors],
        args.fold,
        json.loads(args.fold_json),
        Path(args.out_dir),
        subset_sizes=args.subset_sizes,
        trials=args.trials,
        subset_trials=args.subset_trials,
        vote_ms=args.vote_ms,
        seed=args.seed,
        adaptation_limit=args.adaptation_frames,
    )


def command_aggregate(args: argparse.Namespace) -> None:
    from .evaluation.summary import aggregate_run

    folders = [Path(folder) for folder in args.inputs]
    aggregate_run(folders, args.tables, Path(args.out_dir), json.loads(args.families_json), args.seed)


def command_concatenate(args: argparse.Namespace) -> None:
    from .evaluation.tables import aggregate_optional_folders

    aggregate_optional_folders([Path(folder) for folder in args.inputs or []], args.tables, Path(args.out_dir))


def command_zero_shot(args: argparse.Namespace) -> None:
    import torch

    from .evaluation.zero_shot import evaluate_zero_shot

    torch.set_num_threads(args.threads)

    evaluate_zero_shot(
        Path(args.logits),
        Path(args.oracle),
        Path(args.out_dir),
        vote_window_ms=args.vote_window_ms,
        trials=args.trials,
        seed=args.seed,
    )


def command_calibration_curve(args: argparse.Namespace) -> None:
    import torch

    from .evaluation.calibration_curve import calibration_curve
    from .learning.training_settings import TrainingSettings

    torch.set_num_threads(args.threads)
    calibration_curve(
        Path(args.model),
        [Path(p) for p in args.tensors],
        [Path(p) for p in args.validation_tensors],
        args.fold,
        json.loads(args.fold_json),
        TrainingSettings.from_config(json.loads(args.training_json), json.loads(args.evaluation_json)),
        json.loads(args.calibration_json),
        args.seed,
        Path(args.out),
    )


def command_calibration_summary(args: argparse.Namespace) -> None:
    from .report.calibration_figure import summarise_calibration

    summarise_calibration([Path(p) for p in args.inputs], Path(args.out), Path(args.figure_stem), args.seed)


def command_replay(args: argparse.Namespace) -> None:
    timeline = replay_recording(args)
    if args.figure:  # drawn here, by the report stage, after the real-time stage returned the timeline
        from .report.replay_figure import timeline_figure

        timeline_figure(timeline, Path(args.figure).with_suffix(""), Path(args.recording).name)


def command_figures(args: argparse.Namespace) -> None:
    from .report.figures import make_figures

    written = make_figures(
        Path(args.eval_dir),
        [Path(p) for p in args.histories],
        [Path(p) for p in args.searches],
        Path(args.out_dir),
        vote_ms=args.vote_window_ms,
        window=args.window,
        family=args.family,
        families=json.loads(args.families_json),
    )
    log.info("wrote %d figure files", len(written))


# Where the rules keep one run's files (one model x fold x window), as the help texts name them.
MODEL_DIR = "results/models/{model}/{fold}/{window}"
EVAL_DIR = "results/eval/{model}/{fold}/{window}"

# The options, as (flag, argparse settings); required unless the settings say otherwise. Those that several
# subcommands share are named once here, so that a rule's argument means the same in every subcommand.
Option = tuple[str, dict]


def _option(flag: str, help: str | None = None, **settings) -> Option:
    """An option of the table: required unless ``settings`` say ``required=False``."""
    return flag, {"required": True, "help": help, **settings}


class OneOf(NamedTuple):
    """Options of which at most one may be given (``required``: exactly one); argparse names the two in error."""

    options: tuple[Option, ...]
    required: bool = False


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def _helped(option: Option, help: str | None) -> Option:
    """``option`` with another help text (the same argument, described for one subcommand)."""
    flag, settings = option
    return flag, {**settings, "help": help}


DATABASE = _option("--database", choices=list(DATABASES))
SUBJECT = _option("--subject", type=int)
SEED = _option("--seed", "config key 'seed'", type=int)
TENSORS = _option("--tensors", "converted subject files", nargs="+")
FOLD_JSON = _option("--fold-json", "the fold's settings as JSON")
TORCH_THREADS = _option("--threads", "CPU threads for torch", type=int)
VOTE_WINDOW_MS = _option("--vote-window-ms", "evaluation.vote_window_ms", type=float)
TRAINING_JSON = _option("--training-json", "config key 'training' as JSON")
EVALUATION_JSON = _option(
    "--evaluation-json", "the keys of config key 'evaluation' that the rest calibration reads, as JSON"
)
MODEL_FILE = _option("--model", f"{MODEL_DIR}/model.pt")
LOGITS = _option("--logits", f"{MODEL_DIR}/logits.pt")
EVAL_OUT_DIR = _option("--out-dir", EVAL_DIR)
RUN_OUT_DIR = _option("--out-dir")
TABLES = _option("--tables", nargs="+")
FAMILIES_JSON = _option("--families-json")


class Subcommand(NamedTuple):
    """A subcommand: its name, its line in --help and the function it runs."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], None]


# Each subcommand and its options, in the order --help lists them.
SUBCOMMANDS: dict[Subcommand, tuple[Option | OneOf, ...]] = {
    Subcommand("synthesize", "write one synthetic NinaPro-format .mat file", command_synthesize): (
        DATABASE,
        SUBJECT,
        _option("--exercise", "NinaPro exercise held by the file (A, B, C, D)"),
        SEED,
        _option("--params-json", "SyntheticParams as JSON (config key 'synthetic')"),
        _option("--out", "the .mat file to write"),
    ),
    Subcommand("download", "download, verify and extract one subject's archive", command_download): (
        DATABASE,
        SUBJECT,
        _option("--exercises", "exercises whose files to extract", nargs="+"),
        _option("--url", "the archive's URL"),
        _option("--sha256", "expected SHA-256 of the archive, if known", required=False),
        _option("--archive-dir", "where the archive is kept"),
        _option("--dest-dir", "where its .mat files and manifest.json go"),
        _option("--retries", "config key data.download.retries", type=int),
        _option("--backoff-s", "data.download.backoff_s", type=float),
        _option("--timeout-s", "data.download.timeout_s", type=float),
    ),
    Subcommand("convert", "convert one subject's .mat files into a tensor file", command_convert): (
        DATABASE,
        SUBJECT,
        _option("--source", "EXERCISE=PATH (or PATH.zip::MEMBER)", action="append", type=_key_value),
        _option("--exercises", "exercises to convert (default: those given as --source)", nargs="+", required=False),
        _option("--preprocess-json", "PreprocessParams as JSON (config key 'preprocess')"),
        _option("--threads", "channels processed at once (one more thread reads ahead)", type=int),
        _helped(SEED, "config key 'seed' (draws each repetition's rest)"),
        _option("--manifest", "download manifest whose SHA-256s the files must match", required=False),
        _option("--out", "the .pt file to write"),
    ),
    Subcommand("train", "search, train and write test logits for one model x fold", command_train): (
        _option("--model", "the model's name (config key under 'models')"),
        _option("--model-json", "the model's settings: {kind, adabn}"),
        _option("--architecture-json", "config key 'architecture' as JSON"),
        _option("--fold", "the fold's name (config key under 'folds')"),
        FOLD_JSON,
        _option("--window", "the segment window (config key under preprocess.windows)"),
        TRAINING_JSON,
        EVALUATION_JSON,
        SEED,
        _option("--device", "auto, cpu, cuda or cuda:N (config key 'device')"),
        TORCH_THREADS,
        TENSORS,
        _option("--out-dir", MODEL_DIR),
    ),
    Subcommand("evaluate", "voting, subset-size accuracy and metrics of one logits.pt", command_evaluate): (
        LOGITS,
        VOTE_WINDOW_MS,
        _option("--trials", "random subsets per k (evaluation.subset_trials)", type=int),
        SEED,
        _option("--no-rest", "do not add rest to every subset", action="store_true", required=False),
        TORCH_THREADS,
        EVAL_OUT_DIR,
    ),
    Subcommand("stream", "decide every frame of the test recordings, as the controller", command_stream): (
        MODEL_FILE,
        TENSORS,
        _option("--fold", "the fold's name"),
        FOLD_JSON,
        _option("--subset-sizes", "k of the subsets (K is added)", nargs="+", type=int),
        _option("--trials", "subsets per k (the first of the subset draws)", type=int),
        _option("--subset-trials", "evaluation.subset_trials", type=int),
        _option("--vote-ms", "causal vote lengths (0: none)", nargs="+", type=float),
        SEED,
        _option("--adaptation-frames", "training.adaptation_frames", type=int),
        TORCH_THREADS,
        EVAL_OUT_DIR,
    ),
    Subcommand("replay", "replay a recording through the real-time controller", command_replay): (
        _helped(MODEL_FILE, "a network's model.pt, or an export folder"),
        _option("--recording", "a NinaPro .mat file (S1_E1_A1.mat)"),
        DATABASE,
        _option("--gestures", "the chosen gestures (rest is always added)", nargs="+"),
        _option("--vote-ms", "causal majority vote over this long (0: none)", type=float),
        _option("--backend", "for an export folder", default="onnx", choices=["onnx", "torchscript"], required=False),
        _option("--out", "the decision timeline (TSV)"),
        _option("--figure", "also draw the timeline here (.svg and .png)", required=False),
        _option("--adapt-on", "AdaBN: the user's recording to adapt on (.mat, as --recording)", required=False),
        _option(
            "--adapt-seconds", "adapt on its first seconds (default 100)", type=float, default=100.0, required=False
        ),
    ),
    Subcommand("calibrate", "personalise a model.pt to a user from their recording", command_calibrate): (
        _helped(MODEL_FILE, "a network's model.pt (trained on other people)"),
        _option(
            "--recording",
            "the user's NinaPro .mat recording(s): labelled (restimulus; rerepetition for --repetitions), unless "
            "--unlabelled (none with --calibration-free)",
            nargs="+",
            required=False,
        ),
        DATABASE,
        OneOf(
            (
                _option(
                    "--method",
                    "calibrate on the recording's labels: adabn, prototypes or fine_tune",
                    choices=["adabn", "prototypes", "fine_tune"],
                ),
                _option(
                    "--unlabelled",
                    "the calibration-free start, reading the user's unlabelled EMG only (the file's labels are not "
                    "read): an AdaBN model's batch norms adapt to it (method adabn) and the rest bias stays the "
                    "model's, set in training on validation subjects adapted alike",
                    action="store_true",
                ),
                _option(
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
                _option("--seconds", "use each recording's first seconds (default: all)", type=float),
                _option(
                    "--repetitions",
                    "use the first C repetitions of every gesture of each recording, each with the rest before it",
                    type=positive_int,
                    metavar="C",
                ),
            )
        ),
        _option(
            "--keep-trained-gestures",
            "a gesture with no calibration frame keeps its trained class embedding (classifier: head row) instead of "
            "refusing the calibration",
            action="store_true",
            required=False,
        ),
        _option("--vote-ms", "the vote the rest bias is set with", type=float, default=250.0, required=False),
        _option(
            "--rest-target",
            "overrides the model's rest false activation target (negative: keep its bias); the new model records it",
            type=float,
            required=False,
        ),
        _option(
            "--guard-ms",
            "overrides the model's training.guard_ms (frames this close to a change of label are not fitted on); "
            "the new model records it",
            type=float,
            required=False,
        ),
        _option("--out", "the personalised model.pt"),
    ),
    Subcommand("export", "export a network as ONNX and TorchScript, normalisation baked in", command_export): (
        MODEL_FILE,
        _option("--out-dir", "where model.onnx, model.ts and deployment.json go"),
        _option("--adapt-on", "AdaBN: the user's recording to adapt on (a NinaPro .mat)", required=False),
        _option(
            "--adapt-seconds", "adapt on its first seconds (default 100)", type=float, default=100.0, required=False
        ),
        _helped((DATABASE[0], {**DATABASE[1], "required": False}), "the --adapt-on recording's database"),
    ),
    Subcommand("aggregate", "concatenate per model x fold evaluation tables", command_aggregate): (
        _option("--inputs", f"{EVAL_DIR} folders", nargs="+"),
        _helped(TABLES, "table names (subset_accuracy, ...)"),
        _helped(FAMILIES_JSON, "fold → family (folds summarised together)"),
        _helped(SEED, "config key 'seed' (bootstrap over subjects)"),
        RUN_OUT_DIR,
    ),
    Subcommand("concatenate", "concatenate stream or zero-shot tables (maybe none)", command_concatenate): (
        _option("--inputs", f"{EVAL_DIR} folders", nargs="*", required=False),
        _helped(TABLES, "stream_metrics, zero_shot, ..."),
        RUN_OUT_DIR,
    ),
    Subcommand("zero-shot", "unseen, seen and all gestures of a zero-shot fold", command_zero_shot): (
        _helped(LOGITS, "the zero-shot fold's logits.pt"),
        _option("--oracle", "the same model's logits.pt on the oracle fold"),
        VOTE_WINDOW_MS,
        _option("--trials", "evaluation.subset_trials", type=int),
        SEED,
        TORCH_THREADS,
        EVAL_OUT_DIR,
    ),
    Subcommand(
        "calibration-curve", "calibrate a new user's model with c repetitions, every c", command_calibration_curve
    ): (
        _helped(MODEL_FILE, "the calibration fold's model.pt (trained on the other subjects)"),
        _option(
            "--tensors",
            "the fold's new users' converted files (its test subject, or each of its new_users), one table for all",
            nargs="+",
        ),
        _option(
            "--validation-tensors",
            "the fold's validation subjects' converted files: new users the rest bias's margin is learned on",
            nargs="*",
            default=[],
            required=False,
        ),
        _option("--fold", "the fold's name"),
        FOLD_JSON,
        TRAINING_JSON,
        EVALUATION_JSON,
        _option("--calibration-json", "config key 'calibration' as JSON"),
        SEED,
        TORCH_THREADS,
        _option("--out", "results/calibration/{model}/{fold}/{window}/calibration.tsv"),
    ),
    Subcommand("calibration-summary", "the run's calibration curve: table and figure", command_calibration_summary): (
        _option("--inputs", "every calibration fold's calibration.tsv", nargs="+"),
        _helped(SEED, "config key 'seed' (bootstrap over subjects)"),
        _option("--out", "results/eval/calibration.tsv"),
        _option("--figure-stem", "results/figures/calibration (.svg and .png are written)"),
    ),
    Subcommand("figures", "draw every figure from the aggregated tables", command_figures): (
        _option("--eval-dir", "results/eval"),
        _option("--histories", f"{MODEL_DIR}/history.tsv", nargs="+"),
        _option("--searches", f"{MODEL_DIR}/search.tsv", nargs="+"),
        _option("--out-dir", "results/figures"),
        _option("--window", "the window the headline figures show (the first)"),
        _option("--family", "the family of folds they show (the first fold's)"),
        _helped(FAMILIES_JSON, "fold → family, as for aggregate"),
        _helped(VOTE_WINDOW_MS, "evaluation.vote_window_ms, for labels"),
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contrastive-prosthetics", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for subcommand, options in SUBCOMMANDS.items():
        command = commands.add_parser(subcommand.name, help=subcommand.help)
        for option in options:
            if isinstance(option, OneOf):
                group = command.add_mutually_exclusive_group(required=option.required)
                for flag, settings in option.options:  # a group's own required says whether one must be given
                    group.add_argument(flag, **{**settings, "required": False})
            else:
                flag, settings = option
                command.add_argument(flag, **settings)
        command.set_defaults(run=subcommand.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        args.run(args)
    except (InputError, FileNotFoundError) as error:
        # Bad data, configuration or network: one line the user can act on. Anything else is a bug and keeps
        # its traceback.
        message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        print(f"contrastive-prosthetics {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
