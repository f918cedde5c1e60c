"""mslib.proxy_losses against pytorch-metric-learning 2.9 (same proxies copied in) and plain loops, in float64.

Gradients are compared with respect to the embeddings and the proxies. Tolerances: 1e-10 against the loops (same
arithmetic, other order); rtol 1e-9 against PML (Proxy-Anchor's α = 32 amplifies rounding in e^{α S}).
"""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from mslib import gpw, losses
from mslib.losses import LOSS_SPECS
from mslib.proxy_losses import loss_param_groups
from mslib.similarity import cosine
from tests import reference_losses as ref

PROXY_NAMES = [name for name, spec in LOSS_SPECS.items() if spec.kind != "pair"]  # proxy and classification
# the PML oracle of each row that names one (LossSpec.pml): same constructor names and defaults as ours
PML = {name: getattr(pml_losses, LOSS_SPECS[name].pml) for name in PROXY_NAMES if LOSS_SPECS[name].pml}
# every proxy loss of the table at its (and PML's) defaults, then the chosen settings (a bare name replaces it)
CASES = {name: {} for name in PROXY_NAMES}
CASES |= {
    "proxy_anchor": dict(),
    "proxy_anchor-wide": dict(margin=0.3, alpha=8.0),
    "proxy_nca": dict(),
    "proxy_nca-scaled": dict(softmax_scale=4.0),
    "soft_triple": dict(centers_per_class=3),
    "soft_triple-sharp": dict(centers_per_class=2, la=8.0, gamma=0.5, margin=0.2),
    "arcface": dict(),
    "arcface-wide": dict(margin=70.0, scale=4.0),  # θ + m > π for some targets: the fallback branch
    "cosface": dict(),
    "cosface-small": dict(margin=0.2, scale=8.0),
    "sphereface": dict(),
    "sphereface-3": dict(margin=3, scale=2.0),
    "triplet_center": dict(),
    "triplet_center-wide": dict(margin=0.8),
    "center": dict(),
    "center-heavy": dict(lam=2.0, scale=4.0),
}


def _name(case: str) -> str:
    return case.split("-")[0]


PML_CASES = [case for case in CASES if _name(case) in PML]


def _width(case: str, n_classes: int) -> int:
    """Columns of ``sim`` for ``n_classes``: ``C·K`` for SoftTriple, ``2C`` (weights, centres) for center."""
    hp = CASES.get(case, {})
    return n_classes * (2 if _name(case) == "center" else hp.get("centers_per_class", 1))
LABELS = {
    "pk": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
    "absent-classes": [0, 0, 4, 4, 4, 1, 1, 1, 0, 4, 1, 0],  # classes 2, 3 and 5 have no sample
    "lone-sample": [0, 0, 0, 0, 1, 1, 1, 1, 5, 2, 2, 2],
}




def _embeddings(seed: int, n: int = 12, dim: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, dim, generator=g, dtype=torch.float64)  # not unit length: both sides normalise


def _weight(module) -> torch.nn.Parameter:
    """The class representatives under PML's parameter name (``proxies``, ``fc`` or ``W``)."""
    return dict(module.named_parameters())[LOSS_SPECS[_name_of(module)].proxy.name]


def _name_of(module) -> str:
    return module.name if hasattr(module, "spec") else {v: k for k, v in PML.items()}[type(module)]


def _pair(name: str, num_classes: int, dim: int, **hp):
    """Our module and PML's with the same representatives (ours drawn, copied into PML's), both float64."""
    torch.manual_seed(1)
    ours = losses.build_loss(name, num_classes=num_classes, embedding_dim=dim, **hp).double()
    theirs = PML[name](num_classes, dim, **hp).double()
    _weight(theirs).data.copy_(_weight(ours).data)
    return ours, theirs


def _value_grads(module, x: torch.Tensor, y: torch.Tensor):
    x = x.detach().clone().requires_grad_(True)
    v = module(x, y)
    gx, gp = torch.autograd.grad(v, (x, _weight(module)))
    return v.detach(), gx, gp


@pytest.mark.parametrize("case", PML_CASES)
@pytest.mark.parametrize("labels", LABELS)
def test_matches_pytorch_metric_learning(case: str, labels: str) -> None:
    y = torch.tensor(LABELS[labels])
    ours, theirs = _pair(_name(case), 6, 8, **CASES[case])
    v, gx, gp = _value_grads(ours, _embeddings(0), y)
    v2, gx2, gp2 = _value_grads(theirs, _embeddings(0), y)
    assert float(v) > 0 and float(gp.abs().max()) > 0
    torch.testing.assert_close(v, v2, rtol=1e-9, atol=0)
    torch.testing.assert_close(gx, gx2, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gp, gp2, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", PML)
def test_one_class_matches_pytorch_metric_learning(name: str) -> None:
    y = torch.zeros(6, dtype=torch.long)
    ours, theirs = _pair(name, 1, 8)
    v, gx, gp = _value_grads(ours, _embeddings(2, n=6), y)
    v2, gx2, gp2 = _value_grads(theirs, _embeddings(2, n=6), y)
    torch.testing.assert_close(v, v2, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(gx, gx2, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gp, gp2, rtol=1e-9, atol=1e-12)
    if name == "proxy_anchor":  # only its positive term: samples are pulled to the one proxy
        assert float(v) > 0
    else:  # a softmax over one class is 1: nothing to learn
        assert float(v) == 0.0


def test_one_class_without_pml() -> None:
    # triplet-center has no other centre to beat: 0; center's softmax over one class is 1, only the pull remains
    sim, y = _sim(4, n=5, n_classes=1, case="center"), torch.zeros(5, dtype=torch.long)
    assert float(losses.triplet_center(sim[:, :1], y)) == 0.0
    torch.testing.assert_close(losses.center(sim, y, lam=0.5), 0.5 * (1 - sim[:, 1]).mean(), rtol=0, atol=1e-15)


def _sim(seed: int, n: int = 10, n_classes: int = 5, case: str = "") -> torch.Tensor:
    """Random cosines in (−1, 1), ``n × C·K`` (``K`` the case's centres per class)."""
    g = torch.Generator().manual_seed(seed)
    width = _width(case, n_classes)
    return torch.rand(n, width, generator=g, dtype=torch.float64) * 2 - 1


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_plain_loops(case: str, seed: int) -> None:
    y = torch.tensor([0, 0, 1, 1, 1, 3, 3, 0, 1, 3])  # classes 2 and 4 absent
    sim = _sim(seed, case=case)
    s1, s2 = sim.clone().requires_grad_(True), sim.clone().requires_grad_(True)
    v = LOSS_SPECS[_name(case)].fn(s1, y, **CASES[case])
    rv = ref.REFERENCES[_name(case)](s2, y, **CASES[case])
    (g,), (rg,) = torch.autograd.grad(v, s1), torch.autograd.grad(rv, s2)
    torch.testing.assert_close(v, rv, rtol=0, atol=1e-10)
    torch.testing.assert_close(g, rg, rtol=0, atol=1e-10)
    assert float(v.detach()) > 0


@pytest.mark.parametrize("case", CASES)
def test_gradcheck(case: str) -> None:
    y = torch.tensor([0, 0, 1, 2, 2, 0])
    sim = _sim(3, n=6, n_classes=4, case=case).requires_grad_(True)
    fn = LOSS_SPECS[_name(case)].fn
    assert torch.autograd.gradcheck(lambda s: fn(s, y, **CASES[case]), (sim,), eps=1e-6, atol=1e-7)
    x = _embeddings(4, n=6, dim=5).requires_grad_(True)
    proxies = _embeddings(5, n=sim.shape[1], dim=5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e, p: fn(cosine(e, p), y, **CASES[case]), (x, proxies))


@pytest.mark.parametrize("case", [c for c in CASES if LOSS_SPECS[_name(c)].closed_form is not None])
@pytest.mark.parametrize("labels", LABELS)
def test_closed_form_weights_equal_autograd(case: str, labels: str) -> None:
    y = torch.tensor(LABELS[labels])
    sim = _sim(5, n=len(y), n_classes=6)
    auto = gpw.proxy_weights(_name(case), sim, y, **CASES[case])
    closed = gpw.closed_form_proxy_weights(_name(case), sim, y, **CASES[case])
    assert float(auto.pos.max()) > 0 and float(auto.neg.max()) > 0
    torch.testing.assert_close(closed.grad, auto.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(closed.pos, auto.pos, rtol=0, atol=1e-12)
    torch.testing.assert_close(closed.neg, auto.neg, rtol=0, atol=1e-12)
    assert bool((auto.grad[torch.arange(len(y)), y] <= 0).all()), "the own proxy is pulled closer"


def test_proxy_anchor_weight_is_the_papers_formula_by_loop() -> None:
    # Kim et al.: ∂L/∂s(x, p) for x ∈ X_p⁻ is (1/|P|) α h_p⁻(x) / (1 + Σ_{x'∈X_p⁻} h_p⁻(x')), h⁻ = e^{α(s + δ)}
    y = torch.tensor(LABELS["absent-classes"])
    sim, alpha, delta = _sim(6, n=len(y), n_classes=6), 8.0, 0.2
    w = gpw.proxy_weights("proxy_anchor", sim, y, alpha=alpha, margin=delta)
    for c in range(6):
        others = [i for i in range(len(y)) if int(y[i]) != c]
        z = 1 + sum(torch.exp(alpha * (sim[j, c] + delta)) for j in others)
        for i in others:
            assert abs(float(w.neg[i, c]) - float(alpha * torch.exp(alpha * (sim[i, c] + delta)) / z / 6)) < 1e-12


def test_labels_outside_the_classes_are_refused() -> None:
    for name in PROXY_NAMES:
        fn, sim, hp = LOSS_SPECS[name].fn, _sim(0, n=4, n_classes=3, case=name), CASES[name]
        with pytest.raises(ValueError, match=r"class indices in \[0, 3\).*got \[3\]"):
            fn(sim, torch.tensor([0, 1, 2, 3]), **hp)
        with pytest.raises(ValueError, match=r"got \[-1\]"):
            fn(sim, torch.tensor([0, -1, 2, 2]), **hp)
        with pytest.raises(ValueError, match="integer"):
            fn(sim, torch.tensor([0.0, 1.0, 2.0, 2.0]), **hp)
        with pytest.raises(ValueError, match="labels has length"):
            fn(sim, torch.tensor([0, 1, 2]), **hp)
        bad = sim.clone()
        bad[1, 1] = float("nan")
        with pytest.raises(ValueError, match="NaN or Inf"):
            fn(bad, torch.tensor([0, 1, 2, 2]), **hp)
        module = losses.build_loss(name, num_classes=3, embedding_dim=8, **hp)
        with pytest.raises(ValueError, match=r"\[0, 3\)"):
            module(torch.randn(4, 8), torch.tensor([0, 1, 2, 7]))
        with pytest.raises(ValueError, match="embedding_dim=8"):
            module(torch.randn(4, 5), torch.tensor([0, 1, 2, 2]))


def test_build_loss_for_proxy_losses() -> None:
    pair = {name for name, spec in LOSS_SPECS.items() if spec.kind == "pair"}
    assert set(PML) == {"proxy_anchor", "proxy_nca", "soft_triple", "arcface", "cosface", "sphereface"}
    assert set(losses.loss_names()) == pair | set(PML) | {"triplet_center", "center"}
    with pytest.raises(ValueError, match="centers_per_class must be a positive integer, got 0"):
        losses.build_loss("soft_triple", num_classes=3, embedding_dim=8, centers_per_class=0)
    with pytest.raises(ValueError, match="not a multiple of 4 proxies per class"):
        losses.soft_triple(_sim(0, n_classes=5), torch.zeros(10, dtype=torch.long), centers_per_class=4)
    with pytest.raises(ValueError, match="needs num_classes= a positive integer, got None"):
        losses.build_loss("proxy_anchor", embedding_dim=8)
    with pytest.raises(ValueError, match="needs embedding_dim= a positive integer, got 0"):
        losses.build_loss("proxy_nca", num_classes=3, embedding_dim=0)
    with pytest.raises(ValueError, match="proxy_anchor has no hyperparameter beta; it takes margin, alpha"):
        losses.build_loss("proxy_anchor", num_classes=3, embedding_dim=8, beta=2)
    with pytest.raises(ValueError, match="takes no miner"):
        losses.build_loss("proxy_nca", num_classes=3, embedding_dim=8, ms_mining=0.1)
    with pytest.raises(ValueError, match="no parameters, so no lr_factor"):
        losses.build_loss("contrastive", lr_factor=10)
    pair = losses.build_loss("contrastive", num_classes=3, embedding_dim=8)  # a trainer may pass them to any loss
    assert isinstance(pair, losses.PairLoss) and list(pair.parameters()) == []
    assert losses.canonical_params("proxy_anchor", {"alpha": 16.0}) == {"alpha": 16.0}


@pytest.mark.parametrize(("name", "shape", "factor"), [
    ("proxy_anchor", (5, 16), 100.0), ("proxy_nca", (5, 16), 1.0), ("soft_triple", (16, 50), 100.0),
    ("arcface", (16, 5), 1.0), ("cosface", (16, 5), 1.0), ("sphereface", (16, 5), 1.0),
])
def test_parameters_layout_init_and_lr_factor_match_pml(name: str, shape: tuple[int, int], factor: float) -> None:
    # PML draws its weights in the constructor: the same seed gives ours the same values (same init, same layout)
    torch.manual_seed(7)
    ours = losses.build_loss(name, num_classes=5, embedding_dim=16)
    torch.manual_seed(7)
    theirs = PML[name](5, 16)
    assert _weight(ours).shape == shape and torch.equal(_weight(ours).data, _weight(theirs).data)
    assert set(ours.state_dict()) == set(theirs.state_dict()) == {LOSS_SPECS[name].proxy.name}
    assert ours.lr_factor == factor
    (group,) = loss_param_groups(ours, 1e-3)
    assert group["lr"] == pytest.approx(1e-3 * factor) and group["params"][0] is _weight(ours)
    rows = ours.representatives()
    assert rows.shape == (shape[0] * shape[1] // 16, 16), "representatives are rows whatever PML's layout"


@pytest.mark.parametrize(("name", "shapes"), [
    ("triplet_center", {"centers": (5, 16)}), ("center", {"W": (16, 5), "centers": (5, 16)}),
])
def test_parameters_of_losses_pml_lacks(name: str, shapes: dict) -> None:
    module = losses.build_loss(name, num_classes=5, embedding_dim=16).double()
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == shapes
    assert module.representatives().shape == (5 * len(shapes), 16)
    x, y = _embeddings(3, n=10, dim=16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    want = LOSS_SPECS[name].fn(cosine(x, module.representatives()), y)
    torch.testing.assert_close(module(x, y), want, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(module(x, y), list(module.parameters()))
    assert all(float(g.abs().max()) > 0 for g in grads), "every parameter set learns"


def test_lr_factor_override_and_pair_losses() -> None:
    assert losses.build_loss("proxy_anchor", num_classes=2, embedding_dim=4, lr_factor=10).lr_factor == 10.0
    assert loss_param_groups(losses.build_loss("contrastive"), 1e-3) == []


def test_state_dict_round_trip_and_training_moves_proxies() -> None:
    a = losses.build_loss("proxy_anchor", num_classes=4, embedding_dim=8)
    b = losses.build_loss("proxy_anchor", num_classes=4, embedding_dim=8)
    assert not torch.equal(a.proxies, b.proxies)
    b.load_state_dict(a.state_dict())
    x, y = torch.randn(8, 8), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert torch.equal(a(x, y), b(x, y))
    before = a.proxies.detach().clone()
    opt = torch.optim.SGD(loss_param_groups(a, 0.01), lr=0.01)
    a(x, y).backward()
    opt.step()
    assert not torch.equal(a.proxies.detach(), before)


@pytest.mark.parametrize(("name", "hp", "expect"), [
    # Proxy-Anchor: a softmax over the proxy's column with a 1 in the denominator (so its own S counts too)
    ("proxy_anchor", dict(alpha=4.0), {"S": True, "own": True, "N-row": False, "P-row": False, "N-col": True,
                                       "P-col": False}),
    # Proxy-NCA: a softmax over the sample's row, blind to a common shift, not to its own S moving alone
    ("proxy_nca", dict(softmax_scale=4.0), {"S": False, "own": True, "N-row": True, "P-row": True, "N-col": False,
                                            "P-col": False}),
])
def test_proxy_similarity_dependence(name: str, hp: dict, expect: dict) -> None:
    y = torch.tensor(LABELS["pk"])
    assert gpw.proxy_similarity_dependence(name, _sim(7, n=len(y), n_classes=5), y, **hp) == expect
