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

from .config import ConfigError
from .matfile import MatFileError

log = logging.getLogger("contrastive_prosthetics")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected EXERCISE=PATH, got {text!r}")
    return key, value


def command_synthesize(args: argparse.Namespace) -> None:
    from .ninapro import database
    from .synthetic import SyntheticParams, write_subject_file

    params = json.loads(args.params_json) if args.params_json else {}
    params["dead_electrodes"] = tuple(params.get("dead_electrodes", ()))
    write_subject_file(
        database(args.database), args.subject, args.exercise, Path(args.out), SyntheticParams(**params), args.seed
    )


def command_download(args: argparse.Namespace) -> None:
    from .download import fetch_subject
    from .ninapro import database
    from .sources import exercise_files

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
    from .convert import convert_subject
    from .ninapro import database
    from .preprocess import PreprocessParams

    sources = dict(args.source)
    expected = None
    if args.manifest:
        from .download import read_manifest

        manifest = read_manifest(Path(args.manifest))
        expected = {member["name"]: member["sha256"] for member in manifest["members"]}
    params = PreprocessParams(**json.loads(args.preprocess_json)) if args.preprocess_json else PreprocessParams()
    exercises = args.exercises or list(sources)
    convert_subject(
        database(args.database), args.subject, sources, exercises, params, Path(args.out), expected_sha256=expected
    )
    log.info("wrote %s", args.out)


def command_train(args: argparse.Namespace) -> None:
    import torch

    from .train import train_fold

    torch.set_num_threads(args.threads)
    train_fold(
        [Path(p) for p in args.tensors],
        args.model,
        json.loads(args.model_json),
        json.loads(args.architecture_json),
        args.fold,
        json.loads(args.fold_json),
        json.loads(args.training_json),
        args.seed,
        Path(args.out_dir),
        device=args.device,
    )


def command_evaluate(args: argparse.Namespace) -> None:
    import torch

    from .atomic import atomic_write
    from .evaluate import evaluate_payload

    payload = torch.load(args.logits, map_location="cpu", weights_only=False)
    window_frames = max(round(args.vote_window_ms / 10), 1)  # frames are 10 ms apart (100 Hz)
    tables = evaluate_payload(
        payload, window_frames=window_frames, trials=args.trials, seed=args.seed, include_rest=not args.no_rest
    )
    for name, table in tables.items():
        atomic_write(Path(args.out_dir) / f"{name}.tsv", lambda s, t=table: t.to_csv(s, sep="\t", index=False))


def command_aggregate(args: argparse.Namespace) -> None:
    import pandas as pd

    from .atomic import atomic_write

    for name in args.tables:
        parts = [
            pd.read_csv(Path(folder) / f"{name}.tsv", sep="\t", keep_default_na=False, na_values=[""])
            for folder in args.inputs
        ]
        table = pd.concat(parts, ignore_index=True)
        atomic_write(Path(args.out_dir) / f"{name}.tsv", lambda s, t=table: t.to_csv(s, sep="\t", index=False))


def command_figures(args: argparse.Namespace) -> None:
    from .figures import make_figures

    written = make_figures(Path(args.eval_dir), Path(args.models_dir), Path(args.out_dir), vote_ms=args.vote_window_ms)
    log.info("wrote %d figure files", len(written))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contrastive-prosthetics", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    synthesize = commands.add_parser("synthesize", help="write one synthetic NinaPro-format .mat file")
    synthesize.add_argument("--database", required=True, choices=["db1", "db2", "db3"])
    synthesize.add_argument("--subject", required=True, type=int)
    synthesize.add_argument("--exercise", required=True, help="NinaPro exercise held by the file (A, B, C, D)")
    synthesize.add_argument("--seed", type=int, default=0)
    synthesize.add_argument("--params-json", help="SyntheticParams as JSON (config key 'synthetic')")
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
    download.add_argument("--retries", type=int, default=5)
    download.add_argument("--backoff-s", type=float, default=2.0)
    download.add_argument("--timeout-s", type=float, default=60.0)
    download.set_defaults(run=command_download)

    convert = commands.add_parser("convert", help="convert one subject's .mat files into a tensor file")
    convert.add_argument("--database", required=True, choices=["db1", "db2", "db3"])
    convert.add_argument("--subject", required=True, type=int)
    convert.add_argument(
        "--source", required=True, action="append", type=_key_value, help="EXERCISE=PATH (or PATH.zip::MEMBER)"
    )
    convert.add_argument("--exercises", nargs="+", help="exercises to convert (default: those given as --source)")
    convert.add_argument("--preprocess-json", help="PreprocessParams as JSON (config key 'preprocess')")
    convert.add_argument("--manifest", help="download manifest whose SHA-256s the files must match")
    convert.add_argument("--out", required=True, help="the .pt file to write")
    convert.set_defaults(run=command_convert)

    train = commands.add_parser("train", help="search, train and write test logits for one model x fold")
    train.add_argument("--model", required=True, help="the model's name (config key under 'models')")
    train.add_argument("--model-json", required=True, help="the model's settings: {kind, adabn}")
    train.add_argument("--architecture-json", required=True, help="config key 'architecture' as JSON")
    train.add_argument("--fold", required=True, help="the fold's name (config key under 'folds')")
    train.add_argument("--fold-json", required=True, help="the fold's settings as JSON")
    train.add_argument("--training-json", required=True, help="config key 'training' as JSON")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    train.add_argument("--tensors", required=True, nargs="+", help="converted subject files")
    train.add_argument("--out-dir", required=True, help="results/models/{model}/{fold}")
    train.set_defaults(run=command_train)

    evaluate = commands.add_parser("evaluate", help="voting, subset-size accuracy and metrics of one logits.pt")
    evaluate.add_argument("--logits", required=True, help="results/models/{model}/{fold}/logits.pt")
    evaluate.add_argument("--vote-window-ms", type=float, default=250.0)
    evaluate.add_argument("--trials", type=int, default=144, help="random subsets per subset size k")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--no-rest", action="store_true", help="do not add rest to every subset")
    evaluate.add_argument("--out-dir", required=True, help="results/eval/{model}/{fold}")
    evaluate.set_defaults(run=command_evaluate)

    aggregate = commands.add_parser("aggregate", help="concatenate per model x fold evaluation tables")
    aggregate.add_argument("--inputs", required=True, nargs="+", help="results/eval/{model}/{fold} folders")
    aggregate.add_argument("--tables", required=True, nargs="+", help="table names (subset_accuracy, ...)")
    aggregate.add_argument("--out-dir", required=True)
    aggregate.set_defaults(run=command_aggregate)

    figures = commands.add_parser("figures", help="draw every figure from the aggregated tables")
    figures.add_argument("--eval-dir", required=True, help="results/eval")
    figures.add_argument("--models-dir", required=True, help="results/models (history.tsv, search.tsv)")
    figures.add_argument("--out-dir", required=True, help="results/figures")
    figures.add_argument("--vote-window-ms", type=float, default=250.0, help="the voting window, for labels")
    figures.set_defaults(run=command_figures)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from .download import DownloadError

    try:
        args.run(args)
    except (MatFileError, ConfigError, DownloadError, FileNotFoundError, ValueError) as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
