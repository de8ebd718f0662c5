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

from .core.errors import InputError

log = logging.getLogger("contrastive_prosthetics")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected EXERCISE=PATH, got {text!r}")
    return key, value


def command_synthesize(args: argparse.Namespace) -> None:
    from .data.ninapro import database
    from .data.synthetic import SyntheticParams, write_subject_file

    params = SyntheticParams(**json.loads(args.params_json))
    write_subject_file(database(args.database), args.subject, args.exercise, Path(args.out), params, args.seed)


def command_download(args: argparse.Namespace) -> None:
    from .data.download import fetch_subject
    from .data.ninapro import database
    from .data.sources import exercise_files

    spec = database(args.database)
    spec.check_subject(args.subject)
    members = list(exercise_files(spec, args.subject, args.exercises).values())
    fetch_subject(
        args.url,
        Path(args.archive_dir),
        Path(args.dest_dir),
        members,
        expected_sha256=args.sha256 or None,
        retries=args.retries,
        backoff_s=args.backoff_s,
        timeout_s=args.timeout_s,
    )


def command_convert(args: argparse.Namespace) -> None:
    from .data.convert import convert_subject
    from .data.ninapro import database
    from .data.preprocess import PreprocessParams

    convert_subject(
        database(args.database),
        args.subject,
        dict(args.source),
        args.exercises or [exercise for exercise, _ in args.source],
        PreprocessParams(**json.loads(args.preprocess_json)),
        Path(args.out),
        manifest=Path(args.manifest) if args.manifest else None,
        seed=args.seed,
        threads=args.threads,
    )
    log.info("wrote %s", args.out)


def command_train(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    model = json.loads(args.model_json)
    fold = json.loads(args.fold_json)
    tensors, out_dir = [Path(p) for p in args.tensors], Path(args.out_dir)
    # The classical baseline and the networks share the rule's outputs, not their training code.
    if model["kind"] == "lda":
        from .learning.baseline import train_lda_fold

        train_lda_fold(tensors, args.model, args.fold, fold, args.seed, out_dir, window=args.window)
        return
    from .learning.train import train_fold

    train_fold(
        tensors,
        args.model,
        model,
        json.loads(args.architecture_json),
        args.fold,
        fold,
        json.loads(args.training_json),
        args.seed,
        out_dir,
        device=args.device,
        window=args.window,
    )


def command_evaluate(args: argparse.Namespace) -> None:
    from .evaluation.evaluate import evaluate_logits_file

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


def command_replay(args: argparse.Namespace) -> None:
    from .data.ninapro import database
    from .realtime.replay import controller_for, replay_to_files

    spec = database(args.database)
    controller = controller_for(Path(args.model), spec, args.gestures, args.vote_ms, args.backend)
    figure = Path(args.figure) if args.figure else None
    timeline = replay_to_files(controller, Path(args.recording), spec, Path(args.out), figure)
    log.info("%d frames, %.1f %% decided right", len(timeline), 100 * (timeline["true"] == timeline["decided"]).mean())


def command_export(args: argparse.Namespace) -> None:
    from .realtime.export import export_model

    for kind, path in export_model(Path(args.model), Path(args.out_dir)).items():
        log.info("wrote %s: %s", kind, path)


def command_aggregate(args: argparse.Namespace) -> None:
    from .evaluation.summary import aggregate_run

    folders = [Path(folder) for folder in args.inputs]
    aggregate_run(folders, args.tables, Path(args.out_dir), json.loads(args.families_json), args.seed)


def command_concatenate(args: argparse.Namespace) -> None:
    from .evaluation.tables import aggregate_optional_folders

    aggregate_optional_folders([Path(folder) for folder in args.inputs or []], args.tables, Path(args.out_dir))


def command_zero_shot(args: argparse.Namespace) -> None:
    from .evaluation.zero_shot import evaluate_zero_shot

    evaluate_zero_shot(
        Path(args.logits),
        Path(args.oracle),
        Path(args.out_dir),
        vote_window_ms=args.vote_window_ms,
        trials=args.trials,
        seed=args.seed,
    )


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contrastive-prosthetics", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    synthesize = commands.add_parser("synthesize", help="write one synthetic NinaPro-format .mat file")
    synthesize.add_argument("--database", required=True, choices=["db1", "db2", "db3"])
    synthesize.add_argument("--subject", required=True, type=int)
    synthesize.add_argument("--exercise", required=True, help="NinaPro exercise held by the file (A, B, C, D)")
    synthesize.add_argument("--seed", required=True, type=int, help="config key 'seed'")
    synthesize.add_argument("--params-json", required=True, help="SyntheticParams as JSON (config key 'synthetic')")
    synthesize.add_argument("--out", required=True, help="the .mat file to write")
    synthesize.set_defaults(run=command_synthesize)

    download = commands.add_parser("download", help="download, verify and extract one subject's archive")
    download.add_argument("--database", required=True, choices=["db1", "db2", "db3"])
    download.add_argument("--subject", required=True, type=int)
    download.add_argument("--exercises", required=True, nargs="+", help="exercises whose files to extract")
    download.add_argument("--url", required=True, help="the archive's URL")
    download.add_argument("--sha256", help="expected SHA-256 of the archive, if known")
    download.add_argument("--archive-dir", required=True, help="where the archive is kept")
    download.add_argument("--dest-dir", required=True, help="where its .mat files and manifest.json go")
    download.add_argument("--retries", required=True, type=int, help="config key data.download.retries")
    download.add_argument("--backoff-s", required=True, type=float, help="data.download.backoff_s")
    download.add_argument("--timeout-s", required=True, type=float, help="data.download.timeout_s")
    download.set_defaults(run=command_download)

    convert = commands.add_parser("convert", help="convert one subject's .mat files into a tensor file")
    convert.add_argument("--database", required=True, choices=["db1", "db2", "db3"])
    convert.add_argument("--subject", required=True, type=int)
    convert.add_argument(
        "--source", required=True, action="append", type=_key_value, help="EXERCISE=PATH (or PATH.zip::MEMBER)"
    )
    convert.add_argument("--exercises", nargs="+", help="exercises to convert (default: those given as --source)")
    convert.add_argument("--preprocess-json", required=True, help="PreprocessParams as JSON (config key 'preprocess')")
    convert.add_argument(
        "--threads", required=True, type=int, help="channels processed at once (one more thread reads ahead)"
    )
    convert.add_argument("--seed", required=True, type=int, help="config key 'seed' (draws each repetition's rest)")
    convert.add_argument("--manifest", help="download manifest whose SHA-256s the files must match")
    convert.add_argument("--out", required=True, help="the .pt file to write")
    convert.set_defaults(run=command_convert)

    train = commands.add_parser("train", help="search, train and write test logits for one model x fold")
    train.add_argument("--model", required=True, help="the model's name (config key under 'models')")
    train.add_argument("--model-json", required=True, help="the model's settings: {kind, adabn}")
    train.add_argument("--architecture-json", required=True, help="config key 'architecture' as JSON")
    train.add_argument("--fold", required=True, help="the fold's name (config key under 'folds')")
    train.add_argument("--fold-json", required=True, help="the fold's settings as JSON")
    train.add_argument("--window", required=True, help="the segment window (config key under preprocess.windows)")
    train.add_argument("--training-json", required=True, help="config key 'training' as JSON")
    train.add_argument("--seed", required=True, type=int, help="config key 'seed'")
    train.add_argument("--device", required=True, help="auto, cpu, cuda or cuda:N (config key 'device')")
    train.add_argument("--threads", required=True, type=int, help="CPU threads for torch")
    train.add_argument("--tensors", required=True, nargs="+", help="converted subject files")
    train.add_argument("--out-dir", required=True, help="results/models/{model}/{fold}")
    train.set_defaults(run=command_train)

    evaluate = commands.add_parser("evaluate", help="voting, subset-size accuracy and metrics of one logits.pt")
    evaluate.add_argument("--logits", required=True, help="results/models/{model}/{fold}/logits.pt")
    evaluate.add_argument("--vote-window-ms", required=True, type=float, help="evaluation.vote_window_ms")
    evaluate.add_argument("--trials", required=True, type=int, help="random subsets per k (evaluation.subset_trials)")
    evaluate.add_argument("--seed", required=True, type=int, help="config key 'seed'")
    evaluate.add_argument("--no-rest", action="store_true", help="do not add rest to every subset")
    evaluate.add_argument("--out-dir", required=True, help="results/eval/{model}/{fold}")
    evaluate.set_defaults(run=command_evaluate)

    stream = commands.add_parser("stream", help="decide every frame of the test recordings, as the controller")
    stream.add_argument("--model", required=True, help="results/models/{model}/{fold}/{window}/model.pt")
    stream.add_argument("--tensors", required=True, nargs="+", help="converted subject files")
    stream.add_argument("--fold", required=True, help="the fold's name")
    stream.add_argument("--fold-json", required=True, help="the fold's settings as JSON")
    stream.add_argument("--subset-sizes", required=True, nargs="+", type=int, help="k of the subsets (K is added)")
    stream.add_argument("--trials", required=True, type=int, help="subsets per k (the first of the subset draws)")
    stream.add_argument("--subset-trials", required=True, type=int, help="evaluation.subset_trials")
    stream.add_argument("--vote-ms", required=True, nargs="+", type=float, help="causal vote lengths (0: none)")
    stream.add_argument("--seed", required=True, type=int, help="config key 'seed'")
    stream.add_argument("--adaptation-frames", required=True, type=int, help="training.adaptation_frames")
    stream.add_argument("--threads", required=True, type=int, help="CPU threads for torch")
    stream.add_argument("--out-dir", required=True, help="results/eval/{model}/{fold}/{window}")
    stream.set_defaults(run=command_stream)

    replay = commands.add_parser("replay", help="replay a recording through the real-time controller")
    replay.add_argument("--model", required=True, help="a network's model.pt, or an export folder")
    replay.add_argument("--recording", required=True, help="a NinaPro .mat file (S1_E1_A1.mat)")
    replay.add_argument("--database", required=True, choices=["db1", "db2", "db3"])
    replay.add_argument("--gestures", required=True, nargs="+", help="the chosen gestures (rest is always added)")
    replay.add_argument("--vote-ms", required=True, type=float, help="causal majority vote over this long (0: none)")
    replay.add_argument("--backend", default="onnx", choices=["onnx", "torchscript"], help="for an export folder")
    replay.add_argument("--out", required=True, help="the decision timeline (TSV)")
    replay.add_argument("--figure", help="also draw the timeline here (.svg and .png)")
    replay.set_defaults(run=command_replay)

    export = commands.add_parser("export", help="export a network as ONNX and TorchScript, normalisation baked in")
    export.add_argument("--model", required=True, help="results/models/{model}/{fold}/{window}/model.pt")
    export.add_argument("--out-dir", required=True, help="where model.onnx, model.ts and deployment.json go")
    export.set_defaults(run=command_export)

    aggregate = commands.add_parser("aggregate", help="concatenate per model x fold evaluation tables")
    aggregate.add_argument("--inputs", required=True, nargs="+", help="results/eval/{model}/{fold} folders")
    aggregate.add_argument("--tables", required=True, nargs="+", help="table names (subset_accuracy, ...)")
    aggregate.add_argument("--families-json", required=True, help="fold → family (folds summarised together)")
    aggregate.add_argument("--seed", required=True, type=int, help="config key 'seed' (bootstrap over subjects)")
    aggregate.add_argument("--out-dir", required=True)
    aggregate.set_defaults(run=command_aggregate)

    concatenate = commands.add_parser("concatenate", help="concatenate stream or zero-shot tables (maybe none)")
    concatenate.add_argument("--inputs", nargs="*", help="results/eval/{model}/{fold}/{window} folders")
    concatenate.add_argument("--tables", required=True, nargs="+", help="stream_metrics, zero_shot, ...")
    concatenate.add_argument("--out-dir", required=True)
    concatenate.set_defaults(run=command_concatenate)

    zero_shot = commands.add_parser("zero-shot", help="unseen, seen and all gestures of a zero-shot fold")
    zero_shot.add_argument("--logits", required=True, help="the zero-shot fold's logits.pt")
    zero_shot.add_argument("--oracle", required=True, help="the same model's logits.pt on the oracle fold")
    zero_shot.add_argument("--vote-window-ms", required=True, type=float, help="evaluation.vote_window_ms")
    zero_shot.add_argument("--trials", required=True, type=int, help="evaluation.subset_trials")
    zero_shot.add_argument("--seed", required=True, type=int, help="config key 'seed'")
    zero_shot.add_argument("--out-dir", required=True, help="results/eval/{model}/{fold}/{window}")
    zero_shot.set_defaults(run=command_zero_shot)

    figures = commands.add_parser("figures", help="draw every figure from the aggregated tables")
    figures.add_argument("--eval-dir", required=True, help="results/eval")
    figures.add_argument("--histories", required=True, nargs="+", help="results/models/{model}/{fold}/history.tsv")
    figures.add_argument("--searches", required=True, nargs="+", help="results/models/{model}/{fold}/search.tsv")
    figures.add_argument("--out-dir", required=True, help="results/figures")
    figures.add_argument("--window", required=True, help="the window the headline figures show (the first)")
    figures.add_argument("--family", required=True, help="the family of folds they show (the first fold's)")
    figures.add_argument("--families-json", required=True, help="fold → family, as for aggregate")
    figures.add_argument("--vote-window-ms", required=True, type=float, help="evaluation.vote_window_ms, for labels")
    figures.set_defaults(run=command_figures)
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
