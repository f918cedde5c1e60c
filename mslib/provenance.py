"""Provenance: the git commit, library versions and hardware behind every figure, table and run record."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from mslib.paths import project_root


def git_commit(root: Path | None = None) -> str:
    """The checked-out commit (suffixed ``-dirty`` when tracked files differ), or ``"unknown"``."""
    root = root or project_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour the numbers depend on (missing ones are omitted)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("mslib", "torch", "torchvision", "numpy", "faiss-cpu", "faiss-gpu", "pillow", "matplotlib",
                 "pytorch-metric-learning", "papermill", "jupyter-book"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    try:
        import torch

        out["cuda"] = torch.version.cuda or "none"
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return out


def cpu_model() -> str:
    """The CPU's model name (Linux: ``/proc/cpuinfo``), else what :mod:`platform` knows. Two x86-64 CPUs can give
    a run different numbers (their kernels round differently), so a record names it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    """CPU (with its model name), thread count and accelerator, as a run record stores them."""
    import torch

    info: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def stable_hash(obj: Any) -> str:
    """sha256 (first 16 hex digits) of a JSON-serialisable object with sorted keys."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def notebook_context() -> dict[str, Any]:
    """What the runner told the kernel about this execution (notebook, profile, parameters)."""
    params = os.environ.get("MSLIB_PARAMS_JSON")
    return {
        "notebook": os.environ.get("MSLIB_NOTEBOOK", "interactive"),
        "profile": os.environ.get("MSLIB_PROFILE", "interactive"),
        "params_file": os.environ.get("MSLIB_PARAMS_FILE") or None,
        "params": json.loads(params) if params else {},
    }
