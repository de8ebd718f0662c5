"""A subject's downloaded archive, opened up: extracting the wanted ``.mat`` files, and ``manifest.json``, which
records the size and SHA-256 of the archive and of every extracted file so that every later run can check them.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..core.atomic import atomic_write, atomic_write_text
from ..core.errors import InputError

MANIFEST_NAME = "manifest.json"
# Shown for the first few names when a wanted member is missing, enough to spot a naming mismatch.
LISTED_MEMBERS = 8


class DownloadError(InputError):
    """A download, extraction or integrity check failed; the message says what to do about it."""


@dataclass(frozen=True)
class FileRecord:
    path: str  # as given
    size: int
    sha256: str


def sha256_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so a 470 MB archive does not have to fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Extracting


def extract_members(archive: Path, member_names: list[str], dest_dir: Path) -> list[FileRecord]:
    """Extract the files named ``member_names`` (matched on their basename, at any depth) flat into ``dest_dir``."""
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            entries = _entries_by_basename(bundle)
            _check_wanted_members(archive, member_names, entries)
            return [_extract_one(bundle, entries[name][0], dest_dir / name) for name in member_names]
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # EOFError: truncated compressed data
        raise DownloadError(
            f"{archive} is not a readable zip archive ({error}); it is probably a broken download. "
            "Delete it and rerun to download it again."
        ) from error


def _entries_by_basename(bundle: zipfile.ZipFile) -> dict[str, list[zipfile.ZipInfo]]:
    entries: dict[str, list[zipfile.ZipInfo]] = {}
    for info in bundle.infolist():
        if info.is_dir():
            continue
        # Zips made on Windows sometimes use backslashes as separators.
        basename = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
        entries.setdefault(basename, []).append(info)
    return entries


def _check_wanted_members(archive: Path, member_names: list[str], entries: dict[str, list[zipfile.ZipInfo]]) -> None:
    missing = [name for name in member_names if name not in entries]
    if missing:
        raise DownloadError(
            f"{archive} has no {', '.join(missing)}; it holds {_describe_contents(entries)}. Check the file names "
            "the database expects, or whether the URL under data.urls points at the right subject's archive."
        )
    ambiguous = [name for name in member_names if len(entries[name]) > 1]
    if ambiguous:
        paths = [info.filename for name in ambiguous for info in entries[name]]
        raise DownloadError(f"{archive} holds more than one file named {', '.join(ambiguous)}: {', '.join(paths)}")


def _describe_contents(entries: dict[str, list[zipfile.ZipInfo]]) -> str:
    """The first few .mat names (or any names, if there are no .mat files), for a 'missing member' message."""
    mat_names = sorted(name for name in entries if name.lower().endswith(".mat"))
    names, kind = (mat_names, ".mat files") if mat_names else (sorted(entries), "files")
    if not names:
        return "no files"
    shown = ", ".join(names[:LISTED_MEMBERS])
    more = ", ..." if len(names) > LISTED_MEMBERS else ""
    return f"{len(names)} {kind} ({shown}{more})"


def _extract_one(bundle: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> FileRecord:
    """Write one member to ``target`` atomically, hashing it on the way."""
    digest = hashlib.sha256()
    size = 0

    def copy(out) -> None:
        nonlocal size
        # Reading to the end makes zipfile check the member's CRC, so a corrupt archive raises BadZipFile here.
        with bundle.open(info) as source:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)

    atomic_write(target, copy)
    return FileRecord(str(target), size, digest.hexdigest())


# ---------------------------------------------------------------------------------------------------------------
# Manifest


def write_manifest(path: Path, archive: FileRecord, url: str, members: list[FileRecord]) -> None:
    """Record where the files came from and their sizes and digests, as JSON written atomically."""
    manifest = {
        "url": url,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "archive": _manifest_entry(archive),
        "members": [_manifest_entry(member) for member in members],
    }
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")


def _manifest_entry(record: FileRecord) -> dict:
    return {"name": Path(record.path).name, "size": record.size, "sha256": record.sha256}


def read_manifest(path: Path) -> dict:
    """The manifest as written by write_manifest; DownloadError if it is missing or unreadable."""
    path = Path(path)
    remedy = f"Delete the folder {path.parent} and rerun to download and extract the files again."
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise DownloadError(f"The manifest {path} is missing. {remedy}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DownloadError(f"The manifest {path} is not valid JSON ({error}). {remedy}") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("members"), list) or "archive" not in manifest:
        raise DownloadError(f"The manifest {path} lacks the 'archive' and 'members' records. {remedy}")
    return manifest


def verify_files(manifest_path: Path, files: list[Path]) -> None:
    """Check each file's size and sha256 against the manifest's record of the same basename."""
    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path)
    records = {entry["name"]: entry for entry in [manifest["archive"], *manifest["members"]]}
    remedy = f"Delete the folder {manifest_path.parent} and rerun to download and extract it again."
    for file in map(Path, files):
        record = records.get(file.name)
        if record is None:
            raise DownloadError(f"{file} has no record in {manifest_path}. {remedy}")
        if not file.exists():
            raise DownloadError(f"{file} is missing, though {manifest_path} records it. {remedy}")
        # Size first: it is free, and catches the common truncated file without hashing it.
        size = file.stat().st_size
        if size != record["size"]:
            raise _mismatch(file, "size", record["size"], size, manifest_path, remedy)
        digest = sha256_of(file)
        if digest != record["sha256"]:
            raise _mismatch(file, "sha256", record["sha256"], digest, manifest_path, remedy)


def _mismatch(file: Path, field: str, expected: object, actual: object, manifest_path: Path, remedy: str) -> Exception:
    return DownloadError(
        f"{file} changed since it was downloaded: its {field} is {actual}, but {manifest_path} records {expected}. "
        f"{remedy}"
    )
