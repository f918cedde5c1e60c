"""Exceptions of :mod:`mslib.data`: each message says what is wrong and what command fixes it."""

from __future__ import annotations


class DatasetError(RuntimeError):
    """Base class: a dataset on disk is missing, incomplete or corrupt."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset root or one of its files is missing."""


class CountMismatchError(DatasetError):
    """A split has a different number of images or classes than the published dataset."""


class ChecksumError(DatasetError):
    """A downloaded file's checksum differs from the expected one (truncated or corrupt)."""


class UnreadableImageError(DatasetError):
    """An image file exists but cannot be decoded."""


def fetch_hint(name: str) -> str:
    """The command that fetches dataset ``name``."""
    return f"python -m mslib data download {name}"
