"""Downloads against a local HTTP server on 127.0.0.1 (Range support, an interruption) and file:// URLs."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mslib.cli import data_main
from mslib.data import DATASETS, ChecksumError, DatasetError
from mslib.data.download import (
    RemoteFile,
    extract_archive,
    verified_download,
)
from mslib.data.loading import download_dataset

PAYLOAD = bytes(range(256)) * 4000  # 1,024,000 bytes


class _Handler(http.server.BaseHTTPRequestHandler):
    cut_first: bool = False  # the first full request sends only half the bytes, then closes
    log: list = []

    def do_GET(self) -> None:  # noqa: N802
        rng = self.headers.get("Range")
        type(self).log.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.end_headers()
        if type(self).cut_first and not rng:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"log": [], "cut_first": False})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/file.bin", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_http_download_checksum_ok(tmp_path: Path, server) -> None:
    url, _ = server
    dest = verified_download(url, tmp_path / "file.bin", md5=MD5, progress=False, timeout=5)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "file.bin.part").exists()


def test_http_checksum_wrong_leaves_existing_file(tmp_path: Path, server) -> None:
    url, _ = server
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"previous good content")
    with pytest.raises(ChecksumError, match=f"file.bin downloaded from {url} .*md5 is {MD5}, expected 0{{32}}"):
        verified_download(url, dest, md5="0" * 32, progress=False, timeout=5)
    assert dest.read_bytes() == b"previous good content"
    assert not (tmp_path / "file.bin.part").exists()


def test_http_interrupted_then_resumed(tmp_path: Path, server) -> None:
    url, handler = server
    handler.cut_first = True
    dest = tmp_path / "file.bin"
    with pytest.raises(DatasetError, match="interrupted|run the command again"):
        verified_download(url, dest, md5=MD5, progress=False, timeout=5)
    part = tmp_path / "file.bin.part"
    assert part.exists() and 0 < part.stat().st_size < len(PAYLOAD) and not dest.exists()
    verified_download(url, dest, md5=MD5, progress=False, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert handler.log[0] is None and handler.log[-1] == f"bytes={len(PAYLOAD) // 2}-"


def test_file_url_resume_and_mirror_fallback(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "file.bin"
    dest.parent.mkdir()
    (dest.parent / "file.bin.part").write_bytes(PAYLOAD[:1000])
    verified_download(("file:///nonexistent/mirror.bin", src.as_uri()), dest, md5=MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_part_file_is_resumed_not_restarted(tmp_path: Path) -> None:
    """A ``.part`` whose bytes differ from the source's proves the resume: only its rest is appended."""
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "file.bin"
    head = b"\xff" * 1000
    (tmp_path / "file.bin.part").write_bytes(head)
    resumed = head + PAYLOAD[1000:]
    verified_download(src.as_uri(), dest, sha256=hashlib.sha256(resumed).hexdigest(), progress=False)
    assert dest.read_bytes() == resumed and not (tmp_path / "file.bin.part").exists()


def test_checksum_mismatch_names_file_and_digests_and_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "file.bin"
    expected = "ab" * 32
    with pytest.raises(ChecksumError) as info:
        verified_download(src.as_uri(), dest, sha256=expected, progress=False)
    message = str(info.value)
    assert "file.bin" in message and src.as_uri() in message
    assert f"sha256 is {hashlib.sha256(PAYLOAD).hexdigest()}, expected {expected}" in message
    assert list(dest.parent.iterdir()) == []


def test_cli_download_reports_checksum_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m mslib data download``: a corrupt download is a one-line error and exit status 1."""
    archive = tmp_path / "CUB_200_2011.tgz"
    archive.write_bytes(_tgz({"CUB_200_2011/images.txt": b"1 a.jpg\n"}))
    remote = RemoteFile(archive.name, (archive.as_uri(),), md5="0" * 32, extract=True)
    monkeypatch.setitem(DATASETS, "cub200", dataclasses.replace(DATASETS["cub200"], download=(remote,)))
    root = tmp_path / "cub200"
    assert data_main(["download", "cub200", "--root", str(root), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: CUB_200_2011.tgz downloaded from") and "expected 00000000" in err
    assert list(root.iterdir()) == []


def _tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_extract_is_atomic(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "CUB_200_2011").mkdir()
    (dest / "CUB_200_2011" / "old.txt").write_text("old")
    good = tmp_path / "good.tgz"
    good.write_bytes(_tgz({"CUB_200_2011/images.txt": b"1 a.jpg\n"}))
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(good.read_bytes()[:40])
    with pytest.raises(DatasetError, match="nothing in .* was changed"):
        extract_archive(broken, dest)
    assert (dest / "CUB_200_2011" / "old.txt").read_text() == "old"
    assert [p.name for p in dest.iterdir()] == ["CUB_200_2011"]
    extract_archive(good, dest)
    assert (dest / "CUB_200_2011" / "images.txt").exists() and not (dest / "CUB_200_2011" / "old.txt").exists()
    assert sorted(p.name for p in dest.iterdir()) == ["CUB_200_2011"]


def test_download_dataset_end_to_end_and_manual(tmp_path: Path) -> None:
    archive = tmp_path / "CUB_200_2011.tgz"
    archive.write_bytes(_tgz({"CUB_200_2011/images.txt": b"1 a.jpg\n"}))
    remote = RemoteFile("CUB_200_2011.tgz", (archive.as_uri(),), md5=hashlib.md5(archive.read_bytes()).hexdigest(),
                        extract=True)
    root = tmp_path / "cub200"
    download_dataset("cub200", root, progress=False, sources=(remote,))
    assert (root / "CUB_200_2011" / "images.txt").exists() and not (root / "CUB_200_2011.tgz").exists()
    with pytest.raises(DatasetError, match=r"list_eval_partition\.txt"):
        download_dataset("inshop", tmp_path / "inshop")


def test_manual_only_datasets_are_exactly_those_without_a_source(tmp_path: Path) -> None:
    """Error messages advise a download command only where one downloads something (In-Shop: steps only)."""
    from mslib.data.registry import fetch_advice

    manual_only = {name for name, spec in DATASETS.items() if spec.origin == "manual"}
    assert manual_only == {"inshop"} and not DATASETS["inshop"].download and DATASETS["inshop"].manual
    for name in DATASETS:
        assert ("cannot be downloaded automatically" in fetch_advice(name)) == (name in manual_only)
    with pytest.raises(DatasetError, match="nothing was downloaded") as info:
        download_dataset("inshop", tmp_path / "inshop")
    assert "Img/" in str(info.value) and not (tmp_path / "inshop").exists()
