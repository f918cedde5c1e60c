"""Retrieval evaluation time: mslib.evaluate against the floor of one float32 GEMM of the same size and PML.

Sets (random clustered float32 embeddings, D = 512; only the sizes are the datasets'):
SOP-sized, 60,502 items in 11,316 classes searched against themselves (``--quick``: 12,000 items), ks 1/10/100/1000;
In-Shop-sized, 14,218 queries against a 12,612-item gallery, 3,985 classes (``--quick``: a quarter),
ks 1/10/20/30/40/50.
Timed in the same run, interleaved: ``mslib`` (``evaluate_embeddings``: Recall@ks, MAP@R, RP from one blocked
``torch.mm`` pass scanned block by block, no NMI), the ``GEMM floor`` (``torch.mm`` of the query × reference product,
in 8,192-row blocks into one reused buffer: the same FLOPs without holding N×N), and PML's ``AccuracyCalculator``
(precision_at_1, r_precision, mean_average_precision_at_r) against ``mslib`` computing the same three numbers
(asserted equal).
Goal: mslib ≤ 1.5× the GEMM floor on the CPU; memory never the full N×N matrix (blocked search).
``--sets sop`` or ``--sets inshop`` runs one set (the full SOP size alone takes tens of minutes on a 2-core CPU).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, parser, peak_memory_mb, print_table, setup, time_interleaved, write_json

from mslib.evaluate import evaluate_embeddings

DIM, BLOCK = 512, 8192


def clustered(n: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` L2-normalised float32 rows in ``n_classes`` classes (every class has ≥ 2 items)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    centres = torch.nn.functional.normalize(torch.randn(n_classes, DIM, generator=g), dim=1)
    x = centres[labels] + torch.randn(n, DIM, generator=g) * (3.0 / DIM**0.5)
    return torch.nn.functional.normalize(x, dim=1).numpy(), labels.numpy()


def gemm_floor(q: torch.Tensor, r: torch.Tensor) -> None:
    buf = torch.empty(min(BLOCK, q.shape[0]), r.shape[0])
    for start in range(0, q.shape[0], BLOCK):
        blk = q[start:start + BLOCK]
        torch.mm(blk, r.T, out=buf[: blk.shape[0]])


def pml_calc(q, ql, r, rl, same: bool) -> dict[str, float]:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                              k="max_bin_count", device=torch.device("cpu"))
    return calc.get_accuracy(q, ql, r, rl, ref_includes_query=same)


def run_set(name: str, q, ql, r, rl, ks, repeats: int) -> dict:
    same = r is None
    rr, rrl = (q, ql) if same else (r, rl)
    qt, rt = torch.from_numpy(q), torch.from_numpy(rr)
    fns = {
        "mslib": lambda: evaluate_embeddings(q, ql, r, rl, ks=ks, with_nmi=False, block_size=BLOCK),
        "GEMM floor": lambda: gemm_floor(qt, rt),
        "mslib (PML's metrics)": lambda: evaluate_embeddings(q, ql, r, rl, ks=(1,), with_nmi=False, block_size=BLOCK),
        "PML AccuracyCalculator": lambda: pml_calc(q, ql, rr, rrl, same),
    }
    ours = evaluate_embeddings(q, ql, r, rl, ks=(1,), with_nmi=False, block_size=BLOCK)
    theirs = pml_calc(q, ql, rr, rrl, same)
    for a, b in (("R@1", "precision_at_1"), ("RP", "r_precision"), ("MAP@R", "mean_average_precision_at_r")):
        assert abs(ours[a] - theirs[b]) < 1e-6, f"{name}: mslib {a}={ours[a]} but PML {b}={theirs[b]}"
    cpu = torch.device("cpu")
    t = time_interleaved(fns, cpu, warmup=1, repeats=repeats)
    mem = {n: peak_memory_mb(f, cpu) for n, f in fns.items()}
    full = evaluate_embeddings(q, ql, r, rl, ks=ks, with_nmi=False, block_size=BLOCK)
    n_q, n_r = q.shape[0], rr.shape[0]
    rec = {"set": name, "queries": n_q, "references": n_r, "dim": DIM, "ks": list(ks), "times": t, "peak_mb": mem,
           "full_matrix_mb": n_q * n_r * 4 / 2**20, "metrics": full, "pml_metrics": theirs,
           "ratio_to_gemm": t["mslib"]["median_ms"] / t["GEMM floor"]["median_ms"],
           "pml_over_mslib": t["PML AccuracyCalculator"]["median_ms"] / t["mslib (PML's metrics)"]["median_ms"]}
    print(f"  {name}: mslib {t['mslib']['median_ms']:.0f} ms = {rec['ratio_to_gemm']:.2f}x the GEMM floor", flush=True)
    return rec


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sets", choices=["all", "sop", "inshop"], default="all", help="which sets to run")
    args = p.parse_args(argv)
    devices = setup(args)
    if any(d.type == "cuda" for d in devices):
        print("bench_retrieval measures the CPU path only (faiss-cpu); CUDA is not used here")
    info = machine()
    print("machine:", machine_line(info))
    repeats = args.repeats or (3 if args.quick else 2)
    scale = 0.25 if args.quick else 1.0
    sop_n = 12000 if args.quick else 60502
    sop = clustered(sop_n, round(sop_n / 60502 * 11316), seed=0)
    n_q, n_g, n_c = round(14218 * scale), round(12612 * scale), round(3985 * scale)
    shop_x, shop_y = clustered(n_q + n_g, n_c, seed=1)
    records = []
    if args.sets in ("all", "sop"):
        records.append(run_set(f"SOP-sized ({sop_n} self)", sop[0], sop[1], None, None, (1, 10, 100, 1000), repeats))
    if args.sets in ("all", "inshop"):
        records.append(run_set(f"In-Shop-sized ({n_q} q / {n_g} g)", shop_x[:n_q], shop_y[:n_q], shop_x[n_q:],
                               shop_y[n_q:], (1, 10, 20, 30, 40, 50), repeats))
    rows = []
    for rec in records:
        for n, t in rec["times"].items():
            ratio = t["median_ms"] / rec["times"]["GEMM floor"]["median_ms"]
            mem = rec["peak_mb"][n]
            rows.append([rec["set"], n, f"{t['median_ms']:.0f} [{t['min_ms']:.0f}-{t['max_ms']:.0f}]", f"{ratio:.2f}",
                         "-" if mem is None else f"{mem:.0f}", f"{rec['full_matrix_mb']:.0f}"])
    table = print_table(
        f"bench_retrieval: D={DIM}, float32, CPU, median [min-max] of {repeats} (interleaved); "
        "x GEMM = time / GEMM floor",
        ["set", "implementation", "ms", "x GEMM", "peak MiB", "N×N MiB"], rows)
    goals = {rec["set"]: {"ratio_to_gemm": rec["ratio_to_gemm"], "goal": 1.5, "met": rec["ratio_to_gemm"] <= 1.5,
                          "peak_below_full_matrix": (rec["peak_mb"]["mslib"] or 0) < rec["full_matrix_mb"]}
             for rec in records}
    for k, g in goals.items():
        print(f"goal {k}: {g['ratio_to_gemm']:.2f}x GEMM (goal <= 1.5x): {'met' if g['met'] else 'NOT met'}; "
              f"peak below the N×N matrix: {g['peak_below_full_matrix']}")
    name = "bench_retrieval" if args.sets == "all" else f"bench_retrieval_{args.sets}"
    write_json(name, {"benchmark": "bench_retrieval", "quick": args.quick, "machine": info, "repeats": repeats,
                      "sets": args.sets, "records": records, "goals": goals, "table": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
