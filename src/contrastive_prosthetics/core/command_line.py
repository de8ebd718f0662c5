"""The command line's vocabulary: an option as (flag, argparse settings), required unless the settings say otherwise;
groups of options of which at most one may be given; a subcommand; and the options that several subcommands share,
named once so that a rule's argument means the same in every subcommand (:mod:`..cli` builds the parser)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NamedTuple

# Where the rules keep one run's files (one model x fold x window), as the help texts name them.
MODEL_DIR = "results/models/{model}/{fold}/{window}"
EVAL_DIR = "results/eval/{model}/{fold}/{window}"

# The options, as (flag, argparse settings); required unless the settings say otherwise. Those that several
# subcommands share are named once here, so that a rule's argument means the same in every subcommand.
Option = tuple[str, dict]


def option(flag: str, help: str | None = None, **settings) -> Option:
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


def name_and_path(text: str) -> tuple[str, str]:
    """NAME=FILE, as --describe takes it."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, path


def helped(option: Option, help: str | None) -> Option:
    """``option`` with another help text (the same argument, described for one subcommand)."""
    flag, settings = option
    return flag, {**settings, "help": help}


SUBJECT = option("--subject", type=int)
SEED = option("--seed", "config key 'seed'", type=int)
TENSORS = option("--tensors", "converted subject files", nargs="+")
FOLD_JSON = option("--fold-json", "the fold's settings as JSON")
TORCH_THREADS = option("--threads", "CPU threads for torch", type=int)
VOTE_WINDOW_MS = option("--vote-window-ms", "evaluation.vote_window_ms", type=float)
TRAINING_JSON = option("--training-json", "config key 'training' as JSON")
EVALUATION_JSON = option(
    "--evaluation-json", "the keys of config key 'evaluation' that the rest calibration reads, as JSON"
)
MODEL_FILE = option("--model", f"{MODEL_DIR}/model.pt")
LOGITS = option("--logits", f"{MODEL_DIR}/logits.pt")
EVAL_OUT_DIR = option("--out-dir", EVAL_DIR)
RUN_OUT_DIR = option("--out-dir")
TABLES = option("--tables", nargs="+")
FAMILIES_JSON = option("--families-json")
DESCRIBE = option(
    "--describe",
    "NAME=FILE: a gesture given only by its mean glove pose (a text file of 22 numbers: the mean glove over the "
    "movement less the mean over the rest before it), for a model with a pose class encoder; repeat for more",
    action="append",
    type=name_and_path,
    default=[],
    metavar="NAME=FILE",
    required=False,
)


class Subcommand(NamedTuple):
    """A subcommand: its name, its line in --help and the function it runs."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], None]
