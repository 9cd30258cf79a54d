"""One optimizer step through a closure, the way the runner and the conformance kit both take it.

Optimizers such as ``torch.optim.LBFGS`` (a line search) or sharpness-aware minimisation
(a gradient at a perturbed point) evaluate the loss more than once per step, so their
``step`` takes a closure that re-evaluates it. An :class:`~bench_core.specs.OptimizerSpec`
with ``needs_closure=True`` is stepped with :func:`closure_step`, which counts every
evaluation: the honest cost of such a step is its gradient evaluations, not one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["closure_step"]


def closure_step(optimizer: torch.optim.Optimizer,
                 compute_loss: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Call ``optimizer.step(closure)``; return the first loss the closure computed and how many times it ran.

    Each call of the closure zeroes the gradients, computes ``compute_loss()`` (on the same
    batch every time: the caller binds it), backpropagates and returns the loss. The first
    evaluation is at the point the step starts from, so its loss is the one to record for the
    step, as an ordinary step records the loss it backpropagates. The loss comes back as a
    detached tensor, not a float, so that nothing here waits for the device.

    :raises RuntimeError: when ``step`` never called the closure (the step has no loss then).
    """
    losses: list[torch.Tensor] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():  # some optimizers call the closure inside their own no_grad step
            loss = compute_loss()
            loss.backward()
        losses.append(loss.detach())
        return loss

    optimizer.step(closure)
    if not losses:
        raise RuntimeError(f"{type(optimizer).__name__}.step(closure) never called the closure: an optimizer "
                           "declared with needs_closure=True must evaluate the loss through it")
    return losses[0], len(losses)
