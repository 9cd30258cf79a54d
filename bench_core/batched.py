"""Batched optimizers: one optimizer object that steps K trials at once (public API for plugin authors).

A sweep's trials often differ only in learning rate, other hyperparameters and seed. optbench
runs such a group as one computation (:mod:`bench_core.vectorized`): every parameter of the
model carries a leading *trial dimension* of size K (row k belongs to trial k), one forward and
backward pass fills every row's gradient, and a :class:`BatchedOptimizer` updates all rows in
one call. An optimizer plugin opts in by giving its :class:`~bench_core.OptimizerSpec` a
``batched`` factory; without one its trials run one by one, as before.

The contract, row by row: a batched optimizer must produce, for each trial k, the numbers its
``torch.optim`` form produces for that trial alone (same update rule, same order of floating-
point operations where it can). The built-in ones (``bench_core.plugins.batched_optimizers``)
match ``torch.optim`` bit for bit on the CPU; ``tests/test_batched_optimizers.py`` shows how to
check yours against your unbatched optimizer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["BatchedOptimizer", "per_trial"]


class BatchedOptimizer(ABC):
    """Updates K trials' parameters at once; row k of every tensor belongs to trial k.

    ``params``: leaf tensors of shape ``(K, *shape)``, one per model parameter, in the model's
    ``named_parameters()`` order. Before each :meth:`step` the harness fills their ``.grad`` with
    each trial's gradient (row k: trial k's).

    ``hyperparams``: every hyperparameter of the optimizer except ``lr``. A float hyperparameter
    arrives as a float64 tensor of shape ``(K,)`` on the parameters' device, row k holding trial
    k's value exactly as the unbatched optimizer would receive it (a Python float). Integer and
    categorical hyperparameters are the same for every trial of a group and arrive as their
    plain value.

    Keep per-trial state in :attr:`state` (one dict per parameter, tensors with the leading trial
    dimension): :meth:`keep` then narrows it for you when some trials leave the group.
    """

    def __init__(self, params: list[torch.Tensor], hyperparams: Mapping[str, Any]) -> None:
        self.params = list(params)
        self.hyperparams = dict(hyperparams)
        #: Per-parameter state, ``state[i][name]`` a tensor of shape ``(K, ...)``; created lazily is fine.
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]

    @abstractmethod
    def step(self, lr: torch.Tensor) -> None:
        """Update every row of :attr:`params` in place from its ``.grad``.

        ``lr``: a float64 tensor of shape ``(K,)`` on the parameters' device, each trial's learning
        rate for this step (its base rate times the schedule's factor), the value its unbatched
        optimizer would find in ``param_group["lr"]``.
        """

    def keep(self, rows: torch.Tensor, params: list[torch.Tensor]) -> None:
        """Carry on with trials ``rows`` only (indices into the current K), over ``params`` (their new stacks).

        Called when members leave the group (diverged, stopped at their target). The default narrows
        :attr:`hyperparams` and every tensor in :attr:`state` whose first dimension is the trial one.
        Override it if you keep per-trial tensors elsewhere.
        """
        count = len(self.params[0]) if self.params else 0
        self.params = list(params)
        self.hyperparams = {name: _narrow(value, rows, count) for name, value in self.hyperparams.items()}
        self.state = [{name: _narrow(value, rows, count) for name, value in entry.items()} for entry in self.state]


def per_trial(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` (shape ``(K,)``) cast to ``like``'s dtype and shaped ``(K, 1, ..., 1)`` to broadcast against it.

    The cast rounds each value as ``torch.optim`` rounds a Python float scalar applied to a tensor of that dtype.
    """
    return values.to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))


def _narrow(value: Any, rows: torch.Tensor, count: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() > 0 and len(value) == count:
        return value.index_select(0, rows.to(value.device))
    return value
