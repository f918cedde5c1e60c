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
Goals: mslib ahead of PML and ≤ 1.3× the GEMM floor on the CPU; memory far below the full N×N matrix (blocked).
``--device cuda`` (or ``auto`` with a GPU) also times ``evaluate_embeddings(device="cuda")`` against a CUDA GEMM floor
of the same size (synchronised; mslib's time includes moving the embeddings to the GPU, the floor's inputs are
already there); PML is CPU-only here (faiss-cpu).
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
GOAL_X_GEMM = 1.3
CPU = torch.device("cpu")


def clustered(n: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` L2-normalised float32 rows in ``n_classes`` classes (every class has ≥ 2 items)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    centres = torch.nn.functional.normalize(torch.randn(n_classes, DIM, generator=g), dim=1)
    x = centres[labels] + torch.randn(n, DIM, generator=g) * (3.0 / DIM**0.5)
    return torch.nn.functional.normalize(x, dim=1).numpy(), labels.numpy()


def gemm_floor(q: torch.Tensor, r: torch.Tensor) -> None:
    """``q @ r.T`` in ``BLOCK``-row blocks into one reused buffer on ``q``'s device (the scan's unavoidable FLOPs)."""
    buf = torch.empty(min(BLOCK, q.shape[0]), r.shape[0], device=q.device)
    for start in range(0, q.shape[0], BLOCK):
        blk = q[start:start + BLOCK]
        torch.mm(blk, r.T, out=buf[: blk.shape[0]])


def pml_calc(q, ql, r, rl, same: bool) -> dict[str, float]:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                              k="max_bin_count", device=torch.device("cpu"))
    return calc.get_accuracy(q, ql, r, rl, ref_includes_query=same)


def check_against_pml(name: str, q, ql, r, rl) -> dict[str, float]:
    """Assert mslib's R@1, RP, MAP@R equal PML's on this set; return PML's metrics."""
    same = r is None
    ours = evaluate_embeddings(q, ql, r, rl, ks=(1,), with_nmi=False, block_size=BLOCK)
    theirs = pml_calc(q, ql, q if same else r, ql if same else rl, same)
    for a, b in (("R@1", "precision_at_1"), ("RP", "r_precision"), ("MAP@R", "mean_average_precision_at_r")):
        assert abs(ours[a] - theirs[b]) < 1e-6, f"{name}: mslib {a}={ours[a]} but PML {b}={theirs[b]}"
    return theirs


def cpu_fns(q, ql, r, rl, ks) -> dict:
    same = r is None
    rr, rrl = (q, ql) if same else (r, rl)
    qt, rt = torch.from_numpy(q), torch.from_numpy(rr)
    return {
        "mslib": lambda: evaluate_embeddings(q, ql, r, rl, ks=ks, with_nmi=False, block_size=BLOCK),
        "GEMM floor": lambda: gemm_floor(qt, rt),
        "mslib (PML's metrics)": lambda: evaluate_embeddings(q, ql, r, rl, ks=(1,), with_nmi=False, block_size=BLOCK),
        "PML AccuracyCalculator": lambda: pml_calc(q, ql, rr, rrl, same),
    }


def cuda_fns(q, ql, r, rl, ks, device: torch.device) -> dict:
    rr = q if r is None else r
    qt, rt = torch.from_numpy(q).to(device), torch.from_numpy(rr).to(device)
    return {
        "mslib": lambda: evaluate_embeddings(q, ql, r, rl, ks=ks, with_nmi=False, block_size=BLOCK, device=device),
        "GEMM floor": lambda: gemm_floor(qt, rt),
    }


def run_set(name: str, q, ql, r, rl, ks, repeats: int, device: torch.device = CPU) -> dict:
    cuda = device.type == "cuda"
    theirs = None if cuda else check_against_pml(name, q, ql, r, rl)
    fns = cuda_fns(q, ql, r, rl, ks, device) if cuda else cpu_fns(q, ql, r, rl, ks)
    t = time_interleaved(fns, device, warmup=1, repeats=repeats)
    mem = {n: peak_memory_mb(f, device) for n, f in fns.items()}
    full = evaluate_embeddings(q, ql, r, rl, ks=ks, with_nmi=False, block_size=BLOCK, device=device)
    n_q, n_r = q.shape[0], (q if r is None else r).shape[0]
    rec = {"set": name, "device": str(device), "queries": n_q, "references": n_r, "dim": DIM, "ks": list(ks),
           "times": t, "peak_mb": mem, "full_matrix_mb": n_q * n_r * 4 / 2**20, "metrics": full,
           "pml_metrics": theirs, "ratio_to_gemm": t["mslib"]["median_ms"] / t["GEMM floor"]["median_ms"]}
    if not cuda:
        rec["pml_over_mslib"] = t["PML AccuracyCalculator"]["median_ms"] / t["mslib (PML's metrics)"]["median_ms"]
        rec["pml_to_gemm"] = t["PML AccuracyCalculator"]["median_ms"] / t["GEMM floor"]["median_ms"]
    print(f"  {name} on {device}: mslib {t['mslib']['median_ms']:.0f} ms = {rec['ratio_to_gemm']:.2f}x the GEMM floor",
          flush=True)
    return rec


def table_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for rec in records:
        for n, t in rec["times"].items():
            ratio = t["median_ms"] / rec["times"]["GEMM floor"]["median_ms"]
            mem = rec["peak_mb"][n]
            rows.append([rec["set"], rec["device"], n, f"{t['median_ms']:.0f} [{t['min_ms']:.0f}-{t['max_ms']:.0f}]",
                         f"{ratio:.2f}", "-" if mem is None else f"{mem:.0f}", f"{rec['full_matrix_mb']:.0f}"])
    return rows


def goals_of(records: list[dict]) -> dict:
    """Per set and device: x GEMM (goal <= 1.3 on the CPU), ahead of PML, peak memory below the N×N matrix."""
    goals = {}
    for rec in records:
        g = {"ratio_to_gemm": rec["ratio_to_gemm"], "goal": GOAL_X_GEMM, "within": rec["ratio_to_gemm"] <= GOAL_X_GEMM,
             "peak_below_full_matrix": (rec["peak_mb"]["mslib"] or 0) < rec["full_matrix_mb"]}
        if "pml_over_mslib" in rec:
            g["pml_over_mslib"], g["ahead_of_pml"] = rec["pml_over_mslib"], rec["pml_over_mslib"] > 1.0
        goals[f"{rec['set']} on {rec['device']}"] = g
        ahead = f"; PML takes {g['pml_over_mslib']:.2f}x mslib's time" if "pml_over_mslib" in g else ""
        print(f"goal {rec['set']} on {rec['device']}: {g['ratio_to_gemm']:.2f}x GEMM (goal <= {GOAL_X_GEMM}x): "
              f"{'met' if g['within'] else 'NOT met'}{ahead}; peak below the N×N matrix: {g['peak_below_full_matrix']}")
    return goals


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sets", choices=["all", "sop", "inshop"], default="all", help="which sets to run")
    args = p.parse_args(argv)
    devices = setup(args)
    info = machine()
    print("machine:", machine_line(info))
    repeats = args.repeats or (3 if args.quick else 2)
    scale = 0.25 if args.quick else 1.0
    sop_n = 12000 if args.quick else 60502
    sop = clustered(sop_n, round(sop_n / 60502 * 11316), seed=0)
    n_q, n_g, n_c = round(14218 * scale), round(12612 * scale), round(3985 * scale)
    shop_x, shop_y = clustered(n_q + n_g, n_c, seed=1)
    records = []
    for device in devices:
        if args.sets in ("all", "sop"):
            records.append(run_set(f"SOP-sized ({sop_n} self)", sop[0], sop[1], None, None, (1, 10, 100, 1000),
                                   repeats, device))
        if args.sets in ("all", "inshop"):
            records.append(run_set(f"In-Shop-sized ({n_q} q / {n_g} g)", shop_x[:n_q], shop_y[:n_q], shop_x[n_q:],
                                   shop_y[n_q:], (1, 10, 20, 30, 40, 50), repeats, device))
    table = print_table(
        f"bench_retrieval: D={DIM}, float32, median [min-max] of {repeats} (interleaved); "
        "x GEMM = time / GEMM floor",
        ["set", "device", "implementation", "ms", "x GEMM", "peak MiB", "N×N MiB"], table_rows(records))
    goals = goals_of(records)
    name = "bench_retrieval" if args.sets == "all" else f"bench_retrieval_{args.sets}"
    write_json(name, {"benchmark": "bench_retrieval", "quick": args.quick, "machine": info, "repeats": repeats,
                      "sets": args.sets, "records": records, "goals": goals, "table": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
