"""Closure optimizers for the tests: a toy sharpness-aware minimiser and planted faults.

``ToySAM`` is sharpness-aware minimisation (Foret et al. 2021) reduced to its two
evaluations: the gradient g at x, then the gradient at x + rho g / ||g||, used for an SGD
step from x. It calls the closure exactly twice per step and records each call, so the
tests can count evaluations independently of optbench.
"""

from __future__ import annotations

import torch


class ToySAM(torch.optim.Optimizer):
    """SAM with plain SGD as the base step; two closure calls per step, each recorded in ``calls``."""

    def __init__(self, params, lr: float = 0.01, rho: float = 0.05) -> None:
        super().__init__(params, {"lr": lr, "rho": rho})
        self.calls = 0

    def _norm(self) -> torch.Tensor:
        grads = [p.grad.norm() for group in self.param_groups for p in group["params"] if p.grad is not None]
        return torch.stack(grads).norm() + 1e-12 if grads else torch.zeros(())

    @torch.no_grad()
    def step(self, closure):
        loss = self._evaluate(closure)
        norm = self._norm()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                e = p.grad * (group["rho"] / norm)
                self.state[p]["e"] = e
                p.add_(e)  # to the sharpest nearby point
        self._evaluate(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or "e" not in self.state[p]:
                    continue
                p.sub_(self.state[p].pop("e"))  # back to x, then descend along the gradient taken there
                p.add_(p.grad, alpha=-group["lr"])
        return loss

    def _evaluate(self, closure):
        self.calls += 1
        with torch.enable_grad():
            return closure()


class IgnoresClosureGradient(ToySAM):
    """Calls the closure, then steps along a fixed direction: its gradient never reaches the update."""

    @torch.no_grad()
    def step(self, closure):
        loss = self._evaluate(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(torch.ones_like(p), alpha=-group["lr"])
        return loss


class NeverCallsClosure(ToySAM):
    """Declared as needing a closure, but steps on whatever ``.grad`` holds and never evaluates the loss."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])


class UnguardedSAM(ToySAM):
    """ToySAM without the guard on the gradient norm: all-zero gradients give 0 / 0 = NaN."""

    def _norm(self) -> torch.Tensor:
        return super()._norm() - 1e-12
