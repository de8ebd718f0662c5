"""The data stage's subcommands (see :mod:`..cli`): each turns its parsed arguments into one call of a package
function; imports wait for the call, so that ``--help`` stays fast."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..core.command_line import option
from .ninapro import DATABASES

log = logging.getLogger("contrastive_prosthetics")
DATABASE = option("--database", choices=list(DATABASES))  # every subcommand that reads a database's recordings


def command_synthesize(args: argparse.Namespace) -> None:
    from .ninapro import database
    from .synthetic import SyntheticParams, write_subject_file

    params = SyntheticParams(**json.loads(args.params_json))
    write_subject_file(database(args.database), args.subject, args.exercise, Path(args.out), params, args.seed)


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
