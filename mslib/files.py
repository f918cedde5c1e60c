"""File I/O shared by the library: one atomic writer and one file digest.

Every artifact (run records, tables, the figure manifest, checkpoints, the glyph cache) is written with
:func:`atomic_write`: the content goes to a temporary file in the destination's folder, which replaces the
destination only once it is complete, so a reader never sees a half-written file and a failure leaves the previous
file in place. :func:`file_digest` is the one checksum of a file on disk (downloads, weights). Downloads themselves
(resumable ``.part`` file, checksum, rename) are :func:`mslib.data.download.verified_download`, and a mismatch is
:class:`mslib.data.errors.ChecksumError`; this module imports nothing from mslib, so every module may use it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

#: Bytes read at a time by :func:`file_digest`.
CHUNK = 1 << 20


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to create a temporary file next to ``path``, then rename it to ``path``; return ``path``.

    The rename is atomic (same folder, same file system). If ``write`` raises, the temporary file is removed and
    ``path`` is left exactly as it was. Missing parent folders are created.

    The temporary file, ``.<name>.<pid>.<random>.tmp``, is hidden and ends in ``.tmp``, so globs such as
    ``results/*.json`` never list it; ``write`` creates it, so it gets the usual permissions (umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of ``text`` as UTF-8."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of the file at ``path`` with ``algorithm`` (``"md5"``, ``"sha256"``, ...), read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()
