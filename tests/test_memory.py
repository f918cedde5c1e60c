"""mslib.memory.CrossBatchMemory: FIFO bookkeeping, the square loss when it holds only the batch, plain loops over
an independently kept FIFO, pytorch-metric-learning 2.9's ``CrossBatchMemory`` over a batch sequence, and resume."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances, miners, reducers
from pytorch_metric_learning import losses as pml_losses

from mslib import losses
from mslib.memory import CrossBatchMemory
from mslib.similarity import cosine
from tests import reference_losses as ref
from tests.test_losses import CASES, _name

DIM = 8


def _batches(n: int, p: int = 3, k: int = 2, n_classes: int = 5, seed: int = 0):
    """``n`` P×K batches (float64, not unit length) drawn from ``n_classes`` classes."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, DIM, generator=g, dtype=torch.float64)
    for _ in range(n):
        classes = torch.randperm(n_classes, generator=g)[:p]
        y = classes.repeat_interleave(k)
        yield 2 * (centres[y] + torch.randn(len(y), DIM, generator=g, dtype=torch.float64)), y


def _memory(name: str, size: int, **kw) -> CrossBatchMemory:
    return CrossBatchMemory(losses.build_loss(name, **kw), size, DIM, dtype=torch.float64)


@pytest.mark.parametrize("case", CASES)
def test_memory_holding_only_the_batch_gives_the_square_loss(case: str) -> None:
    for x, y in _batches(3, p=4, k=3):
        xbm = _memory(_name(case), len(y), **CASES[case])
        torch.testing.assert_close(xbm(x, y), losses.build_loss(_name(case), **CASES[case])(x, y), rtol=0, atol=1e-12)


def test_memory_holding_only_the_batch_with_ms_mining_gives_the_square_loss() -> None:
    x, y = next(_batches(1, p=4, k=3))
    for loss in (dict(name="contrastive", ms_mining=0.1), dict(name="multi_similarity", preset="official")):
        xbm = _memory(size=len(y), **loss)
        torch.testing.assert_close(xbm(x, y), losses.build_loss(**loss)(x, y), rtol=0, atol=1e-12)


def test_fifo_order_and_wrap_around() -> None:
    xbm = _memory("contrastive", 10)
    kept: list[tuple[torch.Tensor, int]] = []  # the FIFO kept by hand: (embedding, label), oldest first
    for step, (x, y) in enumerate(_batches(5, p=2, k=2)):  # 4 per batch into 10 slots
        xbm(x, y)
        kept = (kept + list(zip(x, y.tolist(), strict=True)))[-10:]
        emb, lab = xbm.contents()
        assert len(emb) == min(4 * (step + 1), 10) == int(xbm.count)
        assert int(xbm.position) == (4 * (step + 1)) % 10
        # slot j holds the sample written at a time ≡ j (mod 10): the hand FIFO rotated by the write position
        start = int(xbm.position) if len(kept) == 10 else 0
        for offset, (e, label) in enumerate(kept):
            slot = (start + offset) % 10
            assert torch.equal(emb[slot], e) and int(lab[slot]) == label
    assert step == 4 and int(xbm.iteration) == 5


@pytest.mark.parametrize("case", CASES)
def test_loss_against_a_wrapped_memory_matches_plain_loops(case: str) -> None:
    xbm = _memory(_name(case), 14, **CASES[case])
    history: list[tuple[torch.Tensor, torch.Tensor]] = []
    for x, y in _batches(4, p=3, k=2):  # 6 per batch into 14 slots: the third batch wraps around
        x = x.requires_grad_(True)
        v = xbm(x, y)
        (g,) = torch.autograd.grad(v, x)
        history += list(zip(x.detach(), y, strict=True))
        n = len(history)
        slot_of = {t: t % 14 for t in range(max(0, n - 14), n)}  # written at time t → slot t mod 14
        bank = torch.zeros(min(n, 14), DIM, dtype=torch.float64)
        bank_labels = torch.zeros(min(n, 14), dtype=torch.long)
        for t, slot in slot_of.items():
            bank[slot], bank_labels[slot] = history[t]
        own = torch.tensor([slot_of[t] for t in range(n - len(y), n)])
        xr = x.detach().clone().requires_grad_(True)
        if n == len(y):  # the memory is the batch, in order: the square loss (Song's lifted loss uses j's row)
            rv = ref.REFERENCES[_name(case)](cosine(xr, bank), y, **CASES[case])
        else:
            rv = ref.REFERENCES[_name(case)](cosine(xr, bank), y, bank_labels, self_index=own, **CASES[case])
        (rg,) = torch.autograd.grad(rv, xr)
        torch.testing.assert_close(v.detach(), rv.detach(), rtol=0, atol=1e-10)
        torch.testing.assert_close(g, rg, rtol=0, atol=1e-10)


def _pml_cases():
    cos = distances.CosineSimilarity
    return {
        # PML's ContrastiveLoss sums over pairs (SumReducer); ours divides by the batch size
        "contrastive": (dict(name="contrastive", pos_margin=0.9, neg_margin=0.3), 1,
                        pml_losses.ContrastiveLoss(pos_margin=0.9, neg_margin=0.3, distance=cos(),
                                                   reducer=reducers.SumReducer()), None),
        "ms": (dict(name="multi_similarity", alpha=2.0, beta=10.0, lam=0.4, epsilon=None), 0,
               pml_losses.MultiSimilarityLoss(2.0, 10.0, base=0.4), None),
        "ms+miner": (dict(name="multi_similarity", alpha=2.0, beta=10.0, lam=0.4, epsilon=0.1), 0,
                     pml_losses.MultiSimilarityLoss(2.0, 10.0, base=0.4), miners.MultiSimilarityMiner(0.1)),
        "contrastive+ms-miner": (dict(name="contrastive", pos_margin=0.9, neg_margin=0.3, ms_mining=0.1), 1,
                                 pml_losses.ContrastiveLoss(pos_margin=0.9, neg_margin=0.3, distance=cos(),
                                                            reducer=reducers.SumReducer()),
                                 miners.MultiSimilarityMiner(0.1)),
    }


@pytest.mark.parametrize("case", list(_pml_cases()))
def test_batch_sequence_matches_pytorch_metric_learning(case: str) -> None:
    ours_kw, times_batch, pml_loss, pml_miner = _pml_cases()[case]
    ours = _memory(size=16, **ours_kw)
    theirs = pml_losses.CrossBatchMemory(pml_loss, DIM, memory_size=16, miner=pml_miner)
    for x, y in _batches(6, p=3, k=2):  # 6 per batch into 16 slots: wraps at the third batch
        x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        v = ours(x1, y) * (len(y) if times_batch else 1)
        v2 = theirs(x2, y)
        (g,), (g2,) = torch.autograd.grad(v, x1), torch.autograd.grad(v2, x2)
        assert float(v.detach()) > 0
        torch.testing.assert_close(v.detach(), v2.detach(), rtol=0, atol=1e-9)
        torch.testing.assert_close(g, g2, rtol=0, atol=1e-9)
    assert torch.equal(ours.embedding_memory, theirs.embedding_memory)
    assert torch.equal(ours.label_memory, theirs.label_memory)


def test_start_iteration_uses_no_memory_before_it() -> None:
    xbm = CrossBatchMemory(losses.build_loss("multi_similarity", preset="official"), 20, DIM, start_iteration=2,
                           dtype=torch.float64)
    plain = losses.build_loss("multi_similarity", preset="official")
    values = []
    for step, (x, y) in enumerate(_batches(4, p=3, k=2)):
        values.append((float(xbm(x, y)), float(plain(x, y))))
        assert int(xbm.count) == 6 * max(0, step - 1), "written from the start iteration on"
    assert values[0][0] == values[0][1] and values[1][0] == values[1][1]
    assert values[3][0] != pytest.approx(values[3][1], rel=1e-6), "the memory changes the loss once it is used"


def test_state_dict_round_trip_resumes_exactly() -> None:
    batches = list(_batches(5, p=3, k=2))
    a, b = _memory("multi_similarity", 10, preset="official"), _memory("multi_similarity", 10, preset="official")
    for x, y in batches[:3]:
        a(x, y)
    state = a.state_dict()
    assert {"embedding_memory", "label_memory", "position", "count", "iteration"} <= set(state)
    b.load_state_dict(state)
    for x, y in batches[3:]:
        assert torch.equal(a(x, y), b(x, y))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_eval_mode_reads_without_writing_and_errors() -> None:
    xbm = _memory("contrastive", 12)
    batches = list(_batches(2, p=3, k=2))
    xbm(*batches[0])
    before = {k: v.clone() for k, v in xbm.state_dict().items()}
    xbm.eval()
    x, y = batches[1]
    bank, bank_labels = xbm.contents()
    no_copies = torch.full((len(y),), -1)  # no query is in the memory (6 x 6, so say it)
    want = losses.contrastive(cosine(x, bank), y, bank_labels, self_index=no_copies)
    torch.testing.assert_close(xbm(x, y), want, rtol=0, atol=1e-12)
    assert all(torch.equal(v, before[k]) for k, v in xbm.state_dict().items())
    with pytest.raises(ValueError, match="does not fit a memory of 12"):
        xbm.train()(torch.randn(13, DIM, dtype=torch.float64), torch.zeros(13, dtype=torch.long))
    with pytest.raises(ValueError, match="serves pair losses"):
        CrossBatchMemory(losses.build_loss("proxy_nca", num_classes=3, embedding_dim=DIM), 10, DIM)


def test_xbm_trainers_form_adds_the_batch_loss() -> None:
    # the XBM authors' trainer: L(B, B) + w · L(B, M); our default is L(B, M) (PML's form)
    official = CrossBatchMemory(losses.build_loss("multi_similarity", preset="official"), 16, DIM, weight=0.5,
                                batch_loss=True, start_iteration=1, dtype=torch.float64)
    pml_form = _memory("multi_similarity", 16, preset="official")
    plain = losses.build_loss("multi_similarity", preset="official")
    for step, (x, y) in enumerate(_batches(4, p=3, k=2)):
        got = official(x, y)
        if step == 0:  # before start_iteration: the batch loss alone, nothing written
            assert torch.equal(got, plain(x, y)) and int(official.count) == 0
            continue
        want = plain(x, y) + 0.5 * pml_form(x, y)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert "batch_loss=True" in repr(official)
