"""The real-time stage's subcommands (see :mod:`..cli`): replay (its timeline; the command line draws the figure),
export and calibrate, each one call of a package function; imports wait for the call, so that ``--help`` stays
fast."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import InputError
from ..data.ninapro import DATABASES

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("contrastive_prosthetics")


def replay_recording(args: argparse.Namespace) -> pd.DataFrame:
    """The replay subcommand's real-time part: the timeline, written to ``--out`` and returned (the command line
    draws its ``--figure``: this stage imports nothing of the report's)."""
    from ..data.ninapro import database
    from .adabn import recording_emg
    from .network import read_descriptions
    from .replay import controller_for, recording_subject, replay_to_file

    spec = database(args.database)
    adapt_on = recording_emg(Path(args.adapt_on), spec, args.adapt_seconds) if args.adapt_on else None
    subject = recording_subject(spec, Path(args.recording))  # their own rest bias, where the model has one
    described = read_descriptions(args.describe)
    options = {"adapt_on": adapt_on, "subject": subject, "descriptions": described}
    controller = controller_for(Path(args.model), spec, args.gestures, args.vote_ms, args.backend, **options)
    timeline = replay_to_file(controller, Path(args.recording), spec, Path(args.out))
    log.info("%d frames, %.1f %% decided right", len(timeline), 100 * (timeline["true"] == timeline["decided"]).mean())
    return timeline


def command_export(args: argparse.Namespace) -> None:
    from ..data.ninapro import database
    from .adabn import recording_emg
    from .export import export_model
    from .network import read_descriptions

    if args.adapt_on and not args.database:
        raise InputError(f"--adapt-on {args.adapt_on}: give the recording's --database ({', '.join(DATABASES)})")
    spec = database(args.database) if args.database else None
    adapt_on = recording_emg(Path(args.adapt_on), spec, args.adapt_seconds) if args.adapt_on else None
    options = {"adapt_on": adapt_on, "spec": spec, "descriptions": read_descriptions(args.describe)}
    for kind, path in export_model(Path(args.model), Path(args.out_dir), **options).items():
        log.info("wrote %s: %s", kind, path)


def calibration_overrides(args: argparse.Namespace) -> dict:
    """What ``--guard-ms`` and ``--rest-target`` override of the model's own values (a negative target: no bias)."""
    overrides = {} if args.guard_ms is None else {"guard_ms": args.guard_ms}
    if args.rest_target is not None:
        overrides["rest_target"] = None if args.rest_target < 0 else args.rest_target
    return overrides


def command_calibrate(args: argparse.Namespace) -> None:
    """Calibrate and write the model; print each class's frames fitted on (the log has them too)."""
    from ..data.ninapro import database
    from ..learning.personalise import frames_table
    from .personalised import calibrate_model_file, calibrate_unlabelled_model_file, calibration_free_model_file

    out = Path(args.out)
    if args.calibration_free:
        given = [flag for flag, value in label_options_given(args).items() if value]
        given += ["--recording"] * bool(args.recording) + ["--seconds"] * (args.seconds is not None)
        if given:
            raise InputError(
                f"--calibration-free reads nothing of the user, so {', '.join(given)} cannot apply: drop them, or "
                "start from the user's unlabelled EMG (--unlabelled) or labelled repetitions (--method)"
            )
        calibration_free_model_file(Path(args.model), out)
        log.info("wrote %s (the calibration-free start: pooled statistics, the validation subjects' rest bias)", out)
        return
    if not args.recording:
        raise InputError("calibrate needs the user's --recording (or --calibration-free, which reads none)")
    recordings, spec = [Path(p) for p in args.recording], database(args.database)
    if args.unlabelled:
        given = [flag for flag, value in label_options_given(args).items() if value]
        if given:
            raise InputError(
                f"--unlabelled reads no label, so {', '.join(given)} cannot apply: it adapts on the recording's "
                "first --seconds (default: all) and keeps the model's rest bias; drop them, or calibrate with labels "
                "(--method)"
            )
        calibrate_unlabelled_model_file(Path(args.model), recordings, spec, out, seconds=args.seconds)
        log.info("wrote %s (batch norms adapted on the unlabelled recording; the model's rest bias kept)", out)
        return
    calibrated = calibrate_model_file(
        Path(args.model),
        recordings,
        spec,
        out,
        method=args.method,
        seconds=args.seconds,
        vote_ms=args.vote_ms,
        overrides=calibration_overrides(args),
        repetitions=args.repetitions,
        keep_trained_gestures=args.keep_trained_gestures,
    )
    print(f"calibration frames fitted on per class:\n{frames_table(calibrated.fit_frames)}")
    log.info("wrote %s (rest calibration: %s)", args.out, calibrated.rest)


def label_options_given(args: argparse.Namespace) -> dict[str, bool]:
    """The calibrate options that read labels, and whether each was given."""
    return {
        "--repetitions": args.repetitions is not None,
        "--keep-trained-gestures": args.keep_trained_gestures,
        "--rest-target": args.rest_target is not None,
        "--guard-ms": args.guard_ms is not None,
    }
