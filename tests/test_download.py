"""Tests for download.py against a real HTTP server on 127.0.0.1 that can drop connections and ignore Range."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from contrastive_prosthetics.data.download import (
    DownloadError,
    download_file,
    extract_members,
    fetch_subject,
    part_path,
    read_manifest,
    sha256_of,
    verify_files,
)
from contrastive_prosthetics.data.sources import archive_dir, subject_dir

# Large enough to span several read chunks, so a drop really happens mid-file.
SOURCE = bytes(range(256)) * 1024  # 256 KiB
FAST = {"backoff_s": 0.01, "timeout_s": 5.0, "progress": False}


@dataclass
class ServerState:
    base_url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    # (path, Range header or None) of every request, in order.
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    # When set, the next response sends its full Content-Length but only this many bytes, then hangs up.
    drop_after: int | None = None
    ignore_range: bool = False

    def url(self, path: str) -> str:
        return self.base_url + path


class RangeHandler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer  # with a .state attribute

    def do_GET(self) -> None:
        state: ServerState = self.server.state
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if range_header and not state.ignore_range:
            start = int(range_header.removeprefix("bytes=").partition("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if state.drop_after is not None:
            payload, state.drop_after = payload[: state.drop_after], None
            self.close_connection = True
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server():
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.state = state
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval keeps shutdown() (which waits for the next poll) from adding 0.5 s to every test.
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_subject_zip(path: Path, members: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path.read_bytes()


# ---------------------------------------------------------------------------------------------------------------
# download_file


def test_complete_download_gives_the_source_bytes_and_no_part_file(server, tmp_path):
    server.files["/file.bin"] = SOURCE
    dest = tmp_path / "file.bin"

    record = download_file(server.url("/file.bin"), dest, expected_sha256=sha256(SOURCE), **FAST)

    assert dest.read_bytes() == SOURCE
    assert record.sha256 == sha256(SOURCE) == sha256_of(dest)
    assert record.size == len(SOURCE)
    assert not part_path(dest).exists()


def test_connection_dropped_mid_file_is_resumed_with_a_range_request(server, tmp_path):
    server.files["/file.bin"] = SOURCE
    server.drop_after = 100_000
    dest = tmp_path / "file.bin"

    download_file(server.url("/file.bin"), dest, chunk_bytes=16_384, **FAST)

    assert dest.read_bytes() == SOURCE
    assert server.requests == [("/file.bin", None), ("/file.bin", "bytes=100000-")]


def test_leftover_part_file_is_resumed_from_its_end(server, tmp_path):
    server.files["/file.bin"] = SOURCE
    dest = tmp_path / "file.bin"
    part_path(dest).write_bytes(SOURCE[:5000])

    download_file(server.url("/file.bin"), dest, **FAST)

    assert dest.read_bytes() == SOURCE
    assert server.requests == [("/file.bin", "bytes=5000-")]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.files["/file.bin"] = SOURCE
    server.ignore_range = True
    dest = tmp_path / "file.bin"
    # Wrong bytes in the part file: appending the 200 body to them would corrupt the result.
    part_path(dest).write_bytes(b"x" * 5000)

    download_file(server.url("/file.bin"), dest, expected_sha256=sha256(SOURCE), **FAST)

    assert dest.read_bytes() == SOURCE
    assert server.requests == [("/file.bin", "bytes=5000-")]


def test_complete_part_file_answered_416_is_accepted(server, tmp_path):
    server.files["/file.bin"] = SOURCE
    dest = tmp_path / "file.bin"
    part_path(dest).write_bytes(SOURCE)

    record = download_file(server.url("/file.bin"), dest, **FAST)

    assert dest.read_bytes() == SOURCE
    assert record.sha256 == sha256(SOURCE)
    assert not part_path(dest).exists()


def test_wrong_checksum_is_rejected_and_leaves_no_file(server, tmp_path):
    server.files["/file.bin"] = SOURCE
    dest = tmp_path / "file.bin"
    wrong = "0" * 64

    with pytest.raises(DownloadError) as raised:
        download_file(server.url("/file.bin"), dest, expected_sha256=wrong, **FAST)

    assert wrong in str(raised.value)
    assert sha256(SOURCE) in str(raised.value)
    assert not dest.exists()
    assert not part_path(dest).exists()


def test_404_fails_without_retrying_and_names_url_and_status(server, tmp_path):
    url = server.url("/missing.zip")
    dest = tmp_path / "missing.zip"

    with pytest.raises(DownloadError) as raised:
        download_file(url, dest, retries=5, **FAST)

    message = str(raised.value)
    assert url in message
    assert "404 Not Found" in message
    assert "data.urls" in message
    assert len(server.requests) == 1
    assert not dest.exists()
    assert not part_path(dest).exists()


def test_connection_refused_fails_fast_with_hand_download_advice(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/S1.zip"

    started = time.monotonic()
    with pytest.raises(DownloadError) as raised:
        download_file(url, tmp_path / "S1.zip", retries=5, backoff_s=1.0, timeout_s=5.0, progress=False)
    elapsed = time.monotonic() - started

    message = str(raised.value)
    assert elapsed < 2.0
    assert url in message
    assert "by hand" in message
    assert "data.source: local" in message


# ---------------------------------------------------------------------------------------------------------------
# extract_members, manifest, fetch_subject

MEMBERS = {"DB2_s1/S1_E1_A1.mat": b"exercise one " * 100, "DB2_s1/S1_E2_A1.mat": b"exercise two " * 120}
MEMBER_NAMES = ["S1_E1_A1.mat", "S1_E2_A1.mat"]


def test_fetch_subject_extracts_flat_records_digests_and_skips_a_second_download(server, tmp_path):
    server.files["/DB2_s1.zip"] = make_subject_zip(tmp_path / "source.zip", MEMBERS)
    url = server.url("/DB2_s1.zip")
    archive_dir, dest_dir = tmp_path / "archives", tmp_path / "subject"

    manifest_path = fetch_subject(url, archive_dir, dest_dir, MEMBER_NAMES, **FAST)

    assert (dest_dir / "S1_E1_A1.mat").read_bytes() == MEMBERS["DB2_s1/S1_E1_A1.mat"]
    assert (dest_dir / "S1_E2_A1.mat").read_bytes() == MEMBERS["DB2_s1/S1_E2_A1.mat"]
    manifest = read_manifest(manifest_path)
    assert manifest["url"] == url
    assert manifest["archive"]["sha256"] == sha256(server.files["/DB2_s1.zip"])
    recorded = {entry["name"]: entry["sha256"] for entry in manifest["members"]}
    assert recorded == {name.split("/")[-1]: sha256(data) for name, data in MEMBERS.items()}
    requests_after_first_fetch = len(server.requests)

    fetch_subject(url, archive_dir, dest_dir, MEMBER_NAMES, **FAST)

    assert len(server.requests) == requests_after_first_fetch


def test_verify_files_reports_an_extracted_file_changed_afterwards(server, tmp_path):
    server.files["/DB2_s1.zip"] = make_subject_zip(tmp_path / "source.zip", MEMBERS)
    dest_dir = tmp_path / "subject"
    manifest_path = fetch_subject(server.url("/DB2_s1.zip"), tmp_path / "archives", dest_dir, MEMBER_NAMES, **FAST)
    changed = dest_dir / "S1_E1_A1.mat"
    data = bytearray(changed.read_bytes())
    data[0] ^= 0xFF  # same size, different content: only the digest can tell
    changed.write_bytes(bytes(data))

    with pytest.raises(DownloadError) as raised:
        verify_files(manifest_path, [dest_dir / name for name in MEMBER_NAMES])

    assert "S1_E1_A1.mat" in str(raised.value)
    assert "sha256" in str(raised.value)


def test_verify_files_reports_a_truncated_file_by_size(tmp_path):
    archive = tmp_path / "DB2_s1.zip"
    make_subject_zip(archive, MEMBERS)
    members = extract_members(archive, MEMBER_NAMES, tmp_path / "subject")
    manifest_path = tmp_path / "subject" / "manifest.json"
    manifest_path.write_text(
        json.dumps(
            {
                "url": "http://example.invalid/DB2_s1.zip",
                "archive": {"name": archive.name, "size": 0, "sha256": ""},
                "members": [{"name": Path(m.path).name, "size": m.size, "sha256": m.sha256} for m in members],
            }
        )
    )
    truncated = Path(members[1].path)
    truncated.write_bytes(truncated.read_bytes()[:10])

    with pytest.raises(DownloadError) as raised:
        verify_files(manifest_path, [Path(m.path) for m in members])

    assert "S1_E2_A1.mat" in str(raised.value)
    assert "size" in str(raised.value)


def test_missing_member_is_named_with_what_the_archive_holds(tmp_path):
    archive = tmp_path / "DB2_s1.zip"
    make_subject_zip(archive, MEMBERS)

    with pytest.raises(DownloadError) as raised:
        extract_members(archive, ["S1_E3_A1.mat"], tmp_path / "subject")

    message = str(raised.value)
    assert "S1_E3_A1.mat" in message
    assert str(archive) in message
    assert "S1_E1_A1.mat" in message  # the listing of what is there


def test_corrupt_zip_asks_to_delete_it(tmp_path):
    archive = tmp_path / "DB2_s1.zip"
    archive.write_bytes(b"this is not a zip archive" * 10)

    with pytest.raises(DownloadError) as raised:
        extract_members(archive, MEMBER_NAMES, tmp_path / "subject")

    assert str(archive) in str(raised.value)
    assert "Delete it" in str(raised.value)


def test_a_subjects_archive_is_kept_beside_its_databases_subject_folders():
    """The download rule's --archive-dir (workflow/rules/common.smk: archive_folder): one archives/ per database."""
    assert archive_dir(subject_dir("ninapro", "db2", 7)) == Path("resources/ninapro/db2/archives")
    assert archive_dir("elsewhere/db3/s1") == Path("elsewhere/db3/archives")
