"""The CUDA paths against the CPU or fp32 paths (marker ``cuda``; ``make gpu-check`` runs them on a GPU machine).

Without a CUDA device every test here skips (CI has none): ``benchmarks/gpu_check.py`` records how many ran.
Tolerances are stated per test: exact-arithmetic paths (float64 losses, float32 retrieval) must agree to rounding;
reduced-precision paths (bf16/fp16 autocast) within the error their 8/11-bit mantissas allow.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mslib.evaluate import embed, evaluate_embeddings
from mslib.losses import MS_PRESETS, multi_similarity, multi_similarity_autograd
from mslib.models import build_model
from mslib.run.trainer import train_step

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (make gpu-check runs these)")]

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _exact_fp32():
    """fp32 references without TF32, so "fp32" means 24-bit mantissas on both devices."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def _batch(b: int, d: int, classes: int, seed: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=1)
    return x, torch.arange(b) % classes


@pytest.mark.parametrize("preset", sorted(MS_PRESETS))
@pytest.mark.parametrize("mining", [True, False])
def test_fast_ms_loss_on_cuda_equals_cpu(preset: str, mining: bool) -> None:
    """The closed-form-backward MS loss (float64) on CUDA: value and dL/dx equal the CPU's to 1e-12 (relative), and
    the CPU's equals autograd (the independent reference)."""
    hp = dict(MS_PRESETS[preset])
    if not mining:
        hp["epsilon"] = None
    x, y = _batch(512, 64, 64, seed=1)
    results = []
    for device, fn in ((torch.device("cpu"), multi_similarity), (CUDA, multi_similarity),
                       (torch.device("cpu"), multi_similarity_autograd)):
        xd = x.detach().to(device, copy=True).requires_grad_(True)  # a fresh leaf per device
        loss = fn(xd @ xd.T, y.to(device), **hp)
        loss.backward()
        results.append((loss.detach().cpu(), xd.grad.cpu()))
    (l_cpu, g_cpu), (l_cuda, g_cuda), (l_ref, g_ref) = results
    torch.testing.assert_close(l_cuda, l_cpu, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_cuda, g_cpu, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_cpu, g_ref, rtol=1e-10, atol=1e-12)
    assert g_cpu.abs().sum() > 0


@pytest.mark.parametrize("separate_gallery", [False, True])
def test_evaluation_scan_on_cuda_equals_cpu(separate_gallery: bool) -> None:
    """Recall@K, MAP@R and R-Precision from the blocked scan on CUDA equal the CPU's (tie-free float32 data, several
    blocks, rows of ≥ 4,096 references so the grouped top-k runs): the same ranks, so equal to 1e-12."""
    rng = np.random.default_rng(0)
    n, classes = 9000, 900
    labels = rng.integers(0, classes, n)
    centres = rng.standard_normal((classes, 128))
    x = centres[labels] + rng.standard_normal((n, 128)) * 2.5
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    args = (x[:3000], labels[:3000], x[3000:], labels[3000:]) if separate_gallery else (x, labels)
    cpu = evaluate_embeddings(*args, ks=(1, 2, 4, 8, 100), with_nmi=False, block_size=512)
    gpu = evaluate_embeddings(*args, ks=(1, 2, 4, 8, 100), with_nmi=False, block_size=512, device="cuda")
    assert set(gpu) == set(cpu)
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    assert 0.05 < cpu["R@1"] < 0.95  # a task neither trivial nor hopeless, so a wrong rank would show


def _bninception(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("bninception", 64, pooling="max").to(CUDA)


def _images(n: int, seed: int, size: int = 227) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, generator=g) * 255 - 117).to(CUDA)


def _one_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, amp: str | None = None,
              channels_last: bool = False) -> tuple[float, torch.Tensor, torch.amp.GradScaler]:
    """One :func:`mslib.run.trainer.train_step` (MS loss, SGD lr 0); its loss and the embedding layer's gradient."""
    model.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    dtype = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    loss_fn = lambda e, y: multi_similarity(e @ e.T, y, **MS_PRESETS["official"])  # noqa: E731
    loss = train_step(model, loss_fn, opt, images, labels, scaler=scaler, amp_dtype=dtype)
    grad = model.head.weight.grad.detach().float().clone()  # GradScaler.step has unscaled it in place
    return float(loss), grad, scaler


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


@pytest.mark.parametrize(("amp", "loss_rtol"), [("bf16", 3e-2), ("fp16", 1e-2)])
def test_amp_training_step_close_to_fp32(amp: str, loss_rtol: float) -> None:
    """A BN-Inception step under autocast from the same weights and batch: the MS loss within ``loss_rtol`` of fp32
    (bf16 keeps 8 mantissa bits, fp16 11), the embedding layer's gradient at cosine ≥ 0.98 to fp32's, all finite;
    fp16 goes through the GradScaler (its scale is the initial 2^16 unless a step overflowed)."""
    images, labels = _images(40, seed=2), torch.arange(40, device=CUDA) % 8
    base = _bninception()
    ref_loss, ref_grad, _ = _one_step(copy.deepcopy(base), images, labels)
    loss, grad, scaler = _one_step(copy.deepcopy(base), images, labels, amp=amp, channels_last=True)
    assert np.isfinite(loss) and torch.isfinite(grad).all()
    assert loss == pytest.approx(ref_loss, rel=loss_rtol)
    assert _cosine(grad, ref_grad) >= 0.98
    assert scaler.is_enabled() == (amp == "fp16")
    if amp == "fp16":
        assert scaler.get_scale() in (2.0**16, 2.0**15)


def test_channels_last_step_equals_contiguous() -> None:
    """channels_last changes the memory layout only: the fp32 step's loss to 1e-5 and its gradient to cosine
    ≥ 0.9999 (cuDNN may pick other kernels, so not bit for bit)."""
    images, labels = _images(40, seed=3), torch.arange(40, device=CUDA) % 8
    base = _bninception(seed=1)
    loss_a, grad_a, _ = _one_step(copy.deepcopy(base), images, labels)
    loss_b, grad_b, _ = _one_step(copy.deepcopy(base), images, labels, channels_last=True)
    assert loss_b == pytest.approx(loss_a, rel=1e-5)
    assert _cosine(grad_a, grad_b) >= 0.9999


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_embed_under_autocast_close_to_fp32(amp: str) -> None:
    """``embed`` under autocast: each unit embedding at cosine ≥ 0.99 to its fp32 embedding (BN statistics first
    estimated on a few batches, as after training), and the neighbours' order mostly kept (R@1 of 40-class data
    within 5 points)."""
    model = _bninception(seed=4)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a cumulative average over the batches below
    with torch.no_grad():
        for s in range(3):
            model(_images(64, seed=10 + s))
    images, labels = _images(160, seed=5).cpu(), torch.arange(160) % 40
    images = images + 60 * torch.randn(40, 3, 1, 1, generator=torch.Generator().manual_seed(6))[labels]
    loader = [(images[i:i + 32], labels[i:i + 32]) for i in range(0, 160, 32)]
    ref, _ = embed(model, loader, device=CUDA)
    low, lab = embed(model, loader, device=CUDA, amp=amp)
    assert torch.equal(lab, labels) and torch.isfinite(low).all()
    assert torch.nn.functional.cosine_similarity(low, ref, dim=1).min() >= 0.99
    r_ref = evaluate_embeddings(ref, labels, ks=(1,), with_nmi=False)["R@1"]
    r_low = evaluate_embeddings(low, labels, ks=(1,), with_nmi=False)["R@1"]
    assert abs(r_low - r_ref) <= 0.05
