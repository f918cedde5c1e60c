"""`make gpu-check`: every GPU check in one call (under 8 minutes on one H100/H200), a tiny version on the CPU.

Sections, each written to ``benchmarks/results/gpu_check.json`` as soon as it ends (a failing section is recorded
with its error and the others still run):

1. ``cuda_tests``: ``pytest -m cuda tests/test_cuda.py`` (AMP and channels_last training steps, ``embed`` under
   autocast against fp32, the fast MS loss and the evaluation scan on CUDA against the CPU); counts of each outcome.
2. ``recipe``: the paper's CUB recipe (``configs/cub200_ms512.yaml``: BN-Inception at 227 px, P×K = 16×5, Adam,
   BN statistics training since the weights are random) on :func:`mslib.data.fixtures.synthetic_cub` (CUB's
   exact layout and counts, real-size JPEGs, made on the spot), in fp32, bf16 and fp16 from the same seed: the
   losses (first update on the same weights and batch, and the mean of the last fifth) against fp32 within stated
   tolerances, NaN-free, the GradScaler's scale; images/s, the share of time the loop waits for data, peak GPU
   memory; the loader alone with all workers and with one (its per-core rate); one test evaluation; the paper
   schedule's projected minutes.
3. ``losses``: MS loss forward+backward at B = 4096 (mslib, PML + miner) against its matmul floor, same run.
4. ``retrieval``: SOP-sized self-retrieval (60,502 × 512) through ``mslib.evaluate`` on CUDA against one GEMM.

On a machine without CUDA the same script runs every section at toy sizes on the CPU in seconds (``tiny``), so CI
proves it works; its numbers mean nothing. Usage: ``python benchmarks/gpu_check.py [--tiny] [--sections ...]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, sync, time_interleaved

from mslib.data.fixtures import synthetic_cub
from mslib.run.config import TrainConfig
from mslib.run.trainer import build_run, evaluate_split, train_iteration, train_loader

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("cuda_tests", "recipe", "losses", "retrieval")
PRECISIONS = (None, "bf16", "fp16")
# stated tolerances of the recipe's precisions against fp32 (relative): the first update's loss (same weights and
# batch) and the mean loss of the last fifth of the run (trajectories drift apart; a broken precision diverges)
FIRST_LOSS_RTOL = {"bf16": 0.03, "fp16": 0.01}
LATE_LOSS_RTOL = 0.10
PAPER_ITERATIONS, PAPER_EVALS = 3000, 16  # CUB: 3,000 updates, test evaluations before update 0 and every 200


def sizes(tiny: bool) -> dict[str, Any]:
    """What each section runs: the GPU sizes, or toy sizes that finish in seconds on a CPU."""
    if tiny:
        return dict(classes=4, per_class=4, image=(120, 90), crop=96, p=2, k=2, iterations=3, loader_batches=2,
                    loss_batch=64, retrieval=(600, 60), repeats=2)
    return dict(classes=100, per_class=None, image=(500, 375), crop=227, p=16, k=5, iterations=300,
                loader_batches=60, loss_batch=4096, retrieval=(60502, 11316), repeats=5)


def cuda_tests(out: Path) -> dict[str, Any]:
    """Run tests/test_cuda.py under pytest; the outcome counts from its JUnit XML."""
    xml = out.with_suffix(".junit.xml")
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", f"--junitxml={xml}",
           str(ROOT / "tests" / "test_cuda.py")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [case.get("name") for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return {"returncode": proc.returncode, **counts, "passed": counts["tests"] - counts["failures"]
            - counts["errors"] - counts["skipped"], "failed": failed, "output_tail": proc.stdout[-3000:]}


def recipe_config(root: Path, s: dict[str, Any], amp: str | None, device: str, workers: int) -> TrainConfig:
    """The paper's CUB config with random weights, this precision, no periodic evaluation and no checkpoints.
    BN statistics train (``freeze_bn=False``): frozen at their initial values they would leave a random-weight
    network unnormalised; with ImageNet weights the recipe freezes them."""
    base = TrainConfig.from_file(ROOT / "configs" / "cub200_ms512.yaml")
    return replace(base, data_root=str(root), pretrained=None, image_size=s["crop"], p=s["p"], k=s["k"],
                   iterations=s["iterations"], freeze_bn=False, official_test_selection=False, checkpoint_every=0,
                   device=device, amp=amp if device == "cuda" else None, channels_last=device == "cuda",
                   num_workers=workers, dataset_options={} if s["per_class"] is None else {"check_counts": False})


def train_precision(cfg: TrainConfig) -> tuple[dict[str, Any], Any]:
    """``cfg.iterations`` updates through :func:`mslib.run.trainer.train_iteration`, timing the waits for data; the
    measurements and the run (its model is evaluated once)."""
    run = build_run(cfg)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    batches, losses, wait = iter(train_loader(run)), [], 0.0
    images, labels = next(batches)  # the first batch includes the workers' start: not timed
    losses.append(train_iteration(run, images, labels)[0])
    sync(run.device)
    start = time.perf_counter()
    for _ in range(cfg.iterations - 1):
        t0 = time.perf_counter()
        images, labels = next(batches)
        wait += time.perf_counter() - t0
        losses.append(train_iteration(run, images, labels)[0])
    sync(run.device)
    seconds = time.perf_counter() - start
    values = [float(v) for v in losses]
    timed = cfg.iterations - 1
    out = {"amp": cfg.amp, "iterations": cfg.iterations, "losses": values,
           "finite": all(math.isfinite(v) for v in values), "seconds": seconds,
           "seconds_per_iteration": seconds / max(timed, 1),
           "images_per_second": timed * cfg.p * cfg.k / seconds if timed else None,
           "data_wait_share": wait / seconds if timed else None, "grad_scale": run.scaler.get_scale()
           if run.scaler.is_enabled() else None,
           "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None}
    return out, run


def cudnn_benchmark_run(cfg: TrainConfig) -> dict[str, Any]:
    """The bf16 run again with ``torch.backends.cudnn.benchmark`` (cuDNN times its kernels for each shape): images/s
    and data wait share, to show whether kernel choice matters. Off in ``mslib.run.trainer`` (run-to-run
    determinism)."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        run, _ = train_precision(cfg)
    finally:
        torch.backends.cudnn.benchmark = previous
    return {k: run[k] for k in ("images_per_second", "seconds_per_iteration", "data_wait_share", "finite")}


def loader_rate(cfg: TrainConfig, batches: int) -> dict[str, Any]:
    """Images/s of the training loader alone (decode + augmentation in ``cfg.num_workers`` workers)."""
    run = build_run(replace(cfg, device="cpu", amp=None, channels_last=False))
    it = iter(train_loader(run))
    next(it)  # workers' start-up
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - start
    return {"workers": cfg.num_workers, "batches": batches, "images_per_second": batches * cfg.p * cfg.k / seconds}


def compare_precisions(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each reduced precision's losses against fp32's: first update and the last fifth's mean, with tolerances."""
    ref = runs["fp32"]["losses"]
    tail = max(1, len(ref) // 5)
    out = {}
    for name, r in runs.items():
        if name == "fp32":
            continue
        first = abs(r["losses"][0] - ref[0]) / abs(ref[0])
        late = abs(sum(r["losses"][-tail:]) - sum(ref[-tail:])) / abs(sum(ref[-tail:]))
        out[name] = {"first_rel_diff": first, "first_rtol": FIRST_LOSS_RTOL[name], "late_rel_diff": late,
                     "late_rtol": LATE_LOSS_RTOL, "ok": r["finite"] and first <= FIRST_LOSS_RTOL[name]
                     and late <= LATE_LOSS_RTOL}
    return out


def recipe(s: dict[str, Any], device: str, workers: int) -> dict[str, Any]:
    """Section 2: the paper recipe in three precisions on a synthetic CUB tree, the loader, one evaluation."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthetic_cub(tmp, classes_per_split=s["classes"], images_per_class=s["per_class"], image_size=s["image"],
                      processes=max(1, workers))
        out: dict[str, Any] = {"tree_seconds": time.perf_counter() - t0, "workers": workers, "device": device,
                               "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32,
                                        "cudnn": torch.backends.cudnn.allow_tf32}}
        runs, last = {}, None
        for amp in PRECISIONS:
            runs[amp or "fp32"], last = train_precision(recipe_config(Path(tmp), s, amp, device, workers))
        out["runs"], out["agreement"] = runs, compare_precisions(runs)
        out["bf16_cudnn_benchmark"] = cudnn_benchmark_run(recipe_config(Path(tmp), s, "bf16", device, workers))
        cfg = recipe_config(Path(tmp), s, "bf16", device, workers)
        out["loader_all_workers"] = loader_rate(cfg, s["loader_batches"])
        out["loader_one_worker"] = loader_rate(replace(cfg, num_workers=1), max(2, s["loader_batches"] // 6))
        t0 = time.perf_counter()
        metrics = evaluate_split(last.model, last.sets, "test", replace(last.cfg, amp="bf16"))
        sync(last.device)
        out["evaluation"] = {"seconds": time.perf_counter() - t0, "test_images": len(last.sets["test"]),
                             "R@1": metrics["R@1"]}
    bf16 = runs["bf16"]
    out["paper_schedule_minutes"] = (PAPER_ITERATIONS * bf16["seconds_per_iteration"]
                                     + PAPER_EVALS * out["evaluation"]["seconds"]) / 60
    return out


def losses(s: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Section 3: MS loss forward+backward at the full batch, mslib and PML + miner against the matmul floor."""
    from bench_losses import FLOOR, LOOP, batch, matmul_floor, ms_impls, step

    b = s["loss_batch"]
    impls = {k: v for k, v in ms_impls().items() if k != LOOP}
    x, y = batch(b, device)
    fns = {n: step(f, x, y) for n, f in impls.items()}
    fns[FLOOR] = matmul_floor(x.detach())
    t = time_interleaved(fns, device, warmup=2, repeats=s["repeats"])
    floor = t[FLOOR]["median_ms"]
    return {"batch": b, "device": str(device), "times": t,
            "ratio_to_floor": {n: v["median_ms"] / floor for n, v in t.items()},
            "pml_over_mslib": t["pml+miner"]["median_ms"] / t["mslib"]["median_ms"]}


def retrieval(s: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Section 4: SOP-sized self-retrieval through mslib.evaluate on ``device`` against one GEMM of the same size."""
    from bench_retrieval import clustered, gemm_floor

    from mslib.evaluate import evaluate_embeddings

    n, classes = s["retrieval"]
    x, y = clustered(n, classes, seed=0)
    xt = torch.from_numpy(x).to(device)
    kw = dict(ks=(1, 10, 100, 1000) if n > 1000 else (1, 10), with_nmi=False, device=device)
    fns = {"mslib": lambda: evaluate_embeddings(x, y, **kw), "GEMM floor": lambda: gemm_floor(xt, xt)}
    t = time_interleaved(fns, device, warmup=1, repeats=max(2, s["repeats"] // 2))
    return {"items": n, "classes": classes, "device": str(device), "times": t,
            "ratio_to_gemm": t["mslib"]["median_ms"] / t["GEMM floor"]["median_ms"],
            "metrics": evaluate_embeddings(x, y, **kw)}


def run_section(name: str, fn, report: dict[str, Any], out: Path) -> None:
    t0 = time.perf_counter()
    try:
        report[name] = {"ok": True, **fn()}
    except Exception as err:  # recorded, and the other sections still run
        report[name] = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    report[name]["section_seconds"] = time.perf_counter() - t0
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"[gpu-check] {name}: {'ok' if report[name]['ok'] else 'FAILED: ' + report[name]['error']} "
          f"({report[name]['section_seconds']:.0f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="toy sizes (the default without CUDA)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    device = torch.device("cuda" if cuda else "cpu")
    workers = max(1, min(15, len(os.sched_getaffinity(0)) - 1))
    s = sizes(tiny)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"benchmark": "gpu_check", "tiny": tiny, "device": str(device), "sizes": s,
                              "machine": machine()}
    jobs = {"cuda_tests": lambda: cuda_tests(args.out), "recipe": lambda: recipe(s, device.type, workers),
            "losses": lambda: losses(s, device), "retrieval": lambda: retrieval(s, device)}
    for name in args.sections:
        run_section(name, jobs[name], report, args.out)
    failed = [n for n in args.sections if not report[n]["ok"]]
    tests = report.get("cuda_tests", {})
    if tests.get("ok") and (tests.get("failures") or tests.get("errors")):
        failed.append("cuda_tests (failing tests: " + ", ".join(tests["failed"]) + ")")
    print(f"[gpu-check] wrote {args.out}; " + ("all sections ok" if not failed else "FAILED: " + "; ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
