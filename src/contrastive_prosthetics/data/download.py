"""Resumable, verified downloads of the NinaPro per-subject archives.

Each NinaPro subject comes as one zip of about 470 MB, served from hosts that drop long transfers now and then.
So a download streams into ``<archive>.part`` and, when the connection drops, picks up where it stopped with an
HTTP ``Range`` request instead of starting over; the archive appears under its real name only once it is complete
(and matches ``expected_sha256`` when one is known), so a half-written archive is never mistaken for a good one.

The wanted ``.mat`` files are then extracted, flattened, into the subject's folder, and ``manifest.json`` records
the size and SHA-256 of the archive and of every extracted file. Every later run checks the files against that
manifest, so a truncated or edited file is reported instead of silently feeding the pipeline, and an archive that
still matches its manifest is never downloaded again.

Machines without internet access (or hosts that need a NinaPro login) fail fast with advice to download the
archives by hand and point the config at them (``data.source: local``).
"""

from __future__ import annotations

import http
import http.client
import logging
import os
import posixpath
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .. import __version__
from .archives import (
    MANIFEST_NAME,
    DownloadError,
    FileRecord,
    extract_members,
    read_manifest,
    sha256_of,
    verify_files,
    write_manifest,
)

log = logging.getLogger(__name__)

USER_AGENT = f"contrastive-prosthetics/{__version__} (+urllib)"
# 408 and 429 say "try again later", unlike every other 4xx, which would fail the same way on a retry.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})
HAND_DOWNLOAD_ADVICE = (
    "If this machine has no internet access, or the server needs a login, download the archive by hand "
    "(from a browser with a NinaPro account), put it in a folder, and use data.source: local "
    "with data.local.<db> pointing at that folder."
)


class _ConnectError(Exception):
    """No connection could be opened at all (no network, DNS failure, connection refused)."""


class _TransientError(Exception):
    """The transfer failed in a way a later attempt, resuming from the ``.part`` file, may get past."""


class _RangeNotSatisfiable(Exception):
    """HTTP 416 to a resume request: the part file already reaches (or passes) the end of the file."""

    def __init__(self, total: int | None):
        super().__init__(total)
        self.total = total


# ---------------------------------------------------------------------------------------------------------------
# Downloading


def part_path(dest: Path) -> Path:
    """Where an unfinished download of ``dest`` lives until it is complete."""
    return dest.with_name(dest.name + ".part")


def download_file(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    retries: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 30.0,
    chunk_bytes: int = 1 << 20,
    progress: bool = True,
) -> FileRecord:
    """Download ``url`` to ``dest``, resuming any ``.part`` left by an earlier attempt or run.

    Retries transient failures ``retries`` times, sleeping ``backoff_s * 2**attempt`` in between. ``dest`` is
    written only by an atomic rename of the complete, verified ``.part`` file.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            _download_attempt(url, part, timeout_s=timeout_s, chunk_bytes=chunk_bytes, progress=progress)
            break
        except _ConnectError as error:
            # On the first attempt this almost always means no network at all; retrying would only make the user
            # wait minutes for the same answer. After a dropped transfer it is more likely a hiccup worth retrying.
            if attempt == 0:
                raise DownloadError(f"Could not connect to {url}: {error}. {HAND_DOWNLOAD_ADVICE}") from error
            last_error = error
        except _TransientError as error:
            last_error = error
        if attempt < retries:
            delay = backoff_s * 2**attempt
            log.warning(
                "%s: %s; retrying in %.3g s (attempt %d of %d)", url, last_error, delay, attempt + 2, retries + 1
            )
            time.sleep(delay)
    else:
        kept = f"The partial download is kept in {part} and the next run resumes it. " if part.exists() else ""
        raise DownloadError(
            f"Downloading {url} failed after {retries + 1} attempts (last error: {last_error}). "
            f"{kept}{HAND_DOWNLOAD_ADVICE}"
        )
    return _finish_download(url, part, dest, expected_sha256, chunk_bytes)


def _download_attempt(url: str, part: Path, *, timeout_s: float, chunk_bytes: int, progress: bool) -> None:
    """One request: append to (or rewrite) ``part`` until the body ends; raise if it ended early."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout_s)
    except _RangeNotSatisfiable as answer:
        # Without a total to compare against, accept the part file; the checksum, when known, still guards it.
        if answer.total is not None:
            _check_complete_part(url, part, offset, answer.total)
        return
    with response:
        start, total = _resume_point(url, response, offset, part)
        with (
            open(part, "ab" if start else "wb") as out,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                file=sys.stderr,
                disable=not progress,
            ) as bar,
        ):
            while chunk := _read_chunk(response, chunk_bytes):
                out.write(chunk)
                bar.update(len(chunk))
    if total is not None:
        _check_complete_part(url, part, part.stat().st_size, total)


def _open(url: str, offset: int, timeout_s: float) -> http.client.HTTPResponse:
    """Send the request, with a Range header when resuming; raise the matching internal error if it fails."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        request = urllib.request.Request(url, headers=headers)
    except ValueError as error:  # not a URL at all
        raise DownloadError(
            f"{url!r} is not a valid URL ({error}); check the URL templates under data.urls."
        ) from error
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            content_range = error.headers.get("Content-Range") if error.headers else None
            raise _RangeNotSatisfiable(_parse_content_range(content_range)[1]) from error
        raise _http_status_error(url, error) from error
    except urllib.error.URLError as error:  # raised before any response: DNS, refused, unreachable, connect timeout
        raise _ConnectError(str(error.reason)) from error
    except (OSError, http.client.HTTPException) as error:  # the connection opened but broke before the headers
        raise _TransientError(f"connection lost before the response ({error!r})") from error


def _http_status_error(url: str, error: urllib.error.HTTPError) -> Exception:
    """A DownloadError for statuses a retry cannot fix, a _TransientError for server-side (5xx) trouble."""
    status = f"HTTP {error.code} {_status_phrase(error)}"
    if 400 <= error.code < 500 and error.code not in RETRYABLE_CLIENT_STATUSES:
        return DownloadError(
            f"Downloading {url} failed: the server answered {status}. Check the URL templates under data.urls in "
            "the config (they can point at a mirror if the original host moved or removed the file)."
        )
    return _TransientError(f"the server answered {status}")


def _status_phrase(error: urllib.error.HTTPError) -> str:
    try:
        return http.HTTPStatus(error.code).phrase
    except ValueError:  # a status code the standard library does not know
        return str(error.reason)


def _resume_point(url: str, response: http.client.HTTPResponse, offset: int, part: Path) -> tuple[int, int | None]:
    """(where this response's body starts in the file, the file's total size if known)."""
    length = _int_header(response, "Content-Length")
    if response.status != 206:
        if offset:
            log.info("%s: the server ignored the Range request; restarting from the beginning", url)
        return 0, length
    first, total = _parse_content_range(response.headers.get("Content-Range"))
    if first != offset:
        # Appending bytes from anywhere but the end of the part file would corrupt it; start over instead.
        part.unlink(missing_ok=True)
        raise _TransientError(f"asked to resume at byte {offset}, but the server sent bytes from {first}")
    if total is None and length is not None:
        total = offset + length
    return offset, total


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``bytes first-last/total`` or ``bytes */total``; None for unknown parts."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total_text = value.removeprefix("bytes ").partition("/")
    first_text = span.partition("-")[0]
    first = int(first_text) if first_text.isdigit() else None
    total = int(total_text) if total_text.isdigit() else None
    return first, total


def _int_header(response: http.client.HTTPResponse, name: str) -> int | None:
    value = response.headers.get(name)
    return int(value) if value and value.strip().isdigit() else None


def _read_chunk(response: http.client.HTTPResponse, chunk_bytes: int) -> bytes:
    """The next chunk of the body; network failures become _TransientError (disk errors on writing do not)."""
    try:
        return response.read(chunk_bytes)
    except (OSError, http.client.HTTPException) as error:  # IncompleteRead, ConnectionResetError, TimeoutError, ...
        raise _TransientError(f"connection lost mid-file ({error!r})") from error


def _check_complete_part(url: str, part: Path, size: int, total: int) -> None:
    """Make sure the part file holds exactly ``total`` bytes; a short one is resumed, a too-long one restarted."""
    if size < total:
        raise _TransientError(f"the body ended after {size} of {total} bytes")
    if size > total:
        # Larger than the file: a leftover of a different (older) file under the same name. Start over.
        part.unlink(missing_ok=True)
        raise _TransientError(f"{part.name} holds {size} bytes but {url} has {total}; restarting")


def _finish_download(url: str, part: Path, dest: Path, expected_sha256: str | None, chunk_bytes: int) -> FileRecord:
    """Check the complete part file's digest, then rename it into place."""
    actual = sha256_of(part, chunk_bytes)
    if expected_sha256 is not None and actual != expected_sha256.lower():
        # The bytes are wrong, so resuming from them would only repeat the failure: throw them away.
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"Downloaded {url}, but its sha256 is {actual}, not the expected {expected_sha256}. The download was "
            "deleted; rerun to try again, and if it keeps happening check the URL and the expected checksum."
        )
    size = part.stat().st_size
    os.replace(part, dest)
    return FileRecord(str(dest), size, actual)


# ---------------------------------------------------------------------------------------------------------------
# One subject


def fetch_subject(
    url: str,
    archive_dir: Path,
    dest_dir: Path,
    member_names: list[str],
    *,
    expected_sha256: str | None = None,
    retries: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 30.0,
    progress: bool = True,
) -> Path:
    """Make sure ``dest_dir`` holds the subject's files, verified; return the manifest's path.

    Downloads the archive only when it is missing or no longer matches the manifest. An archive already present
    without a manifest (an earlier run stopped before extracting, or it was put there by hand) is used as it is,
    after checking it against ``expected_sha256`` when that is given.
    """
    archive_dir, dest_dir = Path(archive_dir), Path(dest_dir)
    archive_dir.mkdir(parents=True, exist_ok=True)
    dest_dir.mkdir(parents=True, exist_ok=True)
    archive = archive_dir / archive_name(url)
    manifest = dest_dir / MANIFEST_NAME
    wanted = [dest_dir / name for name in member_names]

    archive_record = _reusable_archive(archive, manifest, expected_sha256)
    downloaded = archive_record is None
    if archive_record is None:
        archive_record = download_file(
            url,
            archive,
            expected_sha256=expected_sha256,
            retries=retries,
            backoff_s=backoff_s,
            timeout_s=timeout_s,
            progress=progress,
        )
    else:
        log.info("%s: archive present and intact; not downloading it again", archive)
    # Files extracted from an older archive, or a member list that grew, need a fresh extraction.
    if downloaded or not _members_recorded(manifest, wanted):
        members = extract_members(archive, member_names, dest_dir)
        write_manifest(manifest, archive_record, url, members)
    verify_files(manifest, wanted)
    return manifest


def archive_name(url: str) -> str:
    """The archive's file name: the last segment of the URL's path."""
    name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if not name:
        raise DownloadError(f"{url} does not end in a file name; check the URL templates under data.urls.")
    return name


def _reusable_archive(archive: Path, manifest: Path, expected_sha256: str | None) -> FileRecord | None:
    """The archive's record if it can be used without downloading, else None."""
    if not archive.exists():
        return None
    if manifest.exists():
        try:
            recorded = read_manifest(manifest)["archive"]
        except DownloadError:
            return None  # an unreadable manifest proves nothing; download and extract afresh
        if archive.stat().st_size != recorded.get("size"):
            return None
        expected_sha256 = recorded.get("sha256")
    digest = sha256_of(archive)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        log.warning("%s does not match its recorded sha256; downloading it again", archive)
        return None
    return FileRecord(str(archive), archive.stat().st_size, digest)


def _members_recorded(manifest: Path, wanted: list[Path]) -> bool:
    """Whether every wanted file exists and the manifest has a record of it (verify_files checks the contents)."""
    try:
        recorded = {entry["name"] for entry in read_manifest(manifest)["members"]}
    except DownloadError:
        return False
    return all(file.name in recorded and file.exists() for file in wanted)
