"""mslib.losses.LOSS_SPECS, one row per loss: every row is complete, and the checks every row gets are generated
from the table, so a new row is tested without editing this file.

Per row: its plain-loop reference (``tests/reference_losses.py``) at its defaults, values and gradients to 1e-10 in
float64; its closed-form GPW weights against autograd's ``|∂L/∂S|`` (1e-10 for pair losses as ``test_gpw.py``, 1e-12
for proxy losses as ``test_proxy_losses.py``); its :func:`mslib.losses.build_loss` module against the function.
The PML comparisons generated from the ``pml`` field are in ``test_losses.py`` and ``test_proxy_losses.py``.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from mslib import gpw, losses
from mslib.losses import LOSS_SPECS, LossSpec
from mslib.similarity import clustered_embeddings, cosine
from tests import reference_losses as ref

ROOT = Path(__file__).resolve().parent.parent
BIB_KEYS = set(re.findall(r"^@\w+\{([^,\s]+),", (ROOT / "book" / "references.bib").read_text(encoding="utf-8"),
                          flags=re.MULTILINE))
ROWS = list(LOSS_SPECS)
WITH_CLOSED_FORM = [name for name, spec in LOSS_SPECS.items() if spec.closed_form is not None]
PROXY_LABELS = torch.tensor([0, 0, 1, 1, 1, 3, 3, 0, 1, 3])  # 5 classes, 2 and 4 without a sample


def _grad(fn, sim, *args, **kw):
    s = sim.detach().clone().requires_grad_(True)
    value = fn(s, *args, **kw)
    (g,) = torch.autograd.grad(value, s)
    return value.detach(), g


def _pair_batch(seed: int = 0):
    return clustered_embeddings(4, 3, 8, spread=2.0, seed=seed)


def _proxy_sim(spec: LossSpec, n_classes: int = 5, seed: int = 0) -> torch.Tensor:
    """Random cosines in (−1, 1), one column per representative: ``C·K`` (``K`` per class), twice for centres."""
    per_class = 1 if spec.proxy.per_class is None else spec.defaults[spec.proxy.per_class]
    width = n_classes * per_class * (2 if spec.proxy.with_centers else 1)
    g = torch.Generator().manual_seed(seed)
    return torch.rand(len(PROXY_LABELS), width, generator=g, dtype=torch.float64) * 2 - 1


# --- the table itself -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ROWS)
def test_row_is_complete_and_points_at_what_exists(name: str) -> None:
    spec = LOSS_SPECS[name]
    assert spec.name == name == spec.fn.__name__, "a row is named as its function"
    assert spec.source in BIB_KEYS, f"{name}: source {spec.source!r} is not a key of book/references.bib"
    chapter = ROOT / "notebooks" / f"{spec.chapter}.ipynb"
    assert chapter.is_file() and name in chapter.read_text(encoding="utf-8"), f"{name}: chapter {spec.chapter}"
    if spec.pml is not None:
        assert issubclass(getattr(pml_losses, spec.pml), torch.nn.Module), spec.pml
    assert set(spec.defaults) == set(spec.hyperparameters()), "defaults give every hyperparameter a value"
    assert (spec.kind == "pair") == (spec.proxy is None)


@pytest.mark.parametrize("name", ROWS)
def test_closed_form_is_a_gpw_function_with_the_losss_hyperparameters(name: str) -> None:
    spec = LOSS_SPECS[name]
    if spec.closed_form is None:
        assert spec.no_closed_form.strip(), f"{name}: a row without a closed form says why"
        with pytest.raises(ValueError, match=f"no closed form for '{name}'"):
            weights = gpw.closed_form_weights if spec.kind == "pair" else gpw.closed_form_proxy_weights
            weights(name, torch.zeros(2, 2, dtype=torch.float64), torch.tensor([0, 1]))
        return
    params = inspect.signature(getattr(gpw, spec.closed_form)).parameters.values()
    keyword = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name != "pairs"}
    ours = {k: p.default for k, p in spec.hyperparameters().items()}
    assert keyword == ours, f"{spec.closed_form} takes the hyperparameters of {name}, with the same defaults"


def test_every_closed_form_and_every_row_has_a_plain_loop_reference() -> None:
    assert [name for name in WITH_CLOSED_FORM if name not in ref.REFERENCES] == []
    assert set(ref.REFERENCES) == set(LOSS_SPECS)
    assert losses.loss_names() == ROWS


def test_a_row_must_be_complete() -> None:
    def row(fn=losses.contrastive, kind="pair", **kw):
        return LossSpec("x", fn, kind, "hadsell2006dimensionality", "02_pair_losses", **kw)

    assert dict(row(closed_form="contrastive_weights").defaults) == {"pos_margin": 1.0, "neg_margin": 0.5}
    with pytest.raises(ValueError, match="closed_form= .* or no_closed_form="):
        row()
    with pytest.raises(ValueError, match="closed_form= .* or no_closed_form="):
        row(closed_form="contrastive_weights", no_closed_form="both")
    with pytest.raises(ValueError, match="kind must be one of pair, proxy, classification"):
        row(kind="pairs", closed_form="contrastive_weights")
    with pytest.raises(ValueError, match="a proxy loss needs a proxy="):
        row(losses.proxy_nca, "proxy", closed_form="proxy_nca_weights")
    with pytest.raises(ValueError, match=r"has no default for \(alpha, beta, epsilon, lam\), got $"):
        row(losses.multi_similarity, closed_form="multi_similarity_weights")
    with pytest.raises(ValueError, match=r"contrastive has no default for \(none\), got pos_margin"):
        row(closed_form="contrastive_weights", defaults={"pos_margin": 2.0})  # the signature's default is the one
    with pytest.raises(ValueError, match="two rows have the same name"):
        losses._table(row(closed_form="contrastive_weights"), row(closed_form="contrastive_weights"))


# --- generated per row ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ROWS)
def test_row_matches_its_plain_loop_at_its_defaults(name: str) -> None:
    spec = LOSS_SPECS[name]
    if spec.kind == "pair":
        x, labels = _pair_batch()
        sim = cosine(x)
    else:
        sim, labels = _proxy_sim(spec), PROXY_LABELS
    v, g = _grad(spec.fn, sim, labels, **spec.defaults)
    rv, rg = _grad(ref.REFERENCES[name], sim, labels, **spec.defaults)
    assert v.dtype == torch.float64 and float(v) > 0 and float(g.abs().max()) > 0
    torch.testing.assert_close(v, rv, rtol=0, atol=1e-10)
    torch.testing.assert_close(g, rg, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", WITH_CLOSED_FORM)
@pytest.mark.parametrize("seed", [0, 1])
def test_closed_form_equals_autograd_at_its_defaults(name: str, seed: int) -> None:
    spec = LOSS_SPECS[name]
    if spec.kind == "pair":
        x, y = clustered_embeddings(5, 4, 8, spread=2.0 + seed, seed=seed)  # every loss weights both kinds here
        batches = [(cosine(x), y, None), (cosine(x[:7], x[3:]), y[:7], y[3:])]  # square; rectangular
        pairs = [(gpw.pair_weights(name, *b, **spec.defaults), gpw.closed_form_weights(name, *b, **spec.defaults))
                 for b in batches]
        atol = 1e-10
    else:
        sim = _proxy_sim(spec, seed=seed)
        pairs = [(gpw.proxy_weights(name, sim, PROXY_LABELS, **spec.defaults),
                  gpw.closed_form_proxy_weights(name, sim, PROXY_LABELS, **spec.defaults))]
        atol = 1e-12
    for auto, closed in pairs:
        assert auto.grad.dtype == torch.float64 and float(auto.pos.max()) > 0 and float(auto.neg.max()) > 0
        torch.testing.assert_close(closed.grad, auto.grad, rtol=0, atol=atol)
        torch.testing.assert_close(closed.pos, auto.pos, rtol=0, atol=atol)
        torch.testing.assert_close(closed.neg, auto.neg, rtol=0, atol=atol)


@pytest.mark.parametrize("name", ROWS)
def test_row_builds_its_module(name: str) -> None:
    spec = LOSS_SPECS[name]
    x, y = _pair_batch(1)
    if spec.kind == "pair":
        module = losses.build_loss(name, **spec.defaults)
        assert isinstance(module, losses.PairLoss)
        torch.testing.assert_close(module(x, y), spec.fn(cosine(x), y, **spec.defaults), rtol=0, atol=1e-12)
        return
    module = losses.build_loss(name, num_classes=4, embedding_dim=x.shape[1]).double()
    assert isinstance(module, losses.ProxyLoss) and module.lr_factor == spec.proxy.lr_factor
    assert spec.proxy.name in dict(module.named_parameters())
    norms = {"norms": x.norm(dim=1)} if spec.proxy.needs_norms else {}
    want = spec.fn(cosine(x, module.representatives()), y, **norms)
    torch.testing.assert_close(module(x, y), want, rtol=0, atol=1e-12)
