"""A faulty optimizer plugin for the conformance-kit tests: it ignores its learning rate.

Loaded as a class by the kit tests, as a ``--plugins`` file by the ``check-plugin`` tests,
and copied into an author's test folder by the pytest-plugin test.
"""

import torch

from bench_core import OptimizerSpec, hookimpl


class IgnoresLr(torch.optim.SGD):
    """Always steps with lr 0.01, whatever it was given."""

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.data.add_(p.grad, alpha=-0.01)


@hookimpl
def optbench_optimizers():
    return [OptimizerSpec("stubborn", IgnoresLr, lr=0.05)]
