"""Shared helpers for the benchmark scripts: arguments, interleaved timing, peak memory, machine record, output.

Timing compares implementations **in the same process and run**: after warm-up, repeats are interleaved
(A, B, C, A, B, C, ...) so that load from other processes on a shared machine hits every implementation alike;
each implementation reports its median, min and max over the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mslib.provenance import git_commit, hardware, versions

RESULTS = Path(__file__).resolve().parent / "results"


def exec_with_fixed_mmap_threshold() -> None:
    """Re-run this script with glibc's mmap threshold fixed at 64 KiB, so that every large buffer is returned to
    the OS when freed and the process's peak resident set measures each call's own peak (see ``peak_memory_mb``)."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and sys.platform.startswith("linux"):
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
        os.execv(sys.executable, [sys.executable, *sys.argv])


def parser(description: str) -> argparse.ArgumentParser:
    """Common flags: ``--quick``, ``--threads``, ``--repeats``, ``--device``."""
    exec_with_fixed_mmap_threshold()
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats (what `make bench` runs)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch/faiss CPU threads (default 1: stable ratios on a shared machine; 0 = torch default)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per implementation (default by mode)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: CPU, plus CUDA when a GPU is present")
    return p


def setup(args: argparse.Namespace) -> list[torch.device]:
    """Apply ``--threads`` (torch and faiss) and return the devices to run on."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        try:
            import faiss

            faiss.omp_set_num_threads(args.threads)
        except ImportError:  # pragma: no cover - faiss is a dependency
            pass
    devices = [] if args.device == "cuda" else [torch.device("cpu")]
    if args.device in ("auto", "cuda"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            print("CUDA requested but torch.cuda.is_available() is False: skipping the CUDA runs")
    return devices


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine() -> dict[str, Any]:
    """Where the numbers come from: hardware, library versions, commit, load at start."""
    info = {**hardware(), "torch_threads": torch.get_num_threads()}
    try:
        info["loadavg_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    return {"hardware": info, "versions": versions(), "commit": git_commit()}


def machine_line(m: dict[str, Any]) -> str:
    h = m["hardware"]
    gpu = f", GPU {h['gpu']}" if h.get("gpu") else ", no GPU"
    return (f"{h['cpu_model']} ({h['cpu_count']} CPUs, torch threads {h['torch_threads']}{gpu}); "
            f"torch {m['versions'].get('torch')}, PML {m['versions'].get('pytorch-metric-learning', '-')}, "
            f"faiss {m['versions'].get('faiss-cpu', m['versions'].get('faiss-gpu', '-'))}; "
            f"load {h.get('loadavg_at_start', '?')}; commit {m['commit'][:12]}")


def time_interleaved(fns: dict[str, Callable[[], Any]], device: torch.device, warmup: int = 1,
                     repeats: int = 5) -> dict[str, dict[str, float]]:
    """Median / min / max wall time in ms of each callable, repeats interleaved across callables."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: {"median_ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v), "repeats": len(v)}
            for k, v in times.items()}


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Extra peak memory of one call in MiB: CUDA allocator peak, or on the CPU the rise of the process's peak
    resident set (``VmHWM``, reset through ``/proc/self/clear_refs``; None where Linux does not offer it)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    base = _status_kb("VmRSS")
    fn()
    peak = _status_kb("VmHWM")
    if base is None or peak is None:
        return None
    return max(peak - base, 0) / 1024


def fmt_row(cells: Sequence[Any], widths: Sequence[int]) -> str:
    pairs = enumerate(zip(cells, widths, strict=True))
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in pairs)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print (and return) a plain-text table."""
    cols = list(zip(header, *rows, strict=True)) if rows else [(h,) for h in header]
    widths = [max(len(str(c)) for c in col) for col in cols]
    lines = [title, fmt_row(header, widths), fmt_row(["-" * w for w in widths], widths)]
    lines += [fmt_row(r, widths) for r in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")
    return path
