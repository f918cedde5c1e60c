"""Forward+backward time and peak memory of mslib's losses against pytorch-metric-learning and an official-style loop.

MS loss with mining: ``mslib.losses.build_loss("multi_similarity", preset="official")`` against PML's
``MultiSimilarityLoss(2, 40, 0.5)`` + ``MultiSimilarityMiner(0.1)`` and against a per-anchor Python loop written
here in the style of the official code (a re-implementation, see :func:`official_style_ms_loop`). Every timed call
starts from the same raw float32 embeddings (``requires_grad``) and ends after ``backward()``: L2 normalisation,
similarities, mining, loss and gradient. Values and gradients must agree (asserted). Other pair losses are timed
against their PML counterparts with the semantics the tests check (``tests/test_losses.py``).

Full sizes: B = 80, 256, 1000, 4096 for MS (other losses B = 80, 256, 1000; lifted structure up to 256 only: PML's
takes 2 s and 1 GiB there, minutes and ~15 GiB at 1000), D = 512, P×K batches with K = 4.
``--quick``: B = 80, 256, 1000 for MS, B = 80, 256 for the others; ``--losses ms`` runs the MS loss alone.
The official-style loop runs up to B = 1000 only (at B = 4096 one call would take minutes on the CPU). Every MS size
also times the ``matmul floor`` in the same interleaved run: the forward+backward's unavoidable products
``S = X Xᵀ`` and the backward's two B×B×D products. Goals: at B = 1000 mslib ≥ 3× faster than PML + miner and
≥ 20× faster than the loop; at B = 4096 mslib within 2× the matmul floor and ahead of PML + miner.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances, miners, reducers
from pytorch_metric_learning import losses as pml_losses

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, parser, peak_memory_mb, print_table, setup, time_interleaved, write_json

from mslib import losses
from mslib.mining import mine_ms_pairs
from mslib.similarity import clustered_embeddings, cosine, pair_masks

DIM, K = 512, 4
LOOP, LOOP_MAX_B, FLOOR = "official-style loop", 1000, "matmul floor"
OTHER_MAX_B = {"lifted_structure": 256}  # PML's lifted structure at B = 1000: minutes and ~15 GiB per call
ALPHA, BETA, LAM, EPS = 2.0, 40.0, 0.5, 0.1  # MS_PRESETS["official"]


def official_style_ms_loop(feats: torch.Tensor, labels: torch.Tensor, alpha: float = ALPHA, beta: float = BETA,
                           thresh: float = LAM, margin: float = EPS) -> torch.Tensor:
    """RE-IMPLEMENTATION in the style of the official MS code (``ret_benchmark/losses/multi_similarity_loss.py``,
    see ``book/sources.md#src-official-loss``): one Python iteration per anchor, self removed by value, builtin min/max.
    Not the authors' file; the embedding head's L2 normalisation is done here."""
    feats = F.normalize(feats, dim=1)
    batch_size = feats.size(0)
    sim_mat = torch.matmul(feats, torch.t(feats))
    eps = 1e-5
    loss = []
    for i in range(batch_size):
        pos_pair_ = sim_mat[i][labels == labels[i]]
        pos_pair_ = pos_pair_[pos_pair_ < 1 - eps]
        neg_pair_ = sim_mat[i][labels != labels[i]]
        neg_pair = neg_pair_[neg_pair_ + margin > min(pos_pair_)]
        pos_pair = pos_pair_[pos_pair_ - margin < max(neg_pair_)]
        if len(neg_pair) < 1 or len(pos_pair) < 1:
            continue
        pos_loss = 1.0 / alpha * torch.log(1 + torch.sum(torch.exp(-alpha * (pos_pair - thresh))))
        neg_loss = 1.0 / beta * torch.log(1 + torch.sum(torch.exp(beta * (neg_pair - thresh))))
        loss.append(pos_loss + neg_loss)
    if len(loss) == 0:
        return torch.zeros([], requires_grad=True, device=feats.device)
    return sum(loss) / batch_size


def _pml(loss: torch.nn.Module, miner: torch.nn.Module | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda x, y: loss(x, y, miner(x, y) if miner is not None else None)


def ms_impls() -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    return {
        "mslib": losses.build_loss("multi_similarity", preset="official"),
        "pml+miner": _pml(pml_losses.MultiSimilarityLoss(ALPHA, BETA, base=LAM), miners.MultiSimilarityMiner(EPS)),
        LOOP: official_style_ms_loop,
    }


def other_impls() -> dict[str, dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]]:
    """Other pair losses: (mslib, PML) with the same semantics as ``tests/test_losses.py::_pml_cases``."""
    cos, m = distances.CosineSimilarity, 0.2
    return {
        "contrastive": {
            "mslib": lambda x, y: losses.contrastive(cosine(x), y, pos_margin=0.9, neg_margin=0.3) * len(y),
            "pml": _pml(pml_losses.ContrastiveLoss(pos_margin=0.9, neg_margin=0.3, distance=cos(),
                                                   reducer=reducers.SumReducer()), None)},
        "triplet-all": {
            "mslib": lambda x, y: losses.triplet(cosine(x), y, margin=m),
            "pml": _pml(pml_losses.TripletMarginLoss(margin=m, distance=cos()), None)},
        "triplet-semihard": {
            "mslib": lambda x, y: losses.triplet(cosine(x), y, margin=m, mode="semihard"),
            "pml": _pml(pml_losses.TripletMarginLoss(margin=m, distance=cos()),
                        miners.TripletMarginMiner(margin=m, type_of_triplets="semihard", distance=cos()))},
        "triplet-hard": {
            "mslib": lambda x, y: losses.triplet(cosine(x), y, margin=m, mode="hard"),
            "pml": _pml(pml_losses.TripletMarginLoss(margin=m, distance=cos()), miners.BatchHardMiner(distance=cos()))},
        "lifted_structure": {
            "mslib": lambda x, y: losses.lifted_structure(cosine(x), y, margin=0.5),
            "pml": _pml(pml_losses.LiftedStructureLoss(neg_margin=0, pos_margin=0.5, distance=cos()), None)},
        "generalized_lifted_structure": {
            "mslib": lambda x, y: losses.generalized_lifted_structure(cosine(x), y, margin=0.5),
            "pml": _pml(pml_losses.GeneralizedLiftedStructureLoss(neg_margin=0, pos_margin=0.5, distance=cos()),
                        None)},
    }


def batch(b: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """P×K float32 batch (K = 4) of clustered, then rescaled, embeddings: partly mined, not unit length."""
    x, y = clustered_embeddings(b // K, K, DIM, spread=2.5, seed=b, dtype=torch.float32)
    return (x * 3).to(device), y.to(device)


def value_and_grad(fn, x0: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = x0.detach().clone().requires_grad_(True)
    v = fn(x, y)
    v.backward()
    return float(v.detach()), x.grad


def step(fn, x0: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        x = x0.detach().clone().requires_grad_(True)
        fn(x, y).backward()
    return run


def agree(results: dict[str, tuple[float, torch.Tensor]], ref: str, what: str) -> dict[str, dict[str, float]]:
    """Assert every implementation's value and gradient match ``ref``'s (float32 tolerances); return the gaps."""
    v0, g0 = results[ref]
    scale = float(g0.abs().max()) or 1.0
    out = {}
    for name, (v, g) in results.items():
        dv, dg = abs(v - v0), float((g - g0).abs().max()) / scale
        assert dv <= 1e-4 * max(abs(v0), 1e-3) + 1e-6, f"{what}: {name} value {v} != {ref} {v0}"
        assert dg <= 2e-3, f"{what}: {name} gradient differs from {ref} by {dg:.2e} (relative to max |grad|)"
        out[name] = {"value": v, "abs_value_diff": dv, "rel_grad_diff": dg}
    return out


def matmul_floor(x0: torch.Tensor) -> Callable[[], None]:
    """The MS loss's unavoidable matrix products at this batch: ``S = X Xᵀ`` (B×D×B) and the backward's two
    (``dL/dX = (G + Gᵀ) X`` as ``G X`` and ``Gᵀ X``, B×B×D), into preallocated outputs: a floor for forward+backward."""
    s = torch.empty(x0.shape[0], x0.shape[0], device=x0.device)
    out = torch.empty_like(x0)

    def run() -> None:
        torch.mm(x0, x0.T, out=s)
        torch.mm(s, x0, out=out)
        torch.mm(s.T, x0, out=out)
    return run


def at_size(impls: dict, b: int) -> dict:
    """The implementations timed at batch ``b``: the official-style loop only up to ``LOOP_MAX_B`` (too slow above)."""
    return {n: f for n, f in impls.items() if n != LOOP or b <= LOOP_MAX_B}


def mined_fraction(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    pos, neg = pair_masks(y.cpu())
    mp, mn = mine_ms_pairs(cosine(x.cpu()), pos, neg, epsilon=EPS)
    return {"pos": float(mp.sum() / pos.sum()), "neg": float(mn.sum() / neg.sum())}


def bench(impls, sizes, device, repeats, what: str, ref: str = "mslib", floor: bool = False) -> list[dict]:
    """Per batch size: agreement (asserted), interleaved times and peak memory of ``impls`` (and the matmul floor)."""
    records = []
    for b in sizes:
        x, y = batch(b, device)
        run = at_size(impls, b)
        gaps = agree({n: value_and_grad(f, x, y) for n, f in run.items()}, ref, f"{what} B={b}")
        fns = {n: step(f, x, y) for n, f in run.items()}
        if floor:
            fns[FLOOR] = matmul_floor(x.detach())
        reps = repeats if b < 4096 else max(2, repeats // 2)
        t = time_interleaved(fns, device, warmup=1, repeats=reps)
        mem = {n: peak_memory_mb(f, device) for n, f in fns.items()}
        records.append({"loss": what, "batch": b, "dim": DIM, "device": str(device), "times": t,
                        "peak_mb": mem, "agreement": gaps,
                        "mined_fraction": mined_fraction(x, y) if what == "multi_similarity" else None,
                        "speedup_vs": {n: t[n]["median_ms"] / t[ref]["median_ms"] for n in fns if n != ref}})
        print(f"  {what} B={b} on {device}: " + ", ".join(f"{n} {t[n]['median_ms']:.1f} ms" for n in fns),
              flush=True)
    return records


def ms_goals(records: list[dict]) -> dict:
    """B = 1000: ≥ 3× PML + miner and ≥ 20× the loop; B = 4096: ≤ 2× the matmul floor and ahead of PML."""
    goals = {}
    for r in records:
        s, dev = r["speedup_vs"], r["device"]
        if r["loss"] != "multi_similarity" or r["batch"] not in (1000, 4096):
            continue
        if r["batch"] == 1000:
            g = {"vs_pml_miner": s["pml+miner"], "vs_pml_goal": 3.0, "vs_loop": s[LOOP], "vs_loop_goal": 20.0,
                 "met": s["pml+miner"] >= 3.0 and s[LOOP] >= 20.0}
            text = f"{s['pml+miner']:.2f}x PML+miner (goal 3x), {s[LOOP]:.1f}x loop (goal 20x)"
        else:
            x_floor = 1 / s[FLOOR]
            g = {"vs_pml_miner": s["pml+miner"], "x_floor": x_floor, "x_floor_goal": 2.0,
                 "met": x_floor <= 2.0 and s["pml+miner"] > 1.0}
            text = f"{x_floor:.2f}x the matmul floor (goal <= 2x), {s['pml+miner']:.2f}x PML+miner (goal > 1x)"
        goals[f"B={r['batch']} on {dev}"] = g
        print(f"goal at B={r['batch']} on {dev}: {text}: {'met' if g['met'] else 'NOT met'}")
    return goals


def fmt_ms(t: dict[str, float]) -> str:
    return f"{t['median_ms']:.1f} [{t['min_ms']:.1f}-{t['max_ms']:.1f}]"


def fmt_mb(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--losses", choices=["all", "ms"], default="all",
                   help="ms: the MS loss alone (the full-size run: PML's lifted structure at B = 1000 needs ~15 GiB)")
    args = p.parse_args(argv)
    devices = setup(args)
    info = machine()
    print("machine:", machine_line(info))
    ms_sizes = [80, 256, 1000] if args.quick else [80, 256, 1000, 4096]
    other_sizes = [80, 256] if args.quick else [80, 256, 1000]
    repeats = args.repeats or (5 if args.quick else 9)
    records = []
    for device in devices:
        records += bench(ms_impls(), ms_sizes, device, repeats, "multi_similarity", floor=True)
        for name, impls in (other_impls() if args.losses == "all" else {}).items():
            sizes = [b for b in other_sizes if b <= OTHER_MAX_B.get(name, b)]
            records += bench(impls, sizes, device, repeats, name)
    rows = []
    for r in records:
        t, mem = r["times"], r["peak_mb"]
        names = list(t)
        for n in names:
            speed = "1.00" if n == "mslib" else f"{r['speedup_vs'][n]:.2f}"
            rows.append([r["loss"], r["device"], r["batch"], n, fmt_ms(t[n]), speed, fmt_mb(mem[n])])
    table = print_table(
        f"bench_losses: forward+backward from raw embeddings, D={DIM}, float32, median [min-max] of {repeats} "
        "(interleaved); speed-up = time / mslib's time",
        ["loss", "device", "B", "implementation", "ms", "mslib speed-up", "peak MiB"], rows)
    goals = ms_goals(records)
    name = "bench_losses" if args.losses == "all" else "bench_losses_ms"
    write_json(name, {"benchmark": "bench_losses", "quick": args.quick, "machine": info,
                      "repeats": repeats, "records": records, "goals": goals, "table": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
