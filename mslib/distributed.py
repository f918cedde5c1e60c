"""Multi-GPU training with ``torch.distributed`` (DDP via ``torchrun``): ``p × k`` is the global batch.

Every process builds the same P×K sampler (same seed) and embeds its share of each batch, ``P/W`` classes × K
images (:class:`mslib.data.PKSampler` with ``rank``/``world_size``). :func:`gather_embeddings` all-gathers the
embeddings (differentiably) and labels in rank order, which is the single-process batch, and every process computes
the loss ``L`` of that *global* batch (its square similarity matrix, so the self-pairs are the diagonal, excluded
by index as in a single process). The all-gather's backward sums the ``W`` identical gradients ``∂L/∂e_r`` the
processes send to each process's embeddings ``e_r``, and DDP divides the parameter gradients by ``W``, so the
update equals the single-process update on the global batch (``tests/test_distributed.py`` checks batches, loss
and update). BatchNorm statistics are per process unless frozen (``freeze_bn``) or synchronised
(``SyncBatchNorm``, which :func:`mslib.run.trainer.fit` uses on CUDA). The ``W``-fold repeated loss costs
``O((P·K)²)`` per process, negligible beside the backbone.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1); return whether it is distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return is_distributed()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def gather_embeddings(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather ``(embeddings, labels)`` from every process, in rank order (the global batch).

    Every process must contribute the same number of rows (a fixed P×K batch does). The embeddings keep their
    graph: the backward of ``torch.distributed.nn.functional.all_gather`` returns to each process the summed
    gradient of all processes' losses with respect to its own rows.
    """
    if not is_distributed():
        return embeddings, labels
    from torch.distributed.nn.functional import all_gather

    sizes = [torch.zeros(1, dtype=torch.long, device=labels.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([labels.numel()], device=labels.device))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(f"every process needs the same batch size to gather embeddings, got {[int(s) for s in sizes]}")
    all_embeddings = torch.cat(all_gather(embeddings), dim=0)
    all_labels = [torch.empty_like(labels) for _ in range(world_size())]
    dist.all_gather(all_labels, labels)
    return all_embeddings, torch.cat(all_labels)


def gather_objects(obj: object) -> list[object]:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` in a single process. All processes must call it."""
    if not is_distributed():
        return [obj]
    out: list[object] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
