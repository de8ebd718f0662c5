"""Where each subject's raw .mat files are, for each ``data.source``.

``synthetic`` and ``ninapro`` files live under ``resources/{source}/{db}/s{n}/`` (generated, or downloaded and
extracted there). ``local`` files are used where the user keeps them: the folder in ``data.local.{db}`` is
searched for the NinaPro file names and, failing that, for the subject's zip, which is read in place
(``archive.zip::member``) rather than extracted.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from .matfile import ARCHIVE_SEPARATOR
from .ninapro import DatabaseSpec, database

RESOURCES = Path("resources")


def subject_dir(source: str, db: str, subject: int, resources: Path = RESOURCES) -> Path:
    return resources / source / db / f"s{subject}"


def archive_dir(subject_folder: str | Path) -> Path:
    """Where a downloaded subject's archive is kept: ``archives/`` beside its database's subject folders
    (``resources/ninapro/{db}/archives``), so that the subject's folder holds only the files extracted from it."""
    return Path(subject_folder).parent / "archives"


def exercise_files(spec: DatabaseSpec, subject: int, exercises: list[str]) -> dict[str, str]:
    """Exercise → NinaPro file name, for the exercises of the run."""
    return {exercise: spec.file_name(subject, exercise) for exercise in exercises}


def find_local_files(folder: str | Path, spec: DatabaseSpec, subject: int, exercises: list[str]) -> dict[str, str]:
    """Exercise → path of the file in ``folder`` (recursively), or ``zip::member`` inside a zip there."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data.local.{spec.name} = {folder} is not a folder: point it at the NinaPro files")
    wanted = exercise_files(spec, subject, exercises)
    found: dict[str, str] = {}
    for exercise, name in wanted.items():
        matches = sorted(folder.rglob(name))
        if matches:
            found[exercise] = str(matches[0])
    missing = {e: n for e, n in wanted.items() if e not in found}
    if missing:
        for archive in sorted(folder.rglob("*.zip")):
            try:
                members = zipfile.ZipFile(archive).namelist()
            except zipfile.BadZipFile:
                continue
            for exercise, name in list(missing.items()):
                member = next((m for m in members if PurePosixPath(m).name == name), None)
                if member is not None:
                    found[exercise] = f"{archive}{ARCHIVE_SEPARATOR}{member}"
                    del missing[exercise]
    if missing:
        raise FileNotFoundError(
            f"data.local.{spec.name} = {folder}: no {sorted(missing.values())} for subject {subject}, neither as "
            "files nor inside a zip; extract or copy the subject's NinaPro files there, or drop the subject "
            f"from data.databases.{spec.name}"
        )
    return found


def raw_sources(config: dict, db: str, subject: int, resources: Path = RESOURCES) -> dict[str, str]:
    """Exercise → raw file (path or ``zip::member``) for one subject under the configured source."""
    spec = database(db)
    data = config["data"]
    if data["source"] == "local":
        return find_local_files(data["local"][db], spec, subject, data["exercises"])
    folder = subject_dir(data["source"], db, subject, resources)
    return {e: str(folder / name) for e, name in exercise_files(spec, subject, data["exercises"]).items()}


def tracked_inputs(sources: dict[str, str]) -> list[str]:
    """The files on disk behind the sources (a zip for ``zip::member``), for Snakemake's input tracking."""
    return sorted({s.split(ARCHIVE_SEPARATOR)[0] for s in sources.values()})


def source_arguments(sources: dict[str, str]) -> list[str]:
    """``convert``'s ``--source EXERCISE=PATH`` arguments, one list item each, for the shell to quote one by one:
    paths with spaces, quotes or ``$`` reach the command as they are."""
    return [part for exercise, path in sources.items() for part in ("--source", f"{exercise}={path}")]
