"""mslib.diagnostics: pair similarities against a plain loop, random directions against N(0, 1/d), and the
measured fact chapter 00 states: untrained networks put their embeddings close together (S far above 0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mslib.diagnostics import (
    pair_similarities,
    random_direction_similarities,
    sample_batch,
    similarity_summary,
    untrained_embeddings,
)


def test_pair_similarities_equal_a_plain_loop() -> None:
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = []
    for i in range(7):
        for j in range(i + 1, 7):
            expected.append(float(x[i] @ x[j] / (x[i].norm() * x[j].norm())))
    np.testing.assert_allclose(pair_similarities(x).numpy(), expected, rtol=0, atol=1e-12)


def test_pair_similarities_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        pair_similarities(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="2-D"):
        pair_similarities(torch.zeros(4))


@pytest.mark.parametrize("dim", [4, 64, 512])
def test_random_directions_match_the_sphere(dim: int) -> None:
    """Uniform unit vectors: E[S] = 0 and Var[S] = 1/d (tolerances: a few standard errors at 600 vectors)."""
    s = random_direction_similarities(600, dim, seed=3)
    assert len(s) == 600 * 599 // 2
    assert abs(float(s.mean())) < 5 / math.sqrt(600 * dim)
    assert float(s.std()) == pytest.approx(1 / math.sqrt(dim), rel=0.05)


def test_summary_against_numpy() -> None:
    s = torch.tensor([-0.2, 0.1, 0.4, 0.5, 0.6, 0.9], dtype=torch.float64)
    out = similarity_summary(s, 0.5)
    assert out["share_above_lam"] == pytest.approx(2 / 6)  # strict: S = λ is not above it
    assert out["mean"] == pytest.approx(np.mean(s.numpy()))
    assert out["std"] == pytest.approx(np.std(s.numpy(), ddof=1))
    assert out["q95"] == pytest.approx(np.quantile(s.numpy(), 0.95))
    assert all(type(v) is float for v in out.values())
    with pytest.raises(ValueError, match="no similarities"):
        similarity_summary(torch.zeros(0), 0.5)


def _glyph_like(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 32, 32, generator=g) > 0.8).float()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_untrained_smallcnn_starts_far_from_random_directions(mode: str) -> None:
    emb = untrained_embeddings("smallcnn", _glyph_like(24), mode=mode, embedding_dim=64, pooling="avg")
    assert emb.shape == (24, 64)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(24))
    net = similarity_summary(pair_similarities(emb), 0.5)
    rnd = similarity_summary(random_direction_similarities(24, 64), 0.5)
    assert net["mean"] > 0.5 > rnd["q95"], (net, rnd)


def test_untrained_bninception_runs_on_upscaled_glyphs() -> None:
    emb = untrained_embeddings("bninception", _glyph_like(4), mode="eval", embedding_dim=16, image_size=96)
    assert emb.shape == (4, 16) and torch.isfinite(emb).all()
    assert float(pair_similarities(emb).min()) > 0.5


def test_untrained_embeddings_are_seeded_and_check_their_input() -> None:
    x = _glyph_like(6)
    a = untrained_embeddings("smallcnn", x, mode="train", embedding_dim=8, seed=5)
    b = untrained_embeddings("smallcnn", x, mode="train", embedding_dim=8, seed=5)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="mode"):
        untrained_embeddings("smallcnn", x, mode="test")
    with pytest.raises(ValueError, match="N×1×H×W"):
        untrained_embeddings("smallcnn", torch.zeros(2, 3, 32, 32), mode="eval")


def test_sample_batch_draws_distinct_items() -> None:
    data = [(torch.full((1, 2, 2), float(i)), i) for i in range(10)]
    batch = sample_batch(data, 5, seed=1)
    assert batch.shape == (5, 1, 2, 2) and len(set(batch[:, 0, 0, 0].tolist())) == 5
    with pytest.raises(ValueError, match="dataset's size"):
        sample_batch(data, 11)


def test_random_cosine_samples_equal_a_plain_loop_on_the_same_draws() -> None:
    from mslib.diagnostics import random_cosine_samples

    samples = random_cosine_samples([3, 5], 4, seed=2)
    generator = torch.Generator().manual_seed(2)  # one generator, dimensions drawn in the order given
    for d in (3, 5):
        x = torch.randn(4, d, generator=generator, dtype=torch.float64).tolist()
        expected = [sum(a * b for a, b in zip(x[i], x[j], strict=True))
                    / math.sqrt(sum(a * a for a in x[i]) * sum(b * b for b in x[j]))
                    for i in range(4) for j in range(4) if i != j]
        np.testing.assert_allclose(samples[d], expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="n ≥ 2"):
        random_cosine_samples([3], 1)


def test_untrained_similarity_study_panels_and_rows_agree() -> None:
    from types import SimpleNamespace

    from mslib.diagnostics import untrained_similarity_study

    images = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    net = SimpleNamespace(backbone="smallcnn", embedding_dim=8, pooling="avg", image_size=227)
    panels, rows = untrained_similarity_study(images, {"CNN": net}, 0.5, seed=1)
    groups = panels["CNN, d = 8"]
    assert list(groups) == ["random directions, d = 8", "untrained, train mode", "untrained, eval mode"]
    assert list(rows) == [("CNN", "random directions"), ("CNN", "train mode"), ("CNN", "eval mode")]
    np.testing.assert_array_equal(groups["random directions, d = 8"],
                                  random_direction_similarities(6, 8, seed=1).numpy())
    for (_, kind), group in zip(rows, groups, strict=True):
        sims = groups[group]
        assert sims.shape == (15,)  # the 6·5/2 pairs
        assert rows[("CNN", kind)]["mean"] == pytest.approx(sims.mean(), abs=1e-6)
        assert rows[("CNN", kind)]["share_above_lam"] == pytest.approx((sims > 0.5).mean())
