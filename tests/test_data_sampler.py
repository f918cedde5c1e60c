"""PKSampler: the official RandomIdentitySampler invariants, determinism and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mslib.data import PKSampler


def _labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 12, size=30)  # includes classes with fewer than k images
    return np.repeat(np.arange(30) * 7 + 3, sizes)  # arbitrary (non-contiguous) label values


def test_batches_have_p_distinct_classes_of_k() -> None:
    labels = _labels()
    sampler = PKSampler(labels, p=8, k=4, num_batches=50, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 50
    for batch in batches:
        assert len(batch) == 32
        groups = labels[batch].reshape(8, 4)
        assert (groups == groups[:, :1]).all(), "each consecutive group of k shares one class"
        assert len(set(groups[:, 0].tolist())) == 8, "p distinct classes"


def test_small_classes_are_padded_with_replacement_and_large_ones_without() -> None:
    labels = np.array([0] * 2 + [1] * 10 + [2] * 10 + [3] * 10)
    batches = list(PKSampler(labels, p=4, k=5, num_batches=20, seed=0))
    for batch in batches:
        chunk0 = [i for i in batch if labels[i] == 0]
        assert len(chunk0) == 5 and set(chunk0) == {0, 1}, "both originals, plus 3 drawn from them"
        for c in (1, 2, 3):
            chunk = [i for i in batch if labels[i] == c]
            assert len(chunk) == 5 and len(set(chunk)) == 5


@pytest.mark.parametrize("seed", range(5))
def test_padding_keeps_every_original_image(seed: int) -> None:
    """The official padding: a class of n < K images contributes all n, plus K−n drawn from the class."""
    k = 6
    sizes = [1, 2, 3, 4, 5, 6, 9]  # every n < k, and two classes that need no padding
    labels = np.repeat(np.arange(len(sizes)) * 10, sizes)
    sampler = PKSampler(labels, p=len(sizes), k=k, num_batches=12, seed=seed)
    for batch in sampler:
        for c, n in zip(np.arange(len(sizes)) * 10, sizes, strict=True):
            chunk = [i for i in batch if labels[i] == c]
            originals = set(np.flatnonzero(labels == c).tolist())
            assert len(chunk) == k and set(chunk) <= originals, "the extra images come from the class"
            if n <= k:  # one chunk per round: all of a small class's images are in it
                assert set(chunk) == originals, f"class of {n} images lost an original"
                assert len(chunk) - len(set(chunk)) == k - n, "exactly K−n repeats"


def test_padding_draws_are_fixed_by_the_seed() -> None:
    labels = np.repeat(np.arange(8), [1, 2, 2, 3, 3, 4, 4, 4])  # every class padded to k=5

    def run(seed: int) -> list[list[int]]:
        return list(PKSampler(labels, p=4, k=5, num_batches=40, seed=seed))

    assert run(3) == run(3)
    assert run(3) != run(4)
    chunks_of_class_3 = {tuple(sorted(i for i in b if labels[i] == 3)) for b in run(3)} - {()}
    assert len(chunks_of_class_3) > 1, "the K−n repeats are drawn afresh each round"


def test_every_chunk_used_before_reshuffle() -> None:
    labels = np.repeat(np.arange(4), 10)  # 2 chunks per class, p=4: one round is 2 batches
    batches = list(PKSampler(labels, p=4, k=5, num_batches=4, seed=5))
    assert sorted(i for b in batches[:2] for i in b) == list(range(40))
    assert sorted(i for b in batches[2:] for i in b) == list(range(40))
    assert batches[:2] != batches[2:], "the second round is reshuffled"


def test_seeded_and_different_seeds_differ() -> None:
    labels = _labels()
    a = list(PKSampler(labels, 4, 3, 30, seed=7))
    assert a == list(PKSampler(labels, 4, 3, 30, seed=7))
    assert a != list(PKSampler(labels, 4, 3, 30, seed=8))


@pytest.mark.parametrize("stop", [0, 1, 13, 29, 30])
def test_resume_reproduces_uninterrupted_run(stop: int) -> None:
    labels = _labels()
    full = list(PKSampler(labels, 4, 3, 30, seed=2))
    first = PKSampler(labels, 4, 3, 30, seed=2)
    done = [b for _, b in zip(range(stop), first, strict=False)]
    state = first.state_dict(batches_done=stop)
    resumed = PKSampler(labels, 4, 3, 30, seed=0)
    resumed.load_state_dict(state)
    assert len(resumed) == 30 - stop
    assert done + list(resumed) == full
    other = PKSampler(labels, 4, 3, 30, seed=2)
    other.set_start(stop)
    assert list(other) == full[stop:]
    assert list(other) == full, "the next pass starts again at batch 0"


def test_state_mismatch_and_bad_arguments() -> None:
    labels = _labels()
    state = PKSampler(labels, 4, 3, 30).state_dict(3)
    with pytest.raises(ValueError, match="does not match"):
        PKSampler(labels[:-1], 4, 3, 30).load_state_dict(state)
    with pytest.raises(ValueError, match="only 2 classes"):
        PKSampler([0, 0, 1], p=3, k=2, num_batches=1)


def test_works_as_dataloader_batch_sampler() -> None:
    labels = np.repeat(np.arange(6), 4)
    ds = torch.utils.data.TensorDataset(torch.arange(24), torch.from_numpy(labels))
    loader = torch.utils.data.DataLoader(ds, batch_sampler=PKSampler(labels, p=3, k=2, num_batches=5))
    batches = list(loader)
    assert len(batches) == 5 and all(b[0].shape == (6,) for b in batches)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_process_shares_concatenate_to_the_global_batch(world: int) -> None:
    """Under torchrun each rank takes P/W consecutive classes of the same global batch (same seed everywhere)."""
    labels = _labels()
    full = list(PKSampler(labels, p=8, k=3, num_batches=25, seed=11))
    shares = [list(PKSampler(labels, p=8, k=3, num_batches=25, seed=11, rank=r, world_size=world))
              for r in range(world)]
    for i, batch in enumerate(full):
        parts = [s[i] for s in shares]
        assert all(len(part) == 8 // world * 3 for part in parts)
        assert [j for part in parts for j in part] == batch
        for part in parts:
            groups = labels[part].reshape(-1, 3)
            assert (groups == groups[:, :1]).all(), "a share holds whole classes (k images each)"


@pytest.mark.parametrize("stop", [0, 7, 25])
def test_process_share_resumes_exactly(stop: int) -> None:
    labels = _labels()
    full = list(PKSampler(labels, 8, 3, 25, seed=4, rank=1, world_size=2))
    resumed = PKSampler(labels, 8, 3, 25, seed=0, rank=1, world_size=2)
    resumed.load_state_dict(PKSampler(labels, 8, 3, 25, seed=4).state_dict(stop))
    assert list(resumed) == full[stop:]


def test_p_not_divisible_by_the_world_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"p=6 .*world size 4"):
        PKSampler(_labels(), p=6, k=3, num_batches=2, rank=0, world_size=4)
    with pytest.raises(ValueError, match="rank must be in"):
        PKSampler(_labels(), p=6, k=3, num_batches=2, rank=3, world_size=3)
