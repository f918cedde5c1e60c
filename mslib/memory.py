"""Cross-batch memory (XBM; Wang, Zhang, Huang & Scott, CVPR 2020): a pair loss over the batch against a FIFO of
past embeddings.

Embeddings drift slowly once a model has warmed up, so the embeddings of the last ``M`` samples (detached) are
informative negatives and positives for the current batch. :class:`CrossBatchMemory` wraps any
:class:`mslib.losses.PairLoss`: from ``start_iteration`` on it puts the batch into the memory, then takes the loss
of the batch (rows) against the whole memory (columns, the batch included) through the rectangular ``sim`` path;
each query's own copy is excluded by index (``self_index``, :func:`mslib.similarity.self_columns`). A miner of the
wrapped loss (e.g. MS mining) mines the rectangular matrix. The memory, its write position and the iteration count
are buffers, so ``state_dict`` holds them and a resumed run continues exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mslib.losses import PairLoss

__all__ = ["CrossBatchMemory"]


class CrossBatchMemory(torch.nn.Module):
    """``forward(embeddings, labels)``: ``loss`` of the batch against a memory of the last ``size`` embeddings.

    Layout as pytorch-metric-learning 2.9's ``CrossBatchMemory`` (a ring buffer written from slot 0; until it is
    full only the written slots are used), so both give the same values. Before ``start_iteration`` (counted in
    calls) the memory stays empty and the loss is ``loss`` of the batch against itself, as the XBM paper enables the
    memory only after a warm-up. Every call in training mode writes to the memory; in eval mode it reads only.

    The memory holds the batch too, so by default the loss is ``weight · L(B, M)`` (PML's form, ``weight = 1``).
    ``batch_loss=True`` adds the batch's own loss, ``L(B, B) + weight · L(B, M)``, as the XBM authors' trainer does
    (``book/sources.md#src-xbm``; their ``XBM.WEIGHT`` is ``weight``).
    """

    def __init__(self, loss: PairLoss, size: int, embedding_dim: int, *, start_iteration: int = 0,
                 weight: float = 1.0, batch_loss: bool = False, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if not isinstance(loss, PairLoss):
            raise ValueError(f"a cross-batch memory serves pair losses (mslib.losses.PairLoss), not "
                             f"{type(loss).__name__}")
        if size < 1 or embedding_dim < 1 or start_iteration < 0:
            raise ValueError(f"need size ≥ 1, embedding_dim ≥ 1, start_iteration ≥ 0; got {size}, {embedding_dim}, "
                             f"{start_iteration}")
        self.loss, self.size, self.start_iteration = loss, size, start_iteration
        self.weight, self.batch_loss = float(weight), bool(batch_loss)
        self.register_buffer("embedding_memory", torch.zeros(size, embedding_dim, dtype=dtype))
        self.register_buffer("label_memory", torch.zeros(size, dtype=torch.long))
        self.register_buffer("position", torch.zeros((), dtype=torch.long))  # the next slot written
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # filled slots, at most size
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))  # training calls so far

    @torch.no_grad()
    def enqueue(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Write the batch (detached) over the oldest slots; returns the slot of each row (wrapping around)."""
        n = embeddings.shape[0]
        if n > self.size:
            raise ValueError(f"a batch of {n} does not fit a memory of {self.size}: use size ≥ the batch size")
        if embeddings.shape[1] != self.embedding_memory.shape[1]:
            raise ValueError(f"embeddings have dimension {embeddings.shape[1]}, the memory "
                             f"{self.embedding_memory.shape[1]}")
        slots = (self.position + torch.arange(n, device=self.position.device)) % self.size
        self.embedding_memory[slots] = embeddings.detach().to(self.embedding_memory.dtype)
        self.label_memory[slots] = labels.to(self.label_memory.device, torch.long)
        self.position.copy_((self.position + n) % self.size)
        self.count.copy_(torch.clamp(self.count + n, max=self.size))
        return slots

    def contents(self) -> tuple[Tensor, Tensor]:
        """The filled part of the memory, ``(embeddings, labels)``, in slot order."""
        n = int(self.count)
        return self.embedding_memory[:n], self.label_memory[:n]

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if not self.training:
            return self._against_memory(embeddings, labels, None)
        active = int(self.iteration) >= self.start_iteration
        self.iteration += 1
        if not active:
            return self.loss(embeddings, labels)
        memory_loss = self.weight * self._against_memory(embeddings, labels, self.enqueue(embeddings, labels))
        return self.loss(embeddings, labels) + memory_loss if self.batch_loss else memory_loss

    def _against_memory(self, embeddings: Tensor, labels: Tensor, slots: Tensor | None) -> Tensor:
        ref, ref_labels = self.contents()
        if ref.shape[0] == 0:
            return self.loss(embeddings, labels)
        own = slots if slots is not None else torch.full_like(labels, -1, dtype=torch.long)
        return self.loss(embeddings, labels, ref_embeddings=ref.to(embeddings.dtype),
                         ref_labels=ref_labels.to(labels.device), self_index=own.to(labels.device))

    def extra_repr(self) -> str:
        return (f"size={self.size}, start_iteration={self.start_iteration}, weight={self.weight}, "
                f"batch_loss={self.batch_loss}")
