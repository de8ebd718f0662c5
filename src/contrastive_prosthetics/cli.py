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
from pathlib import Path

from .core.command_line import (
    DESCRIBE,
    EVAL_DIR,
    EVAL_OUT_DIR,
    EVALUATION_JSON,
    FAMILIES_JSON,
    FOLD_JSON,
    LOGITS,
    MODEL_DIR,
    MODEL_FILE,
    RUN_OUT_DIR,
    SEED,
    SUBJECT,
    TABLES,
    TENSORS,
    TORCH_THREADS,
    TRAINING_JSON,
    VOTE_WINDOW_MS,
    OneOf,
    Option,
    Subcommand,
    helped,
    option,
)
from .core.errors import InputError
from .data.commands import DATABASE, command_convert, command_download, command_synthesize
from .realtime.command_line import REALTIME_SUBCOMMANDS
from .realtime.commands import replay_recording

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
        oracle_path=Path(args.oracle) if args.oracle else None,
    )


def command_aggregate(args: argparse.Namespace) -> None:
    from .evaluation.summary import aggregate_run

    folders = [Path(folder) for folder in args.inputs]
    aggregate_run(folders, args.tables, Path(args.out_dir), json.loads(args.families_json), args.seed)


def command_concatenate(args: argparse.Namespace) -> None:
    from .evaluation.tables import aggregate_optional_folders

    aggregate_optional_folders([Path(folder) for folder in args.inputs or []], args.tables, Path(args.out_dir))


def command_stream_summary(args: argparse.Namespace) -> None:
    from .core.atomic import atomic_write_frame
    from .evaluation.stream_summary import stream_summary
    from .evaluation.tables import read_table

    table = stream_summary(
        read_table(Path(args.stream_metrics)), json.loads(args.families_json), args.target, args.seed
    )
    atomic_write_frame(table, Path(args.out))


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


def command_pose_decoding(args: argparse.Namespace) -> None:
    from .evaluation.pose_decoding import evaluate_pose_decoding

    evaluate_pose_decoding(Path(args.logits), Path(args.out))


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


# Each subcommand and its options, in the order --help lists them.
SUBCOMMANDS: dict[Subcommand, tuple[Option | OneOf, ...]] = {
    Subcommand("synthesize", "write one synthetic NinaPro-format .mat file", command_synthesize): (
        DATABASE,
        SUBJECT,
        option("--exercise", "NinaPro exercise held by the file (A, B, C, D)"),
        SEED,
        option("--params-json", "SyntheticParams as JSON (config key 'synthetic')"),
        option("--out", "the .mat file to write"),
    ),
    Subcommand("download", "download, verify and extract one subject's archive", command_download): (
        DATABASE,
        SUBJECT,
        option("--exercises", "exercises whose files to extract", nargs="+"),
        option("--url", "the archive's URL"),
        option("--sha256", "expected SHA-256 of the archive, if known", required=False),
        option("--archive-dir", "where the archive is kept"),
        option("--dest-dir", "where its .mat files and manifest.json go"),
        option("--retries", "config key data.download.retries", type=int),
        option("--backoff-s", "data.download.backoff_s", type=float),
        option("--timeout-s", "data.download.timeout_s", type=float),
    ),
    Subcommand("convert", "convert one subject's .mat files into a tensor file", command_convert): (
        DATABASE,
        SUBJECT,
        option("--source", "EXERCISE=PATH (or PATH.zip::MEMBER)", action="append", type=_key_value),
        option("--exercises", "exercises to convert (default: those given as --source)", nargs="+", required=False),
        option("--preprocess-json", "PreprocessParams as JSON (config key 'preprocess')"),
        option("--threads", "channels processed at once (one more thread reads ahead)", type=int),
        helped(SEED, "config key 'seed' (draws each repetition's rest)"),
        option("--manifest", "download manifest whose SHA-256s the files must match", required=False),
        option("--out", "the .pt file to write"),
    ),
    Subcommand("train", "search, train and write test logits for one model x fold", command_train): (
        option("--model", "the model's name (config key under 'models')"),
        option("--model-json", "the model's settings: {kind, adabn}"),
        option("--architecture-json", "config key 'architecture' as JSON"),
        option("--fold", "the fold's name (config key under 'folds')"),
        FOLD_JSON,
        option("--window", "the segment window (config key under preprocess.windows)"),
        TRAINING_JSON,
        EVALUATION_JSON,
        SEED,
        option("--device", "auto, cpu, cuda or cuda:N (config key 'device')"),
        TORCH_THREADS,
        TENSORS,
        option("--out-dir", MODEL_DIR),
    ),
    Subcommand("evaluate", "voting, subset-size accuracy and metrics of one logits.pt", command_evaluate): (
        LOGITS,
        VOTE_WINDOW_MS,
        option("--trials", "random subsets per k (evaluation.subset_trials)", type=int),
        SEED,
        option("--no-rest", "do not add rest to every subset", action="store_true", required=False),
        TORCH_THREADS,
        EVAL_OUT_DIR,
    ),
    Subcommand("stream", "decide every frame of the test recordings, as the controller", command_stream): (
        MODEL_FILE,
        TENSORS,
        option("--fold", "the fold's name"),
        FOLD_JSON,
        option("--subset-sizes", "k of the subsets (K is added)", nargs="+", type=int),
        option("--trials", "subsets per k (the first of the subset draws)", type=int),
        option("--subset-trials", "evaluation.subset_trials", type=int),
        option("--vote-ms", "causal vote lengths (0: none)", nargs="+", type=float),
        SEED,
        option("--adaptation-frames", "training.adaptation_frames", type=int),
        option("--oracle", "a zero-shot fold's: the same model's model.pt on the fold it copies", required=False),
        TORCH_THREADS,
        EVAL_OUT_DIR,
    ),
    Subcommand("replay", "replay a recording through the real-time controller", command_replay): (
        helped(MODEL_FILE, "a network's model.pt, or an export folder"),
        option("--recording", "a NinaPro .mat file (S1_E1_A1.mat)"),
        DATABASE,
        option("--gestures", "the chosen gestures (rest is always added)", nargs="+"),
        option("--vote-ms", "causal majority vote over this long (0: none)", type=float),
        option("--backend", "for an export folder", default="onnx", choices=["onnx", "torchscript"], required=False),
        option("--out", "the decision timeline (TSV)"),
        option("--figure", "also draw the timeline here (.svg and .png)", required=False),
        option("--adapt-on", "AdaBN: the user's recording to adapt on (.mat, as --recording)", required=False),
        option(
            "--adapt-seconds", "adapt on its first seconds (default 100)", type=float, default=100.0, required=False
        ),
        helped(DESCRIBE, f"{DESCRIBE[1]['help']}; choose it in --gestures"),
    ),
    **REALTIME_SUBCOMMANDS,
    Subcommand("aggregate", "concatenate per model x fold evaluation tables", command_aggregate): (
        option("--inputs", f"{EVAL_DIR} folders", nargs="+"),
        helped(TABLES, "table names (subset_accuracy, ...)"),
        helped(FAMILIES_JSON, "fold → family (folds summarised together)"),
        helped(SEED, "config key 'seed' (bootstrap over subjects)"),
        RUN_OUT_DIR,
    ),
    Subcommand("concatenate", "concatenate stream or zero-shot tables (maybe none)", command_concatenate): (
        option("--inputs", f"{EVAL_DIR} folders", nargs="*", required=False),
        helped(TABLES, "stream_metrics, zero_shot, ..."),
        RUN_OUT_DIR,
    ),
    Subcommand(
        "stream-summary", "the stream metrics over users, and the rest promise user by user", command_stream_summary
    ): (
        option("--stream-metrics", "results/eval/stream_metrics.tsv"),
        helped(FAMILIES_JSON, "fold → family, as for aggregate"),
        option("--target", "evaluation.rest_false_activation_target (omit: none)", type=float, required=False),
        helped(SEED, "config key 'seed' (bootstrap over subjects)"),
        option("--out", "results/eval/stream_summary.tsv"),
    ),
    Subcommand("zero-shot", "unseen, seen and all gestures of a zero-shot fold", command_zero_shot): (
        helped(LOGITS, "the zero-shot fold's logits.pt"),
        option("--oracle", "the same model's logits.pt on the oracle fold"),
        VOTE_WINDOW_MS,
        option("--trials", "evaluation.subset_trials", type=int),
        SEED,
        TORCH_THREADS,
        EVAL_OUT_DIR,
    ),
    Subcommand("pose-decoding", "a pose-decoding model's decoded pose against the glove", command_pose_decoding): (
        helped(LOGITS, "the logits.pt of a model with a pose_decoder"),
        option("--out", "results/eval/{model}/{fold}/{window}/pose_decoding.tsv"),
    ),
    Subcommand(
        "calibration-curve", "calibrate a new user's model with c repetitions, every c", command_calibration_curve
    ): (
        helped(MODEL_FILE, "the calibration fold's model.pt (trained on the other subjects)"),
        option(
            "--tensors",
            "the fold's new users' converted files (its test subject, or each of its new_users), one table for all",
            nargs="+",
        ),
        option(
            "--validation-tensors",
            "the fold's validation subjects' converted files: new users the rest bias's margin is learned on",
            nargs="*",
            default=[],
            required=False,
        ),
        option("--fold", "the fold's name"),
        FOLD_JSON,
        TRAINING_JSON,
        EVALUATION_JSON,
        option("--calibration-json", "config key 'calibration' as JSON"),
        SEED,
        TORCH_THREADS,
        option("--out", "results/calibration/{model}/{fold}/{window}/calibration.tsv"),
    ),
    Subcommand("calibration-summary", "the run's calibration curve: table and figure", command_calibration_summary): (
        option("--inputs", "every calibration fold's calibration.tsv", nargs="+"),
        helped(SEED, "config key 'seed' (bootstrap over subjects)"),
        option("--out", "results/eval/calibration.tsv"),
        option("--figure-stem", "results/figures/calibration (.svg and .png are written)"),
    ),
    Subcommand("figures", "draw every figure from the aggregated tables", command_figures): (
        option("--eval-dir", "results/eval"),
        option("--histories", f"{MODEL_DIR}/history.tsv", nargs="+"),
        option("--searches", f"{MODEL_DIR}/search.tsv", nargs="+"),
        option("--out-dir", "results/figures"),
        option("--window", "the window the headline figures show (the first)"),
        option("--family", "the family of folds they show (the first fold's)"),
        helped(FAMILIES_JSON, "fold → family, as for aggregate"),
        helped(VOTE_WINDOW_MS, "evaluation.vote_window_ms, for labels"),
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contrastive-prosthetics", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for subcommand, options in SUBCOMMANDS.items():
        command = commands.add_parser(subcommand.name, help=subcommand.help)
        for entry in options:
            if isinstance(entry, OneOf):
                group = command.add_mutually_exclusive_group(required=entry.required)
                for flag, settings in entry.options:  # a group's own required says whether one must be given
                    group.add_argument(flag, **{**settings, "required": False})
            else:
                flag, settings = entry
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
