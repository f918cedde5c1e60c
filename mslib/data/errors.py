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


def fetch_advice(name: str) -> str:
    """What to do to (re-)fetch ``name``, by its registry row's ``origin``: the download command, the manual route
    where there is no download, or where a generated or your own dataset comes from."""
    from mslib.data.registry import DATASETS  # the registry imports the readers, which import this module

    spec = DATASETS.get(name)
    origin = spec.origin if spec is not None else "download"
    if origin == "manual":
        return (f"{name} cannot be downloaded automatically: fetch its files by hand (`{fetch_hint(name)}` prints "
                "the steps; it downloads nothing)")
    if origin == "own":
        return (f"{name} reads your own images: check the folder or CSV you passed as root (layout root/<class>/"
                "<image>, or a CSV path,label,split; README.md, 'Your own images')")
    if origin == "generated":
        return str(spec.manual)
    return f"fetch it (again) with `{fetch_hint(name)}`"
