"""Exceptions of :mod:`mslib.data`: each message says what is wrong and what command fixes it."""

from __future__ import annotations


class DatasetError(RuntimeError):
    """Base class: a dataset on disk is missing, incomplete or corrupt."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset root or one of its files is missing."""


class CountMismatchError(DatasetError):
    """A split has a different number of images or classes than the published dataset."""


class DuplicateEntryError(DatasetError):
    """A list file names the same image (or id) on two lines."""


class SplitMismatchError(DatasetError):
    """The split files disagree with each other or with the dataset's own index (or class-name table)."""


class ChecksumError(DatasetError, ValueError):
    """A downloaded or cached file's checksum differs from the expected one (truncated or corrupt).

    The library's one checksum error: datasets (:func:`mslib.data.download.verified_download`) and pretrained
    weights (:func:`mslib.models.download_weights`, which re-exports it) raise it. It is a :class:`DatasetError`,
    so the CLIs report it, and a ``ValueError``, as a bad weights file is elsewhere.
    """


class UnreadableImageError(DatasetError):
    """An image file exists but cannot be decoded."""


def fetch_hint(name: str) -> str:
    """The command that fetches dataset ``name`` (for a dataset fetched by hand it prints the manual steps)."""
    return f"python -m mslib data download {name}"

