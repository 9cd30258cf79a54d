"""The one data order every built-in in-memory problem uses, public so plugins can share it.

Exactly (so a plain PyTorch loop can reproduce a trial's batches)::

    n = len(tensors[0])
    if batch_size == n:                  # full batch: the stored tensors themselves, every step
        while True:
            yield tuple(tensors)
    while True:                          # one pass per epoch
        perm = torch.randperm(n, generator=generator, device=device)
        for k in range(n // batch_size): # the last partial batch is dropped
            idx = perm[k * batch_size:(k + 1) * batch_size]
            yield tuple(t[idx] for t in tensors)

Full batch. When one batch is the whole set, shuffling it would only reorder its rows, and
the order of the rows within a batch does not change a mean loss (or its gradient) except by
floating-point rounding of the sum. So a full batch is the stored tensors as they are, in
their stored order: no ``randperm``, no indexing, no copy of the whole set at every step,
and the generator is not drawn from. The batch is then the problem's own data, not a copy:
a loss must not modify it in place (none of the built-in problems does). A full-batch
trial run before this rule (which shuffled the rows every step) therefore differs from one
run now by floating-point rounding only (on the convex problems, in the 8th or 9th
significant digit of the loss).

Mini-batches. One ``randperm`` per epoch, on the tensors' device, and one gather
``t[idx]`` per tensor per batch (computed as ``t.index_select(0, idx)``, the same rows with
less overhead): the indices never leave the device, so drawing a batch
makes no host round trip (no synchronisation). Dropping the partial batch keeps every
step the same size (so the gradient noise and the step cost are the same at every step)
and matches the runner, which counts ``n // batch_size`` steps per epoch.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterator

import torch

__all__ = ["shuffled_batches", "stacked_shuffled_batches"]


def shuffled_batches(tensors: tuple[torch.Tensor, ...], batch_size: int,
                     generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless same-sized batches of rows of ``tensors`` (all on one device) in the order above.

    With ``batch_size`` equal to the number of rows every batch is ``tuple(tensors)`` itself.

    Raises ``ValueError`` right away (not at the first ``next``) when ``batch_size`` is not
    a positive integer or exceeds the number of rows, since no full batch could be drawn.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    n = len(tensors[0])
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training samples "
                         "(the last partial batch of an epoch is dropped, so no batch would be drawn)")
    if batch_size == n:  # full batch: the data as stored, every step (see the module docstring)
        return itertools.repeat(tuple(tensors))
    return _epochs(tensors, int(batch_size), generator)


def _epochs(tensors: tuple[torch.Tensor, ...], batch_size: int,
            generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
    n = len(tensors[0])
    full = n // batch_size
    while True:
        perm = torch.randperm(n, generator=generator, device=tensors[0].device)
        for idx in perm[: full * batch_size].view(full, batch_size):
            yield tuple(t.index_select(0, idx) for t in tensors)  # t[idx], with less overhead


def stacked_shuffled_batches(tensors: tuple[torch.Tensor, ...], batch_size: int,
                             generators: list[torch.Generator]) -> Iterator[tuple[torch.Tensor, ...]]:
    """K trials' :func:`shuffled_batches`, row k drawn with ``generators[k]``, stacked: shapes ``(K, batch, ...)``.

    The same rows in the same order as K separate calls, drawn with one gather per step: each epoch every
    trial draws its own permutation, and step j takes columns ``j * batch_size ...`` of all of them at once.
    A full batch is the stored tensors themselves, seen K times (an expanded view, no copy).
    """
    shuffled_batches(tensors, batch_size, generators[0])  # the same checks, the same errors
    return _stacked_epochs(tensors, int(batch_size), generators)


def _stacked_epochs(tensors: tuple[torch.Tensor, ...], batch_size: int,
                    generators: list[torch.Generator]) -> Iterator[tuple[torch.Tensor, ...]]:
    n = len(tensors[0])
    full = n // batch_size
    count = len(generators)
    if batch_size == n:
        shared = tuple(t.expand(count, *t.shape) for t in tensors)
        while True:
            yield shared
    while True:
        perms = torch.stack([torch.randperm(n, generator=g, device=tensors[0].device) for g in generators])
        for idx in perms[:, : full * batch_size].reshape(count, full, batch_size).unbind(1):
            rows = idx.reshape(-1)
            yield tuple(t.index_select(0, rows).view(count, batch_size, *t.shape[1:]) for t in tensors)
