"""Verified downloads: resumable transfer to ``<file>.part``, checksum, atomic rename, atomic extraction.

Nothing already on disk is overwritten by a failed download or extraction: the transfer writes ``<file>.part``
(kept after an interruption, so that the next call resumes with an HTTP ``Range`` request), the checksum is
verified before ``<file>.part`` is renamed to ``<file>`` (a mismatch deletes the ``.part`` file and raises
:class:`ChecksumError`), and archives are extracted into a temporary folder that replaces the targets only once
extraction has succeeded.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from mslib.data.errors import ChecksumError, DatasetError, fetch_hint
from mslib.files import CHUNK, file_digest


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: mirrors in order of preference, its checksum, whether to extract it (the rows of
    :data:`mslib.data.registry.DATASETS` list them, with their official sources: ``book/sources.md#src-datasets``)."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    extract: bool = False


def verify_checksum(path: Path, md5: str | None = None, sha256: str | None = None, *, what: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the given MD5 / sha256 (``None`` skips a check).

    An expected digest may also be a prefix of at least 8 hex digits (torchvision puts one in its weights file
    names). The message names ``what`` (default: the file name), the digest found and the one expected.
    """
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is None:
            continue
        got = file_digest(path, algorithm)
        if len(expected) < 8 or not got.startswith(expected.lower()):
            raise ChecksumError(f"{what or path.name}: {algorithm} is {got}, expected {expected}: the file is "
                                "truncated or corrupt")


def _open_at(url: str, offset: int, timeout: float) -> tuple[BinaryIO | None, int, int | None]:
    """Open ``url`` at byte ``offset`` (HTTP ``Range``; file:// seeks): the stream (``None`` when the server says
    the file is already complete), the offset it really starts at (0 if it cannot resume) and the total size."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        src = Path(unquote(parsed.path))
        total = src.stat().st_size
        offset = offset if offset <= total else 0
        stream = open(src, "rb")
        stream.seek(offset)
        return stream, offset, total
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # already complete
            return None, offset, None
        raise
    resumed = getattr(response, "status", 200) == 206
    length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
    start = offset if resumed else 0
    return response, start, (int(length) + start) if length else None


def _fetch(url: str, part: Path, *, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (resuming where it ends); raise on an early end."""
    stream, written, total = _open_at(url, part.stat().st_size if part.exists() else 0, timeout)
    if stream is None:
        return
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=written, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"))
    try:
        with stream, open(part, "ab" if written else "wb") as out:
            for block in iter(lambda: stream.read(CHUNK), b""):
                out.write(block)
                written += len(block)
                if bar is not None:
                    bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()
    if total is not None and written < total:
        raise DatasetError(f"download of {url} interrupted after {written:,} of {total:,} bytes; "
                           f"{part} is kept: run the command again to resume")


def _fetch_first(urls: tuple[str, ...], part: Path, *, progress: bool, timeout: float) -> str:
    """Fetch ``part`` from the first mirror that works; return its URL, or raise listing every mirror's error."""
    errors = []
    for url in urls:
        try:
            _fetch(url, part, progress=progress, timeout=timeout)
            return url
        except (OSError, http.client.HTTPException, DatasetError) as err:
            errors.append(f"{url}: {err}")
    raise DatasetError(f"could not download {part.name.removesuffix('.part')}:\n  " + "\n  ".join(errors))


def verified_download(urls: str | tuple[str, ...], dest: Path, *, md5: str | None = None,
                      sha256: str | None = None, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download to ``dest`` via ``dest.part`` (resumed if present), verify, rename atomically; return ``dest``.

    An existing ``dest`` with the right checksum is kept as it is. Mirrors are tried in order. A checksum mismatch
    deletes ``dest.part`` and raises :class:`ChecksumError`; ``dest`` is only ever replaced by a verified file.
    """
    dest = Path(dest)
    urls = (urls,) if isinstance(urls, str) else tuple(urls)
    if dest.exists() and (md5 or sha256):
        try:
            verify_checksum(dest, md5, sha256)
            return dest
        except ChecksumError:
            pass  # re-download to .part; dest is only replaced by a verified file
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    url = _fetch_first(urls, part, progress=progress, timeout=timeout)
    try:
        verify_checksum(part, md5, sha256, what=f"{dest.name} downloaded from {url} (deleted)")
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def extract_archive(archive: Path, dest_dir: Path) -> list[Path]:
    """Extract a .tgz/.tar/.zip into ``dest_dir`` atomically; return the top-level paths it created/replaced.

    Extraction happens in a temporary folder inside ``dest_dir``; only after it succeeds are its top-level entries
    moved into place (an existing entry is replaced as a whole). On failure ``dest_dir`` is unchanged.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".extract-"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    target = (tmp / member).resolve()
                    if not target.is_relative_to(tmp.resolve()):
                        raise DatasetError(f"{archive.name}: unsafe member path {member!r}")
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, DatasetError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"extracting {archive} failed ({err}); nothing in {dest_dir} was changed. Delete the "
                           "archive and download it again") from err
    placed = []
    for entry in sorted(tmp.iterdir()):
        target = dest_dir / entry.name
        backup = None
        if target.exists():
            backup = dest_dir / f".old-{entry.name}-{os.getpid()}"
            os.replace(target, backup)
        os.replace(entry, target)
        if backup is not None:
            shutil.rmtree(backup) if backup.is_dir() else backup.unlink()
        placed.append(target)
    tmp.rmdir()
    return placed


__all__ = ["RemoteFile", "extract_archive",
           "file_digest", "fetch_hint", "verified_download", "verify_checksum"]
