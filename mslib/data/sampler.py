"""The class-balanced P×K batch sampler of the official code (``RandomIdentitySampler``), seeded and resumable.

Semantics (``book/sources.md#src-official-recipe``): per class, take all its indices (a class with n < K images
keeps all n and is padded with K−n more drawn from them with replacement), shuffle them and chunk them into groups
of K; each batch draws P distinct classes among those with a chunk left, without replacement, and takes one chunk
from each; when fewer than P classes have chunks left, all chunks are prepared afresh. Exactly ``num_batches``
batches are yielded.

Under ``torchrun`` the P×K batch is the *global* batch: every process builds the same sampler (same seed) and
takes its share of each batch's classes, ``P/W`` consecutive classes × K images on each of ``W`` processes
(``rank``, ``world_size``), so the processes' shares, concatenated in rank order, are the single-process batch.

Resume: the batch sequence is a pure function of ``(labels, p, k, seed)``, so :meth:`PKSampler.set_start` (or
:meth:`~PKSampler.load_state_dict`) fast-forwards the random stream to batch ``i`` and the run continues with
exactly the batches an uninterrupted run would have produced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler


class PKSampler(Sampler[list[int]]):
    """Batches of ``p`` classes × ``k`` images (lists of ``p*k`` dataset indices), ``num_batches`` of them.

    Use as ``DataLoader(ds, batch_sampler=PKSampler(ds.labels, p=16, k=5, num_batches=1800))``. With
    ``world_size`` W > 1 each batch is this process's share: classes ``rank·P/W … (rank+1)·P/W − 1`` of the global
    batch (``P/W × k`` indices); ``p`` must be divisible by W.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, p: int, k: int, num_batches: int, seed: int = 0,
                 *, rank: int = 0, world_size: int = 1) -> None:
        labels = np.asarray(labels).reshape(-1)
        if p < 1 or k < 1 or num_batches < 0:
            raise ValueError(f"need p >= 1, k >= 1, num_batches >= 0; got p={p}, k={k}, num_batches={num_batches}")
        check_global_batch(p, world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}) for world size {world_size}, got {rank}")
        self.classes, inverse = np.unique(labels, return_inverse=True)
        if len(self.classes) < p:
            raise ValueError(f"p={p} classes per batch, but the labels hold only {len(self.classes)} classes")
        self.index_by_class = [np.flatnonzero(inverse == c) for c in range(len(self.classes))]
        self.p, self.k, self.num_batches, self.seed = int(p), int(k), int(num_batches), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.start = 0  # index of the next batch to yield
        self._fingerprint = hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]

    def __len__(self) -> int:
        return self.num_batches - self.start

    def _prepare(self, rng: np.random.Generator) -> tuple[list[list[np.ndarray]], list[int]]:
        chunks = []
        for idxs in self.index_by_class:
            if len(idxs) < self.k:  # the official padding: every original image, plus K−n drawn with replacement
                idxs = np.concatenate([idxs, rng.choice(idxs, size=self.k - len(idxs), replace=True)])
            idxs = rng.permutation(idxs)
            n = len(idxs) // self.k
            chunks.append([idxs[i * self.k : (i + 1) * self.k] for i in range(n)][::-1])  # pop() from the end
        return chunks, list(range(len(self.classes)))

    def _batches(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(self.seed)
        chunks, available = self._prepare(rng)
        for _ in range(self.num_batches):
            if len(available) < self.p:
                chunks, available = self._prepare(rng)
            chosen = rng.choice(len(available), size=self.p, replace=False)
            labels = [available[i] for i in chosen]
            batch: list[int] = []
            for c in labels:
                batch.extend(int(i) for i in chunks[c].pop())
                if not chunks[c]:
                    available.remove(c)
            yield batch

    def __iter__(self) -> Iterator[list[int]]:
        start, self.start = self.start, 0
        share = self.p // self.world_size * self.k  # this process's indices of each global batch
        for i, batch in enumerate(self._batches()):
            if i >= start:
                yield batch[self.rank * share : (self.rank + 1) * share]

    def set_start(self, batch_index: int) -> None:
        """Make the next iteration begin at batch ``batch_index`` (the number of batches already consumed)."""
        if not 0 <= batch_index <= self.num_batches:
            raise ValueError(f"batch_index must be in [0, {self.num_batches}], got {batch_index}")
        self.start = int(batch_index)

    def state_dict(self, batches_done: int) -> dict[str, Any]:
        """State to store in a checkpoint after ``batches_done`` batches were consumed by training.

        Pass the training step count, not what a prefetching ``DataLoader`` has drawn from the sampler.
        """
        return {"p": self.p, "k": self.k, "num_batches": self.num_batches, "seed": self.seed,
                "batches_done": int(batches_done), "labels_fingerprint": self._fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: the next iteration yields batch ``batches_done`` onwards."""
        mine = self.state_dict(0)
        for key in ("p", "k", "num_batches", "labels_fingerprint"):
            if state[key] != mine[key]:
                raise ValueError(f"sampler state does not match this sampler: {key}={state[key]!r}, "
                                 f"expected {mine[key]!r} (different labels or P/K/num_batches)")
        self.seed = int(state["seed"])
        self.set_start(int(state["batches_done"]))


def check_global_batch(p: int, world_size: int) -> None:
    """Raise a clear error unless the ``p`` classes of a global P×K batch split evenly over ``world_size`` processes."""
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    if p % world_size:
        raise ValueError(f"p={p} classes per global batch cannot be split evenly over {world_size} processes "
                         f"(world size {world_size}): choose p divisible by {world_size} (or another --nproc_per_node)")
