"""Images/s of mslib's training step, split into data loading and compute.

Settings: ``paper`` (BN-Inception, 227 px, batch 80 = 16×5, 512-d embedding, MS loss, Adam; random init, fed the
embedded glyph dataset upscaled to 227 px as ``mslib.run.trainer`` does) and ``cpu-default`` (``TrainConfig()``: the
small CNN on 32 px glyphs, batch 80). The run and the step are ``mslib.run.trainer.fit``'s own (``build_run``,
``train_iteration``: forward, loss, backward, optimizer and LR-schedule step). ``data`` is the time to draw the next
P×K batch from the run's ``DataLoader``/``PKSampler`` (its transform includes the glyphs' upscaling).
On CUDA (when present) the paper setting also runs with AMP (bf16) and with AMP + channels_last.
Iterations: ``--quick`` 2 timed (paper) / 10 (default) after warm-up; full 5 / 30.
``widths``: the small CNN's step (forward, MS loss, backward, Adam; channels_last, batch 80 at 32 px) at the
default widths 16/32/64/64 and at the design study's 32/64/128/128, as a ratio in the same process.
``eval batch``: the small CNN's evaluation forward (eval mode, ``inference_mode``, channels_last) over 2,048 glyph-
sized images at ``eval_batch_size`` 32, 64, 128 and 256 (the default), repeats interleaved, as a ratio to 256: where
a results run's evaluation time goes (each run embeds its validation split 16 times and its test split twice).
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, parser, print_table, setup, sync, write_json

from mslib.losses import build_loss
from mslib.models import EmbeddingModel, SmallCNN
from mslib.run.config import TrainConfig
from mslib.run.trainer import build_run, train_iteration, train_loader

WIDTHS = {"default 16/32/64/64": (16, 32, 64, 64), "design study 32/64/128/128": (32, 64, 128, 128)}


def run(cfg: TrainConfig, iters: int, warmup: int) -> dict:
    device = torch.device(cfg.device)
    training = build_run(dataclasses.replace(cfg, iterations=iters + warmup))
    batches = iter(train_loader(training))
    data_t, step_t = [], []
    for i in range(iters + warmup):
        t0 = time.perf_counter()
        images, labels = next(batches)
        t1 = time.perf_counter()
        train_iteration(training, images, labels)
        sync(device)
        t2 = time.perf_counter()
        if i >= warmup:
            data_t.append(t1 - t0)
            step_t.append(t2 - t1)
    b = cfg.p * cfg.k
    d, s = statistics.median(data_t), statistics.median(step_t)
    return {"batch": b, "iterations": iters, "data_s": d, "compute_s": s, "images_per_s": b / (d + s),
            "compute_images_per_s": b / s, "data_share": d / (d + s), "compute_s_all": step_t, "data_s_all": data_t}


def small_cnn_step(widths: tuple[int, ...], iters: int, warmup: int = 3) -> float:
    """Median seconds of one small-CNN training step at ``widths`` (the trainer's model, loss and optimizer)."""
    model = EmbeddingModel(SmallCNN(1, widths), 64, "avg", "smallcnn").to(memory_format=torch.channels_last)
    loss_fn, opt = build_loss("multi_similarity", preset="pml"), torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(80, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.arange(16).repeat_interleave(5)
    times = []
    for i in range(iters + warmup):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


EVAL_BATCHES = (32, 64, 128, 256)


def eval_batch_seconds(repeats: int, n: int = 2048) -> dict[int, float]:
    """Median seconds to embed ``n`` 1×32×32 images with the small CNN at each of :data:`EVAL_BATCHES`."""
    model = EmbeddingModel(SmallCNN(1), 64, "avg", "smallcnn").to(memory_format=torch.channels_last).eval()
    x = torch.rand(n, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    times: dict[int, list[float]] = {b: [] for b in EVAL_BATCHES}
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first round warms up
            for b in EVAL_BATCHES:
                t0 = time.perf_counter()
                for i in range(0, n, b):
                    model(x[i:i + b])
                times[b].append(time.perf_counter() - t0)
    return {b: statistics.median(t[1:]) for b, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    devices = setup(args)
    info = machine()
    print("machine:", machine_line(info))
    paper_iters, default_iters = (2, 10) if args.quick else (5, 30)
    paper = dict(backbone="bninception", image_size=227, embedding_dim=512, pooling="avg", p=16, k=5)
    records = []
    for device in devices:
        settings = [("paper", TrainConfig(**paper, device=str(device)), paper_iters, 1),
                    ("cpu-default", TrainConfig(device=str(device)), default_iters, 2)]
        if device.type == "cuda":
            settings += [("paper + AMP bf16", TrainConfig(**paper, device="cuda", amp="bf16"), 10, 3),
                         ("paper + AMP + channels_last",
                          TrainConfig(**paper, device="cuda", amp="bf16", channels_last=True), 10, 3)]
            settings[0] = ("paper", TrainConfig(**paper, device="cuda"), 10, 3)
        for name, cfg, iters, warm in settings:
            px = 32 if cfg.backbone == "smallcnn" else cfg.image_size  # glyphs are fed to the small CNN at 32 px
            rec = {"setting": name, "device": str(device), "backbone": cfg.backbone, "image_size": px,
                   **run(cfg, iters, warm)}
            records.append(rec)
            print(f"  {name} on {device}: {rec['images_per_s']:.1f} images/s", flush=True)
    rows = [[r["setting"], r["device"], r["backbone"], r["image_size"], r["batch"], r["iterations"],
             f"{r['data_s'] * 1e3:.0f}", f"{r['compute_s'] * 1e3:.0f}", f"{r['data_share']:.0%}",
             f"{r['images_per_s']:.1f}"] for r in records]
    table = print_table("bench_training: one training step (median over iterations after warm-up)",
                        ["setting", "device", "backbone", "px", "batch", "iters", "data ms", "compute ms",
                         "data share", "images/s"], rows)
    steps = {name: small_cnn_step(w, default_iters) for name, w in WIDTHS.items()}
    reference = steps["design study 32/64/128/128"]
    widths_table = print_table("bench_training widths: the small CNN's step (CPU, median)",
                               ["widths", "step ms", "÷ design study"],
                               [[n, f"{t * 1e3:.1f}", f"{t / reference:.2f}"] for n, t in steps.items()])
    evals = eval_batch_seconds(3 if args.quick else 10)
    eval_table = print_table("bench_training eval batch: the small CNN's evaluation forward, 2,048 images (CPU)",
                             ["eval_batch_size", "s", "÷ 256"],
                             [[b, f"{t:.3f}", f"{t / evals[256]:.2f}"] for b, t in evals.items()])
    write_json("bench_training", {"benchmark": "bench_training", "quick": args.quick, "machine": info,
                                  "records": records, "table": table, "widths_s": steps,
                                  "widths_table": widths_table, "eval_batch_s": evals, "eval_table": eval_table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
