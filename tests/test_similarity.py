"""mslib.similarity: the one square/rectangular rule (self_columns) and the pair masks built on it."""

from __future__ import annotations

import pytest
import torch

from mslib.similarity import pair_masks, reference_is_batch, self_columns

Y = torch.tensor([0, 0, 1, 1, 1, 2])


def _loop_masks(labels, ref, own):
    """Positives/negatives written per entry: same label and not the query's own copy ``own[i]``."""
    pos = torch.zeros(len(labels), len(ref), dtype=torch.bool)
    neg = torch.zeros(len(labels), len(ref), dtype=torch.bool)
    for i in range(len(labels)):
        for j in range(len(ref)):
            pos[i, j] = bool(labels[i] == ref[j]) and j != own[i]
            neg[i, j] = bool(labels[i] != ref[j])
    return pos, neg


def test_no_reference_is_the_batch_itself() -> None:
    assert torch.equal(self_columns(Y), torch.arange(6))
    assert torch.equal(pair_masks(Y)[0], _loop_masks(Y, Y, range(6))[0])
    assert reference_is_batch(Y)
    assert not bool(pair_masks(Y)[0].diagonal().any()), "the diagonal is never a positive pair"


@pytest.mark.parametrize("ref", [Y, Y.clone()], ids=["identity", "clone"])
def test_square_with_ref_labels_must_say_where_the_copies_are(ref: torch.Tensor) -> None:
    # neither identity nor equal values decide: N-pair's anchors x positives is square with equal labels too
    with pytest.raises(ValueError, match="pass self_index"):
        pair_masks(Y, ref)
    diagonal, none = torch.arange(6), torch.full((6,), -1)
    assert torch.equal(pair_masks(Y, ref, self_index=diagonal)[0], pair_masks(Y)[0])
    assert torch.equal(pair_masks(Y, ref, self_index=none)[0], Y[:, None] == ref[None, :])
    assert reference_is_batch(Y, ref, diagonal) and not reference_is_batch(Y, ref, none)


def test_rectangular_without_and_with_self_index() -> None:
    ref = torch.tensor([2, 0, 0, 1, 1, 1, 2, 0])  # a memory: queries 0..5 sit in columns 1..6
    assert torch.equal(self_columns(Y, ref), torch.full((6,), -1))
    assert torch.equal(pair_masks(Y, ref)[0], Y[:, None] == ref[None, :])
    own = torch.tensor([1, 2, 3, 4, 5, 6])
    pos, neg = pair_masks(Y, ref, self_index=own)
    want_pos, want_neg = _loop_masks(Y, ref, own.tolist())
    assert torch.equal(pos, want_pos) and torch.equal(neg, want_neg)
    assert bool(pos[0, 2]) and not bool(pos[0, 1]), "query 0 keeps the other label-0 column, not its copy"
    assert not reference_is_batch(Y, ref, own)
    partly = torch.tensor([1, -1, 3, -1, 5, -1])
    assert torch.equal(pair_masks(Y, ref, self_index=partly)[0], _loop_masks(Y, ref, partly.tolist())[0])


def test_bad_self_index() -> None:
    ref = torch.tensor([2, 0, 0, 1, 1, 1, 2, 0])
    with pytest.raises(ValueError, match="self_index has length 3 but there are 6 queries"):
        pair_masks(Y, ref, self_index=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"-1 or a column in \[0, 8\)"):
        pair_masks(Y, ref, self_index=torch.tensor([1, 2, 3, 4, 5, 8]))
    with pytest.raises(ValueError, match="label differs"):
        pair_masks(Y, ref, self_index=torch.tensor([0, 2, 3, 4, 5, 6]))
    with pytest.raises(ValueError, match="integer tensor"):
        pair_masks(Y, ref, self_index=torch.ones(6))
