"""General Pair Weighting derived, not asserted: each loss's pair weights by symbolic differentiation (SymPy).

On a small symbolic batch, one anchor with two positives and three negatives whose similarities are the symbols
``S_p1, S_p2`` and ``S_n1, S_n2, S_n3`` (hyperparameters are symbols too), :func:`loss_expr` writes a loss
``L(S)`` as ``mslib.losses`` computes it (same normalisation), :func:`derive` differentiates it and returns the
weights ``w_ij = ∓∂L/∂S_ij`` (minus on positives, plus on negatives: the sign condition of GPW makes both
``≥ 0``), and :func:`closed_form_expr` types the closed form of ``mslib.gpw`` independently, from the papers.
:func:`prove` checks ``sympy.simplify(derived − closed) == 0``; :func:`uses` reads off which similarities a
weight depends on (the MS paper's Table 1). Proxy losses: the same on a 4 samples × 3 proxies batch
(:func:`derive_proxy`, :func:`closed_form_proxy_expr`, :func:`prove_proxy`, :func:`uses_proxy`).

Hinges. ``[x]_+`` is ``Max(0, x)``; its derivative is ``Heaviside(x)`` (exact except on the kink ``x = 0``, a set
of measure zero, where autograd takes 0 and SymPy 1/2). Derivatives of a mining rule's or a hinge's indicator
(``DiracDelta``) vanish off that set and are dropped. Where an *anchor-level* gate multiplies a smooth weight
(the generalised lifted structure's hinge, Song et al.'s per-positive hinge) the weight is stated on the active
region (gate = 1, hinge argument > 0), listed in :data:`REGION`; where the indicator *is* the weight (contrastive,
triplet) it stays a ``Heaviside``. MS mining enters as 0/1 gates ``g``; the proof holds for any gate values, and
:func:`uses` substitutes the mining rule for them. Chapters: ``01_gpw``, ``02_pair_losses``,
``03_multi_similarity``, ``09_beyond_pairs``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import sympy as sp
import torch

__all__ = [
    "MS_LIMIT_LATEX", "NEG", "PAIR_LOSSES", "POS", "REGION", "Derivation", "closed_form_expr",
    "closed_form_proxy_expr", "derive", "derive_proxy", "loss_expr", "ms_limits", "numeric_check",
    "numeric_check_proxy", "prove", "prove_proxy", "table1", "uses", "uses_proxy", "weight_latex",
]

POS = sp.symbols("S_p1 S_p2", real=True)
NEG = sp.symbols("S_n1 S_n2 S_n3", real=True)
PAIRS = (*POS, *NEG)
G_POS = sp.symbols("g_p1 g_p2", nonnegative=True)  # MS mining gates (1: mined, 0: dropped)
G_NEG = sp.symbols("g_n1 g_n2 g_n3", nonnegative=True)
H = {  # hyperparameters as symbols (LaTeX names as in the MS paper)
    "alpha": sp.Symbol("alpha", positive=True), "beta": sp.Symbol("beta", positive=True),
    "lam": sp.Symbol("lambda", real=True), "epsilon": sp.Symbol("epsilon", positive=True),
    "margin": sp.Symbol("mu", real=True), "pos_margin": sp.Symbol("mu_p", real=True),
    "neg_margin": sp.Symbol("mu_n", real=True), "scale": sp.Symbol("s", positive=True),
}
DELTA = sp.Symbol("delta", real=True)

REGION: dict[str, str] = {
    "contrastive": "everywhere off the kinks S = μ_p, S = μ_n (the weight is the hinge's indicator)",
    "triplet": "everywhere off the kinks S_n − S_p + μ = 0 (the weight counts the active triplets)",
    "lifted_structure": "on the active region: every positive's hinge J_ip > 0",
    "generalized_lifted_structure": "on the active region: the anchor's hinge log Σ_P e^{μ−S} + log Σ_N e^{S} > 0",
    "binomial_deviance": "everywhere (smooth)",
    "npair": "everywhere (smooth)",
    "multi_similarity": "everywhere off the mining boundaries, for any fixed 0/1 mining gates g",
    "proxy_nca": "everywhere (smooth)",
    "proxy_anchor": "everywhere (smooth)",
}


PAIR_LOSSES = ("contrastive", "triplet", "lifted_structure", "generalized_lifted_structure", "binomial_deviance",
               "npair", "multi_similarity")


class Derivation(NamedTuple):
    """``loss``: ``L(S)``; ``grad``: ``∂L/∂S`` per pair symbol; ``weights``: ``w = ∓∂L/∂S`` (≥ 0 by the sign
    condition), on :data:`REGION`'s region; ``region``: that region, in words."""

    loss: sp.Expr
    grad: dict[sp.Symbol, sp.Expr]
    weights: dict[sp.Symbol, sp.Expr]
    region: str


def _relu(x: sp.Expr) -> sp.Expr:
    return sp.Max(0, x)


def _lse(xs: Any) -> sp.Expr:
    return sp.log(sum(sp.exp(x) for x in xs))


def _softplus(x: sp.Expr) -> sp.Expr:
    return sp.log(1 + sp.exp(x))


def loss_expr(name: str, *, mining: bool = True) -> sp.Expr:
    """``L(S)`` of pair loss ``name`` on the symbolic batch, normalised as ``mslib.losses`` (one anchor, ``m = 1``).

    Triplet: all triplets, ``reduction="sum"``; lifted structure: Song et al.'s form with a reference that is not
    the batch (only the anchor's negatives); N-pair: ``mode="mc"``; MS: mining gates ``g`` when ``mining``.
    """
    a, b, lam, mu, s = H["alpha"], H["beta"], H["lam"], H["margin"], H["scale"]
    if name == "contrastive":
        return sum(_relu(H["pos_margin"] - p) for p in POS) + sum(_relu(n - H["neg_margin"]) for n in NEG)
    if name == "triplet":
        return sum(_relu(n - p + mu) for p in POS for n in NEG)
    if name == "lifted_structure":
        return sum(_relu(_lse(NEG) + mu - p) ** 2 / 2 for p in POS) / len(POS)
    if name == "generalized_lifted_structure":
        return _relu(_lse(mu - p for p in POS) + _lse(NEG))
    if name == "binomial_deviance":
        return (sum(_softplus(-a * (p - lam)) for p in POS) / len(POS)
                + sum(_softplus(b * (n - lam)) for n in NEG) / len(NEG))
    if name == "npair":
        return sum(sp.log(1 + sum(sp.exp(s * (n - p)) for n in NEG)) for p in POS) / len(POS)
    if name == "multi_similarity":
        gp, gn = (G_POS, G_NEG) if mining else ((1,) * len(POS), (1,) * len(NEG))
        return (sp.log(1 + sum(g * sp.exp(-a * (p - lam)) for g, p in zip(gp, POS, strict=True))) / a
                + sp.log(1 + sum(g * sp.exp(b * (n - lam)) for g, n in zip(gn, NEG, strict=True))) / b)
    raise ValueError(f"no symbolic loss {name!r}; known: {', '.join(REGION)}")


def _drop_delta(expr: sp.Expr) -> sp.Expr:
    """An indicator's derivative (``DiracDelta``) is 0 off its boundary: drop it."""
    return expr.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.Integer(0))


def _active(expr: sp.Expr) -> sp.Expr:
    """On the active region: every ``Heaviside`` gate is 1 and every ``Max(0, x)`` is ``x``."""
    expr = expr.replace(lambda e: isinstance(e, sp.Heaviside), lambda e: sp.Integer(1))
    return expr.replace(lambda e: isinstance(e, sp.Max) and 0 in e.args,
                        lambda e: sp.Add(*[x for x in e.args if x != 0]))


_ON_ACTIVE_REGION = ("lifted_structure", "generalized_lifted_structure")


@functools.cache
def derive(name: str, *, mining: bool = True) -> Derivation:
    """Differentiate :func:`loss_expr` and return the weights (signed gradient too), simplified (cached: do not
    mutate the result)."""
    loss = loss_expr(name, mining=mining)
    grad = {}
    for x in PAIRS:
        g = _drop_delta(sp.diff(loss, x))
        if name in _ON_ACTIVE_REGION:
            g = _active(g)
        grad[x] = sp.simplify(g)
    weights = {x: sp.simplify(-g if x in POS else g) for x, g in grad.items()}
    return Derivation(loss, grad, weights, REGION[name])


def closed_form_expr(name: str, pair: sp.Symbol) -> sp.Expr:
    """``mslib.gpw``'s closed-form weight of ``pair`` (a symbol of :data:`POS` or :data:`NEG`), typed from the
    papers' formulas, not from the derivation (the docstrings of ``mslib.gpw.<name>_weights``)."""
    a, b, lam, mu, s = H["alpha"], H["beta"], H["lam"], H["margin"], H["scale"]
    is_pos = pair in POS
    if name == "contrastive":  # a pair inside its margin counts 1, else 0
        return sp.Heaviside(H["pos_margin"] - pair) if is_pos else sp.Heaviside(pair - H["neg_margin"])
    if name == "triplet":  # the number of active triplets the pair belongs to
        if is_pos:
            return sum(sp.Heaviside(n - pair + mu) for n in NEG)
        return sum(sp.Heaviside(pair - p + mu) for p in POS)
    if name == "lifted_structure":  # w⁺ = J/Q, w⁻ = e^{S_ik} Σ_j J_ij / (Q Z_i), Q = |P|
        z = sum(sp.exp(n) for n in NEG)
        j = {p: sp.log(z) + mu - p for p in POS}
        return j[pair] / len(POS) if is_pos else sp.exp(pair) * sum(j.values()) / (len(POS) * z)
    if name == "generalized_lifted_structure":  # softmax of −S over P, of S over N
        if is_pos:
            return sp.exp(mu - pair) / sum(sp.exp(mu - p) for p in POS)
        return sp.exp(pair) / sum(sp.exp(n) for n in NEG)
    if name == "binomial_deviance":  # a sigmoid of the pair's own S
        if is_pos:
            return a / (1 + sp.exp(-a * (lam - pair))) / len(POS)
        return b / (1 + sp.exp(-b * (pair - lam))) / len(NEG)
    if name == "npair":  # r_pn = e^{s(S_n − S_p)}, z_p = Σ_n r_pn
        r = {(p, n): sp.exp(s * (n - p)) for p in POS for n in NEG}
        z = {p: sum(r[p, n] for n in NEG) for p in POS}
        if is_pos:
            return s * z[pair] / (1 + z[pair]) / len(POS)
        return s * sum(r[p, pair] / (1 + z[p]) for p in POS) / len(POS)
    if name == "multi_similarity":  # the paper's eqs. (13)-(14) over mined pairs (gates g)
        if is_pos:
            g = dict(zip(POS, G_POS, strict=True))
            return g[pair] / (sp.exp(a * (pair - lam)) + sum(g[k] * sp.exp(a * (pair - k)) for k in POS))
        g = dict(zip(NEG, G_NEG, strict=True))
        return g[pair] / (sp.exp(b * (lam - pair)) + sum(g[k] * sp.exp(b * (k - pair)) for k in NEG))
    raise ValueError(f"no closed form for {name!r}; known: {', '.join(REGION)}")


def _is_zero(expr: sp.Expr) -> bool:
    return sp.simplify(expr) == 0 or sp.simplify(sp.expand(sp.powsimp(sp.expand(expr)))) == 0


def prove(name: str, closed: Callable[[str, sp.Symbol], sp.Expr] | None = None) -> dict[str, bool]:
    """Per pair: ``simplify(derived − closed) == 0`` (``closed``: :func:`closed_form_expr` unless given)."""
    closed = closed or closed_form_expr
    weights = derive(name).weights
    return {str(x): _is_zero(weights[x] - closed(name, x)) for x in PAIRS}


def weight_latex(name: str) -> str:
    """LaTeX of the derived ``w⁺`` of ``S_p1`` and ``w⁻`` of ``S_n1`` (an ``aligned`` block)."""
    d = derive(name)
    return (r"\begin{aligned} w^+_{p1} &= " + sp.latex(d.weights[POS[0]]) + r" \\ w^-_{n1} &= "
            + sp.latex(d.weights[NEG[0]]) + r"\end{aligned}")


# --- which similarities a weight uses (the MS paper's Table 1) ---------------------------------------------------

def _mining_gates() -> dict[sp.Symbol, sp.Expr]:
    """The MS mining rule as gates: negative kept if ``S_n + ε > min_P S``, positive if ``S_p − ε < max_N S``."""
    eps = H["epsilon"]
    gates = {g: sp.Heaviside(n + eps - sp.Min(*POS)) for g, n in zip(G_NEG, NEG, strict=True)}
    gates.update({g: sp.Heaviside(sp.Max(*NEG) - p + eps) for g, p in zip(G_POS, POS, strict=True)})
    return gates


def _shift_invariant(expr: sp.Expr, symbols: Any) -> bool:
    shifted = expr.subs({x: x + DELTA for x in symbols}, simultaneous=True)
    return _is_zero(shifted - expr)


def uses(expr: sp.Expr, pair: sp.Symbol, *, positives: Any = POS, negatives: Any = NEG) -> dict[str, bool]:
    """Which similarities the weight ``expr`` of ``pair`` depends on, read off its symbols.

    ``S``: the weight is not invariant under a common shift ``S → S + δ`` of every similarity (it compares the
    pair's own S with a fixed threshold; the definition ``mslib.gpw.similarity_dependence`` measures);
    ``own``: its own symbol is free; ``N``: another negative's symbol is; ``P``: a positive's symbol is.
    """
    free = expr.free_symbols
    return {
        "S": not _shift_invariant(expr, [*positives, *negatives]),
        "own": pair in free,
        "N": any(n in free for n in negatives if n != pair),
        "P": any(p in free for p in positives if p != pair),
    }


def table1(*, mining: bool = True) -> dict[str, dict[str, bool]]:
    """:func:`uses` of each loss's negative weight ``w⁻`` of ``S_n1`` (MS: with the mining rule substituted for
    its gates when ``mining``, else every gate 1)."""
    out = {}
    for name in PAIR_LOSSES:
        w = derive(name).weights[NEG[0]]
        if name == "multi_similarity":
            w = w.subs(_mining_gates() if mining else {g: 1 for g in (*G_POS, *G_NEG)})
        out[name] = uses(w, NEG[0])
    return out


MS_LIMIT_LATEX: dict[str, str] = {  # the keys of :func:`ms_limits`, as LaTeX
    "beta -> oo, S_n1 hardest, above lambda":
        r"\beta \to \infty,\ S_{n1} \text{ the hardest negative, } S_{n1} > \lambda:\ w^-_{n1} \to",
    "beta -> oo, S_n1 below S_n2": r"\beta \to \infty,\ S_{n1} < S_{n2}:\ w^-_{n1} \to",
    "lambda -> -oo": r"\lambda \to -\infty:\ w^-_{n1} \to",
    "lambda -> +oo, w * exp(beta (lambda - S_n1))": r"\lambda \to +\infty:\ w^-_{n1}\, e^{\beta(\lambda - S_{n1})} \to",
    "epsilon = 0, gate of S_n1": r"\epsilon = 0:\ g_{n1} =",
}


def ms_limits() -> dict[str, sp.Expr]:
    """Limit cases of the MS negative weight ``w⁻`` of ``S_n1`` (no mining, all gates 1), each derived here:

    ``β → ∞`` with ``S_n1`` the hardest negative and above λ: 1 (only the hardest negative is pushed); with
    ``S_n1`` below another negative: 0. ``λ → −∞``: a softmax of ``βS`` over the negatives (N only, the lifted
    structure's form). ``λ → +∞``: ``w⁻ e^{β(λ−S_n1)} → 1``, so ``w⁻ ≈ e^{β(S_n1−λ)}``, each pair by its own S
    (binomial deviance's weight in the same limit). ``ε = 0``: the mining gate of ``S_n1`` (kept iff it beats the
    weakest positive).
    """
    w = derive("multi_similarity", mining=False).weights[NEG[0]]
    b, lam = H["beta"], H["lam"]
    d2, d3, dl = sp.symbols("d_2 d_3 d_lambda", positive=True)
    hardest = {NEG[1]: NEG[0] - d2, NEG[2]: NEG[0] - d3, lam: NEG[0] - dl}
    beaten = {NEG[1]: NEG[0] + d2, NEG[2]: NEG[0] - d3, lam: NEG[0] - dl}

    def at_beta_inf(subs: dict[sp.Symbol, sp.Expr]) -> sp.Expr:  # every exponent is β·(±d) after the shift
        return sp.limit(1 / sp.expand(sp.powsimp(sp.expand(1 / w.subs(subs, simultaneous=True)))), b, sp.oo)

    return {
        "beta -> oo, S_n1 hardest, above lambda": at_beta_inf(hardest),
        "beta -> oo, S_n1 below S_n2": at_beta_inf(beaten),
        "lambda -> -oo": sp.simplify(sp.limit(w, lam, -sp.oo)),
        "lambda -> +oo, w * exp(beta (lambda - S_n1))": sp.limit(sp.simplify(w * sp.exp(b * (lam - NEG[0]))),
                                                                  lam, sp.oo),
        "epsilon = 0, gate of S_n1": _mining_gates()[G_NEG[0]].subs(H["epsilon"], 0),
    }


# --- numerical check: derived expression vs autograd (readable loss) vs mslib.gpw's closed form ---------------------

_HP_NUMERIC: dict[str, dict[str, float]] = {
    "contrastive": dict(pos_margin=1.0, neg_margin=0.5),
    "triplet": dict(margin=0.2),
    "lifted_structure": dict(margin=1.0),
    "generalized_lifted_structure": dict(margin=1.0),
    "binomial_deviance": dict(alpha=2.0, beta=50.0, lam=0.5),
    "npair": dict(scale=2.0),
    "multi_similarity": dict(alpha=2.0, beta=40.0, lam=0.5, epsilon=0.1),
}
_LOSS_KW: dict[str, dict[str, Any]] = {"triplet": dict(reduction="sum"), "npair": dict(mode="mc")}


def _numeric_weight(name: str, values: np.ndarray, hp: Mapping[str, float]) -> np.ndarray:
    """The derived weights of ``name`` evaluated at ``values`` (``S_p1, S_p2, S_n1, S_n2, S_n3``), float64."""
    weights = derive(name).weights
    subs = {H[k]: v for k, v in hp.items() if k in H and v is not None}
    gates = {}
    if name == "multi_similarity":
        kept = _mining_gates() if hp.get("epsilon") is not None else {g: 1 for g in (*G_POS, *G_NEG)}
        gates = {g: sp.sympify(rule).subs(dict(zip(PAIRS, values, strict=True))).subs(subs)
                 for g, rule in kept.items()}
    if name in _ON_ACTIVE_REGION:  # the derived weights hold where every hinge is active
        point = dict(zip(PAIRS, values, strict=True))
        for hinge in loss_expr(name).subs(subs).atoms(sp.Max):
            if float(sp.Add(*[x for x in hinge.args if x != 0]).subs(point)) <= 0:
                raise ValueError(f"{name}: a hinge is inactive at S = {list(values)}; the derived weights hold on "
                                 f"the active region ({REGION[name]})")
    out = []
    for x in PAIRS:
        f = sp.lambdify(PAIRS, weights[x].subs(gates).subs(subs), "numpy")
        out.append(float(f(*values)))
    return np.asarray(out)


def numeric_check(name: str, values: np.ndarray, hparams: Mapping[str, float] | None = None) -> dict[str, float]:
    """``max |derived − autograd|`` and ``max |derived − mslib.gpw|`` of the weights at ``values`` (float64).

    Autograd runs through the readable loss: ``mslib.losses.<name>`` (``multi_similarity_autograd`` for MS, never
    the fast backward), on the 1 × 5 batch ``labels=[0]``, ``ref_labels=[0, 0, 1, 2, 3]``.
    """
    from mslib import gpw, losses

    hp = dict(_HP_NUMERIC[name] if hparams is None else hparams)
    derived = _numeric_weight(name, np.asarray(values, dtype=float), hp)
    sim = torch.tensor([list(values)], dtype=torch.float64)
    labels, ref = torch.tensor([0]), torch.tensor([0, 0, 1, 2, 3])
    fn = losses.multi_similarity_autograd if name == "multi_similarity" else losses.loss_spec(name).fn
    kw = {**hp, **_LOSS_KW.get(name, {})}
    auto = gpw.pair_weights(fn, sim, labels, ref, **kw)
    closed = gpw.closed_form_weights(name, sim, labels, ref, **kw)
    a = (auto.pos + auto.neg)[0].numpy()
    c = (closed.pos + closed.neg)[0].numpy()
    return {"autograd": float(np.abs(derived - a).max()), "closed form": float(np.abs(derived - c).max())}


# --- proxy losses: S is 4 samples × 3 proxies, labels (0, 0, 1, 1); class 2 has no sample in the batch ----------

PROXY_LABELS = (0, 0, 1, 1)
PROXY_S = sp.Matrix(4, 3, lambda i, c: sp.Symbol(f"S_{i + 1}{c + 1}", real=True))
_PROXY_REGION = {"proxy_nca": REGION["proxy_nca"], "proxy_anchor": REGION["proxy_anchor"]}
_PROXY_HP = {"softmax_scale": sp.Symbol("s", positive=True), "alpha": H["alpha"], "margin": sp.Symbol("delta_m")}


def _proxy_loss(name: str) -> sp.Expr:
    s, a, d = _PROXY_HP["softmax_scale"], _PROXY_HP["alpha"], _PROXY_HP["margin"]
    n, c = PROXY_S.shape
    if name == "proxy_nca":  # −(1/B) Σ_i log softmax_c(−s(2 − 2S_ic))_{y_i}
        return -sum(-s * (2 - 2 * PROXY_S[i, y]) - _lse(-s * (2 - 2 * PROXY_S[i, k]) for k in range(c))
                    for i, y in enumerate(PROXY_LABELS)) / n
    if name == "proxy_anchor":
        present = sorted(set(PROXY_LABELS))
        pos = sum(sp.log(1 + sum(sp.exp(-a * (PROXY_S[i, k] - d)) for i in range(n) if PROXY_LABELS[i] == k))
                  for k in present) / len(present)
        neg = sum(sp.log(1 + sum(sp.exp(a * (PROXY_S[i, k] + d)) for i in range(n) if PROXY_LABELS[i] != k))
                  for k in range(c)) / c
        return pos + neg
    raise ValueError(f"no symbolic proxy loss {name!r}; known: {', '.join(_PROXY_REGION)}")


@functools.cache
def derive_proxy(name: str) -> Derivation:
    """Sample–proxy weights ``w_ic = ∓∂L/∂S_ic`` (minus where ``c = y_i``) of proxy loss ``name``; keys
    ``PROXY_S[i, c]``."""
    loss = _proxy_loss(name)
    grad = {x: sp.simplify(sp.diff(loss, x)) for x in PROXY_S}
    weights = {}
    for (i, c), x in np.ndenumerate(np.array(PROXY_S.tolist(), dtype=object)):
        weights[x] = sp.simplify(-grad[x] if PROXY_LABELS[i] == c else grad[x])
    return Derivation(loss, grad, weights, _PROXY_REGION[name])


def closed_form_proxy_expr(name: str, i: int, c: int) -> sp.Expr:
    """``mslib.gpw``'s sample–proxy weight ``w_ic``, typed from Kim et al. 2020 / PML's Proxy-NCA form."""
    s, a, d = _PROXY_HP["softmax_scale"], _PROXY_HP["alpha"], _PROXY_HP["margin"]
    n, n_cls = PROXY_S.shape
    pos = PROXY_LABELS[i] == c
    if name == "proxy_nca":  # p_ic = softmax_c(2s S_ic); w⁺ = 2s(1 − p)/B, w⁻ = 2s p/B
        p = sp.exp(2 * s * PROXY_S[i, c]) / sum(sp.exp(2 * s * PROXY_S[i, k]) for k in range(n_cls))
        return 2 * s * ((1 - p) if pos else p) / n
    if name == "proxy_anchor":
        if pos:
            col = [sp.exp(-a * (PROXY_S[j, c] - d)) for j in range(n) if PROXY_LABELS[j] == c]
            return a * sp.exp(-a * (PROXY_S[i, c] - d)) / (1 + sum(col)) / len(set(PROXY_LABELS))
        col = [sp.exp(a * (PROXY_S[j, c] + d)) for j in range(n) if PROXY_LABELS[j] != c]
        return a * sp.exp(a * (PROXY_S[i, c] + d)) / (1 + sum(col)) / n_cls
    raise ValueError(f"no proxy closed form for {name!r}; known: {', '.join(_PROXY_REGION)}")


def prove_proxy(name: str) -> dict[str, bool]:
    """Per sample–proxy pair: ``simplify(derived − closed) == 0``."""
    w = derive_proxy(name).weights
    return {str(PROXY_S[i, c]): _is_zero(w[PROXY_S[i, c]] - closed_form_proxy_expr(name, i, c))
            for i in range(PROXY_S.shape[0]) for c in range(PROXY_S.shape[1])}


def uses_proxy(expr: sp.Expr, i: int, c: int) -> dict[str, bool]:
    """Which similarities the weight ``w_ic`` uses: ``S`` (not shift-invariant), ``own`` (its own ``S_ic``),
    ``N-row``/``P-row`` (another negative proxy / the own proxy of sample ``i``), ``N-col``/``P-col`` (a sample of
    another class / of class ``c``, against proxy ``c``); the keys of ``mslib.gpw.proxy_similarity_dependence``."""
    free, y = expr.free_symbols, PROXY_LABELS
    row = [(i, k) for k in range(PROXY_S.shape[1]) if k != c]
    col = [(j, c) for j in range(PROXY_S.shape[0]) if j != i]
    return {
        "S": not _shift_invariant(expr, list(PROXY_S)),
        "own": PROXY_S[i, c] in free,
        "N-row": any(PROXY_S[e] in free for e in row if e[1] != y[i]),
        "P-row": any(PROXY_S[e] in free for e in row if e[1] == y[i]),
        "N-col": any(PROXY_S[e] in free for e in col if y[e[0]] != c),
        "P-col": any(PROXY_S[e] in free for e in col if y[e[0]] == c),
    }


def numeric_check_proxy(name: str, values: np.ndarray, hparams: Mapping[str, float] | None = None) -> dict[str, float]:
    """``max |derived − autograd|`` (readable ``mslib.proxy_losses`` loss) and ``max |derived − mslib.gpw|``."""
    from mslib import gpw

    hp = dict(hparams or ({"softmax_scale": 1.0} if name == "proxy_nca" else {"alpha": 32.0, "margin": 0.1}))
    w = derive_proxy(name).weights
    subs = {_PROXY_HP[k]: v for k, v in hp.items()}
    flat = list(PROXY_S)
    derived = np.array([[float(sp.lambdify(flat, w[PROXY_S[i, c]].subs(subs), "numpy")(*np.ravel(values)))
                         for c in range(PROXY_S.shape[1])] for i in range(PROXY_S.shape[0])])
    sim, labels = torch.tensor(np.asarray(values), dtype=torch.float64), torch.tensor(PROXY_LABELS)
    auto, closed = gpw.proxy_weights(name, sim, labels, **hp), gpw.closed_form_proxy_weights(name, sim, labels, **hp)
    return {"autograd": float(np.abs(derived - (auto.pos + auto.neg).numpy()).max()),
            "closed form": float(np.abs(derived - (closed.pos + closed.neg).numpy()).max())}
