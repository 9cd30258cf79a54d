"""Batched forms of the built-in optimizers: K trials that differ in hyperparameters step in one call.

Each class here is the :class:`bench_core.BatchedOptimizer` of one built-in optimizer (``torch.optim``'s
SGD, Adam, AdamW, RMSprop and Adagrad, and optbench's own Lion). Row k of every parameter, gradient and
state tensor belongs to trial k, and every row gets, **bit for bit** on the CPU in float32, the numbers
its unbatched optimizer computes for that trial alone with Python-float hyperparameters (torch 2.13's
default single-tensor implementations, ``torch.optim.*._single_tensor_*``). That is what lets a sweep
run a group of trials as one computation without changing a single result.

How the rounding is matched. ``torch.optim`` applies a Python-float hyperparameter ``h`` to a float32
tensor by rounding it to float32 inside the kernel; a batched form needs one value per row instead, so
it passes a float32 column ``per_trial(h)`` of shape ``(K, 1, ...)`` and must pick a tensor-tensor
operation that rounds as the tensor-scalar one does:

* Scalar expressions (``1 - beta1``, ``lr / (1 - beta1 ** step)``, ``(1 - beta2 ** step) ** 0.5``,
  ``1 - lr * weight_decay``) are evaluated per trial **in float64**, exactly as ``torch.optim`` writes
  them, and only then cast to float32: float64 tensor ``+ - * /`` round as Python's float operations do
  (both IEEE double, one operation at a time). Python's ``**`` calls the C library's ``pow``; a float64
  tensor ``pow`` need not round like it, so powers are computed in Python, once per distinct value
  (:meth:`_Batched.per_value`; a group usually shares its betas), never on tensors.
* ``t.mul_(h)``, ``t / h``, ``t.add_(h)`` (scalar ``other``): the same operation with the column.
* ``t.add_(x, alpha=h)`` is ``t + h * x``, rounded **once** where the CPU kernel fuses the multiply-add
  (torch 2.13's AVX2 kernels do, in their vector and scalar loops alike) and twice where it does not
  (``ATEN_CPU_CAPABILITY=default``). ``torch.addcmul(t, x, column)`` (``self + 1 * t1 * t2`` in its kernel)
  was found to round exactly like it on both; ``t + column * x`` rounds twice and drifts on AVX2.
* ``t.addcmul_(x, y, value=h)`` is ``t + (h * x) * y``: ``torch.addcmul(t, x * column, y)``.
* ``t.addcdiv_(x, y, value=h)`` is ``t + (h * x) / y``: ``torch.addcdiv(t, x * column, y)``.
* ``t.lerp_(x, h)``: ``torch.lerp(t, x, column)``; the tensor-weight kernel rounds like the scalar one.
* Branches on a hyperparameter (``if momentum != 0``, ``if momentum > 0``, ``if weight_decay != 0``)
  are taken per row with ``torch.where`` between the two forms, so a row whose value is 0 gets the
  branch-free numbers (signed zeros and all) even when its neighbours take the branch.
* Step counts are kept like ``torch.optim`` keeps them where it matters (Adam's and Adagrad's ``step``
  is a float32 0-dim tensor read as a Python float): all trials of a group step together, so one count
  per parameter serves them all, and :meth:`BatchedOptimizer.keep` leaves it alone.

``tests/test_batched_optimizers.py`` checks every row of every built-in spec against its own
``torch.optim`` instance, by bit pattern, over 60 steps of gradients from 1e-30 to 1e30 (with exact
and negative zeros), a learning rate that changes every step, and trials dropped part-way, on whichever
kernels the machine dispatches to. When this was written it passed on AVX2 and on
``ATEN_CPU_CAPABILITY=default``, and longer runs by hand found no differing bit either (260 runs of 60
steps and 13 of 1000 on AVX2, 130 of 60 on ``default``, parameters up to 20,000 elements, 1 and 2
threads). Not checked: AVX-512 kernels (no such machine was at hand), other torch versions, and GPUs:
on CUDA the code runs the same operations, but no bit-exactness is claimed there.

Extras the specs do not expose but the classes accept (as keywords, or per trial in ``hyperparams``),
tested the same way: SGD's ``dampening`` and ``weight_decay``; Adam's coupled ``weight_decay`` and
``amsgrad``; RMSprop's ``weight_decay`` and ``centered``; Adagrad's ``lr_decay``, ``weight_decay`` and
``initial_accumulator_value``. ``maximize``, ``foreach``/``fused``, complex and sparse tensors are not
supported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import torch

from bench_core import BatchedOptimizer, per_trial

__all__ = ["BatchedAdagrad", "BatchedAdam", "BatchedAdamW", "BatchedLion", "BatchedRMSprop", "BatchedSGD"]


class _Columns:
    """Per-trial scalars, each made into a tensor once and cast and shaped once per parameter dtype and rank.

    One set holds what depends only on the hyperparameters (kept until :meth:`BatchedOptimizer.keep`), another
    what changes every step (the learning rate and what derives from it).

    ``columns(name, like)`` is ``per_trial`` of the Python floats given as ``name``: each value rounded to
    ``like``'s dtype as ``torch.optim`` rounds a Python-float scalar, shaped to broadcast against ``like``.
    ``columns.mask(name, like)`` is the boolean column of the flags given as ``name`` (the rows taking a
    branch); ``columns.every(name)`` / ``columns.some(name)`` say whether all / any rows take it.
    """

    def __init__(self, device: torch.device, values: Mapping[str, list[float] | torch.Tensor],
                 flags: Mapping[str, list[bool]] | None = None) -> None:
        self._vectors = {name: torch.as_tensor(v, dtype=torch.float64, device=device) for name, v in values.items()}
        self._lists = dict(flags or {})
        self._flags = {name: torch.tensor(v, dtype=torch.bool, device=device) for name, v in self._lists.items()}
        self._made: dict[tuple[str, torch.dtype, int], torch.Tensor] = {}

    def __call__(self, name: str, like: torch.Tensor) -> torch.Tensor:
        key = (name, like.dtype, like.dim())
        column = self._made.get(key)
        if column is None:
            column = self._made[key] = per_trial(self._vectors[name], like)
        return column

    def mask(self, name: str, like: torch.Tensor) -> torch.Tensor:
        return self._flags[name].reshape((-1,) + (1,) * (like.dim() - 1))

    def every(self, name: str) -> bool:
        return all(self._lists[name])

    def some(self, name: str) -> bool:
        return any(self._lists[name])


def _step_counter() -> torch.Tensor:
    """A step count as ``torch.optim`` keeps one: a 0-dim tensor of its scalar dtype (float32 unless float64 is
    the default), so that past 2**24 steps it stops counting exactly where torch's does."""
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return torch.tensor(0.0, dtype=dtype)


class _Batched(BatchedOptimizer):
    """Shared plumbing: hyperparameters as float64 ``(K,)`` tensors, torch-style range checks, grads to step,
    scratch space.

    ``DEFAULTS`` names every float hyperparameter the optimizer understands and its ``torch.optim`` default.
    A value comes from ``hyperparams`` (per trial) or from a keyword (the same for every trial: what a spec
    fixes), never both; either way :attr:`hyperparams` ends up holding one float64 ``(K,)`` tensor per name,
    so :meth:`keep` narrows them all.

    Intermediate results go into scratch tensors reused from step to step and parameter to parameter (one
    pool, as large as the largest parameter times the number of intermediates), not into fresh tensors:
    a batched intermediate is K times a trial's, and fresh ones of that size each step cost page faults that
    made batched Adam and RMSprop 2.5-7.5x slower than K ``torch.optim`` instances (K = 20, 10**5 elements,
    one CPU thread); with the pool they are about as fast there, and 8-14x faster at 10**3 elements.
    """

    DEFAULTS: ClassVar[Mapping[str, float]] = {}

    def __init__(self, params: list[torch.Tensor], hyperparams: Mapping[str, Any], **fixed: float) -> None:
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: no parameters to optimize")
        count, device = len(params[0]), params[0].device
        unknown = (set(hyperparams) | set(fixed)) - set(self.DEFAULTS)
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown hyperparameter {sorted(unknown)[0]!r}")
        both = set(hyperparams) & set(fixed)
        if both:
            raise ValueError(f"{type(self).__name__}: {sorted(both)[0]!r} given both per trial and fixed")
        values: dict[str, torch.Tensor] = {}
        for name, default in self.DEFAULTS.items():
            value = hyperparams[name] if name in hyperparams else fixed.get(name, default)
            tensor = torch.as_tensor(value, dtype=torch.float64, device=device)
            if tensor.dim() == 0:
                tensor = tensor.expand(count).clone()
            if tensor.shape != (count,):
                raise ValueError(f"{type(self).__name__}: {name} has shape {tuple(tensor.shape)}, expected ({count},)")
            values[name] = tensor
        super().__init__(params, values)
        self._floats: dict[str, list[float]] = {}
        self._distinct: dict[str, tuple[list[float], torch.Tensor]] = {}
        self._constants: _Columns | None = None
        self._pool: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        self._check()

    def keep(self, rows: torch.Tensor, params: list[torch.Tensor]) -> None:
        """Narrow as the base class does, and forget what was derived from the old hyperparameters."""
        super().keep(rows, params)
        self._floats.clear()
        self._distinct.clear()
        self._constants = None

    def _check(self) -> None:
        """Raise ``ValueError`` for values ``torch.optim`` refuses at construction (overridden per optimizer)."""

    def _require(self, name: str, condition: Callable[[float], bool], what: str) -> None:
        # "not condition(v)" so that NaN fails, as torch's "not 0.0 <= v" does.
        bad = [value for value in self.floats(name) if not condition(value)]
        if bad:
            raise ValueError(f"{type(self).__name__}: invalid {name} {bad[0]!r} (must be {what})")

    def _columns(self, values: Mapping[str, list[float] | torch.Tensor],
                 flags: Mapping[str, list[bool]] | None = None) -> _Columns:
        return _Columns(self.params[0].device, values, flags)

    def _constant_columns(self) -> _Columns:
        """The columns that depend on the hyperparameters alone, made on the first step after each :meth:`keep`."""
        if self._constants is None:
            self._constants = self._columns(*self._constant_values())
        return self._constants

    def _constant_values(self) -> tuple[dict[str, list[float]], dict[str, list[bool]]]:
        """Per-trial values and branch flags that depend on the hyperparameters alone (per optimizer)."""
        return {}, {}

    def _scratch(self, like: torch.Tensor, count: int) -> list[torch.Tensor]:
        """``count`` distinct tensors shaped like ``like``, valid until the next call (they share one pool)."""
        size = like.numel()
        key = (like.dtype, like.device)
        pool = self._pool.get(key)
        if pool is None or pool.numel() < size * count:
            pool = self._pool[key] = torch.empty(size * count, dtype=like.dtype, device=like.device)
        return [pool[j * size:(j + 1) * size].view(like.shape) for j in range(count)]

    def floats(self, name: str) -> list[float]:
        """Hyperparameter ``name`` per trial, as the Python floats each trial's ``torch.optim`` would hold.

        Read once (on a GPU each read waits for the device) until :meth:`keep` changes the trials.
        """
        if name not in self._floats:
            self._floats[name] = self.hyperparams[name].tolist()
        return self._floats[name]

    def per_value(self, name: str, function: Callable[[float], float]) -> torch.Tensor:
        """``function`` of hyperparameter ``name`` per trial (float64 ``(K,)``), called once per distinct value.

        For what must be computed in Python floats (``b ** step``: a tensor ``pow`` need not round like the C
        library's): a group usually shares all values but the learning rate, so this is one call, not K.
        """
        if name not in self._distinct:
            values, inverse = torch.unique(self.hyperparams[name], return_inverse=True)
            self._distinct[name] = (values.tolist(), inverse)
        values, inverse = self._distinct[name]
        device = self.params[0].device
        return torch.tensor([function(value) for value in values], dtype=torch.float64, device=device)[inverse]

    def _with_grads(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]]:
        """(state, param, grad) for every parameter that has a gradient; like ``torch.optim``, skip the others."""
        for state, param in zip(self.state, self.params, strict=True):
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse or param.is_complex():
                raise RuntimeError(f"{type(self).__name__} supports dense real tensors only")
            yield state, param, grad


def _coupled_decay(grad: torch.Tensor, param: torch.Tensor, columns: _Columns, out: torch.Tensor) -> torch.Tensor:
    """``grad.add(param, alpha=weight_decay)`` on the rows where ``weight_decay != 0``, ``grad`` itself elsewhere.

    ``columns`` holds the ``weight_decay`` values and their ``decays`` flags; the result may be written to ``out``.
    """
    if not columns.some("decays"):
        return grad
    torch.addcmul(grad, param, columns("weight_decay", param), out=out)
    if not columns.every("decays"):
        torch.where(columns.mask("decays", param), out, grad, out=out)
    return out


class BatchedSGD(_Batched):
    """``torch.optim.SGD`` for K trials: plain, heavy-ball (``momentum`` per trial, 0 allowed) or Nesterov.

    ``torch.optim.SGD`` skips its momentum buffer when ``momentum == 0``, and its first step copies the
    gradient into the buffer (no dampening); both are mimicked per row.
    """

    DEFAULTS: ClassVar[Mapping[str, float]] = {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0}

    def __init__(self, params: list[torch.Tensor], hyperparams: Mapping[str, Any], *, nesterov: bool = False,
                 **fixed: float) -> None:
        self.nesterov = nesterov
        super().__init__(params, hyperparams, **fixed)

    def _check(self) -> None:
        self._require("momentum", lambda v: v >= 0.0, ">= 0")
        self._require("weight_decay", lambda v: v >= 0.0, ">= 0")
        if self.nesterov:
            self._require("momentum", lambda v: v > 0.0, "> 0 with nesterov=True")
            self._require("dampening", lambda v: v == 0.0, "0 with nesterov=True")

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One SGD step per row, ``torch.optim.SGD._single_tensor_sgd``'s operations with per-row scalars."""
        columns, rate = self._constant_columns(), self._columns({"neg_lr": -lr})
        for state, param, grad in self._with_grads():
            decayed, direction = self._scratch(param, 2)
            grad = _coupled_decay(grad, param, columns, decayed)
            if columns.some("moving"):
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.detach().clone()
                else:
                    # buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                    buf.mul_(columns("momentum", param)).addcmul_(grad, columns("one_minus_dampening", param))
                # Nesterov: grad.add(buf, alpha=momentum); heavy ball: the buffer itself.
                update = torch.addcmul(grad, buf, columns("momentum", param), out=direction) if self.nesterov else buf
                if not columns.every("moving"):  # rows without momentum step along the gradient
                    update = torch.where(columns.mask("moving", param), update, grad, out=direction)
                grad = update
            param.addcmul_(grad, rate("neg_lr", param))  # param.add_(grad, alpha=-lr)

    def _constant_values(self) -> tuple[dict[str, list[float]], dict[str, list[bool]]]:
        momentum, weight_decay = self.floats("momentum"), self.floats("weight_decay")
        return ({"momentum": momentum, "weight_decay": weight_decay,
                 "one_minus_dampening": [1 - d for d in self.floats("dampening")]},
                {"moving": [m != 0 for m in momentum], "decays": [w != 0 for w in weight_decay]})


class BatchedAdam(_Batched):
    """``torch.optim.Adam`` for K trials (``beta1``, ``beta2``, ``eps``, coupled ``weight_decay`` per trial)."""

    DEFAULTS: ClassVar[Mapping[str, float]] = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    #: AdamW sets this: weight decay shrinks the parameters instead of joining the gradient.
    decoupled = False

    def __init__(self, params: list[torch.Tensor], hyperparams: Mapping[str, Any], *, amsgrad: bool = False,
                 **fixed: float) -> None:
        self.amsgrad = amsgrad
        super().__init__(params, hyperparams, **fixed)

    def _check(self) -> None:
        self._require("eps", lambda v: v >= 0.0, ">= 0")
        self._require("beta1", lambda v: 0.0 <= v < 1.0, "in [0, 1)")
        self._require("beta2", lambda v: 0.0 <= v < 1.0, "in [0, 1)")
        self._require("weight_decay", lambda v: v >= 0.0, ">= 0")

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One Adam step per row, ``torch.optim.adam._single_tensor_adam``'s operations with per-row scalars."""
        columns = self._constant_columns()
        if self.decoupled and columns.some("decays"):
            shrink = self._columns({"shrink": 1 - lr * self.hyperparams["weight_decay"]})
        # The bias corrections depend on a parameter's step count: the same for all unless some went without a grad.
        corrections: dict[float, _Columns] = {}
        for state, param, grad in self._with_grads():
            if not state:
                state["step"] = _step_counter()
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                if self.amsgrad:
                    state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]
            decayed, scaled, denom = self._scratch(param, 3)
            step_t += 1
            if self.decoupled:
                # param.mul_(1 - lr * weight_decay) where weight_decay != 0; elsewhere the factor is exactly 1.
                if columns.some("decays"):
                    param.mul_(shrink("shrink", param))
            else:
                grad = _coupled_decay(grad, param, columns, decayed)
            exp_avg.lerp_(grad, columns("one_minus_beta1", param))
            # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            torch.mul(grad, columns("one_minus_beta2", param), out=scaled)
            exp_avg_sq.mul_(columns("beta2", param)).addcmul_(scaled, grad)
            step = step_t.item()
            if step not in corrections:
                corrections[step] = self._columns({
                    "neg_step_size": -(lr / self.per_value("beta1", lambda b, step=step: 1 - b ** step)),
                    "bias_correction2_sqrt": self.per_value("beta2", lambda b, step=step: (1 - b ** step) ** 0.5)})
            correction = corrections[step]
            if self.amsgrad:
                torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
                second = state["max_exp_avg_sq"]
            else:
                second = exp_avg_sq
            # denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            torch.sqrt(second, out=denom).div_(correction("bias_correction2_sqrt", param)).add_(columns("eps", param))
            # param.addcdiv_(exp_avg, denom, value=-step_size)
            param.addcdiv_(torch.mul(exp_avg, correction("neg_step_size", param), out=scaled), denom)

    def _constant_values(self) -> tuple[dict[str, list[float]], dict[str, list[bool]]]:
        beta1, beta2, weight_decay = self.floats("beta1"), self.floats("beta2"), self.floats("weight_decay")
        return ({"one_minus_beta1": [1 - b for b in beta1], "beta2": beta2, "one_minus_beta2": [1 - b for b in beta2],
                 "eps": self.floats("eps"), "weight_decay": weight_decay},
                {"decays": [w != 0 for w in weight_decay]})


class BatchedAdamW(BatchedAdam):
    """``torch.optim.AdamW`` for K trials: :class:`BatchedAdam` with decoupled ``weight_decay`` (default 0.01)."""

    DEFAULTS: ClassVar[Mapping[str, float]] = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2}
    decoupled = True


class BatchedRMSprop(_Batched):
    """``torch.optim.RMSprop`` for K trials (``alpha``, ``eps``, ``momentum`` per trial, 0 allowed).

    On rows whose momentum is 0 the momentum buffer (which ``torch.optim`` would not have) is updated too but
    never read: their parameters take the momentum-free update.
    """

    DEFAULTS: ClassVar[Mapping[str, float]] = {"alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0}

    def __init__(self, params: list[torch.Tensor], hyperparams: Mapping[str, Any], *, centered: bool = False,
                 **fixed: float) -> None:
        self.centered = centered
        super().__init__(params, hyperparams, **fixed)

    def _check(self) -> None:
        self._require("eps", lambda v: v >= 0.0, ">= 0")
        self._require("momentum", lambda v: v >= 0.0, ">= 0")
        self._require("weight_decay", lambda v: v >= 0.0, ">= 0")
        self._require("alpha", lambda v: v >= 0.0, ">= 0")

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One RMSprop step per row, ``torch.optim.rmsprop._single_tensor_rmsprop``'s operations per row."""
        columns, rate = self._constant_columns(), self._columns({"neg_lr": -lr})
        for state, param, grad in self._with_grads():
            if not state:
                state["step"] = _step_counter()
                state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                if columns.some("moving"):
                    state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                if self.centered:
                    state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            square_avg = state["square_avg"]
            decayed, scaled, avg, moved = self._scratch(param, 4)
            state["step"] += 1
            grad = _coupled_decay(grad, param, columns, decayed)
            # square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
            torch.mul(grad, columns("one_minus_alpha", param), out=scaled)
            square_avg.mul_(columns("alpha", param)).addcmul_(scaled, grad)
            if self.centered:
                grad_avg = state["grad_avg"]
                grad_avg.lerp_(grad, columns("one_minus_alpha", param))
                torch.addcmul(square_avg, grad_avg, grad_avg, value=-1, out=avg).sqrt_()
            else:
                torch.sqrt(square_avg, out=avg)
            avg.add_(columns("eps", param))
            neg_lr = rate("neg_lr", param)
            if columns.some("moving") and "momentum_buffer" in state:
                buf = state["momentum_buffer"]
                buf.mul_(columns("momentum", param)).addcdiv_(grad, avg)  # buf.mul_(momentum).addcdiv_(grad, avg)
                if columns.every("moving"):
                    param.addcmul_(buf, neg_lr)  # param.add_(buf, alpha=-lr)
                    continue
                torch.addcmul(param, buf, neg_lr, out=moved)
                param.addcdiv_(torch.mul(grad, neg_lr, out=scaled), avg)  # param.addcdiv_(grad, avg, value=-lr)
                torch.where(columns.mask("moving", param), moved, param, out=param)
            else:
                param.addcdiv_(torch.mul(grad, neg_lr, out=scaled), avg)  # param.addcdiv_(grad, avg, value=-lr)

    def _constant_values(self) -> tuple[dict[str, list[float]], dict[str, list[bool]]]:
        alpha, momentum, weight_decay = self.floats("alpha"), self.floats("momentum"), self.floats("weight_decay")
        return ({"alpha": alpha, "one_minus_alpha": [1 - a for a in alpha], "eps": self.floats("eps"),
                 "momentum": momentum, "weight_decay": weight_decay},
                {"moving": [m > 0 for m in momentum], "decays": [w != 0 for w in weight_decay]})


class BatchedAdagrad(_Batched):
    """``torch.optim.Adagrad`` for K trials (``eps`` per trial; ``lr_decay``, ``weight_decay`` and the initial
    accumulator value optional)."""

    DEFAULTS: ClassVar[Mapping[str, float]] = {
        "lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10}

    def _check(self) -> None:
        self._require("lr_decay", lambda v: v >= 0.0, ">= 0")
        self._require("weight_decay", lambda v: v >= 0.0, ">= 0")
        self._require("initial_accumulator_value", lambda v: v >= 0.0, ">= 0")
        self._require("eps", lambda v: v >= 0.0, ">= 0")

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One Adagrad step per row, ``torch.optim.adagrad._single_tensor_adagrad``'s operations per row."""
        lr_decay, columns = self.hyperparams["lr_decay"], self._constant_columns()
        rates: dict[float, _Columns] = {}  # -clr by step count (the same for all parameters unless one had no grad)
        for state, param, grad in self._with_grads():
            if not state:
                # torch.optim.Adagrad builds its state in __init__; the same values, made on the first step.
                state["step"] = _step_counter()
                initial = self.hyperparams["initial_accumulator_value"]
                state["sum"] = torch.zeros_like(param, memory_format=torch.preserve_format).add_(
                    per_trial(initial, param))
            state_sum = state["sum"]
            decayed, scaled, std = self._scratch(param, 3)
            state["step"] += 1
            step = state["step"].item()
            grad = _coupled_decay(grad, param, columns, decayed)
            if step not in rates:
                rates[step] = self._columns({"neg_clr": -(lr / (1 + (step - 1) * lr_decay))})
            state_sum.addcmul_(grad, grad, value=1)
            torch.sqrt(state_sum, out=std).add_(columns("eps", param))  # std = state_sum.sqrt().add_(eps)
            # param.addcdiv_(grad, std, value=-clr)
            param.addcdiv_(torch.mul(grad, rates[step]("neg_clr", param), out=scaled), std)

    def _constant_values(self) -> tuple[dict[str, list[float]], dict[str, list[bool]]]:
        weight_decay = self.floats("weight_decay")
        return {"eps": self.floats("eps"), "weight_decay": weight_decay}, {"decays": [w != 0 for w in weight_decay]}


class BatchedLion(_Batched):
    """optbench's :class:`~bench_core.plugins.lion.Lion` for K trials (``beta1``, ``beta2``, ``weight_decay``)."""

    DEFAULTS: ClassVar[Mapping[str, float]] = {"beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}

    def _check(self) -> None:
        self._require("beta1", lambda v: 0.0 <= v < 1.0, "in [0, 1)")
        self._require("beta2", lambda v: 0.0 <= v < 1.0, "in [0, 1)")
        self._require("weight_decay", lambda v: v >= 0.0, ">= 0")

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One Lion step per row, :meth:`Lion.step`'s operations with per-row scalars."""
        columns = self._constant_columns()
        rate = self._columns({"neg_lr": -lr, "shrink": 1 - lr * self.hyperparams["weight_decay"]})
        for state, param, grad in self._with_grads():
            if not state:
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            exp_avg = state["exp_avg"]
            (update,) = self._scratch(param, 1)
            if columns.some("decays"):
                # param.mul_(1 - lr * weight_decay) where weight_decay != 0: elsewhere the factor is exactly 1.
                param.mul_(rate("shrink", param))
            # exp_avg.mul(beta1).add_(grad, alpha=1 - beta1).sign_()
            torch.mul(exp_avg, columns("beta1", param), out=update)
            update.addcmul_(grad, columns("one_minus_beta1", param)).sign_()
            param.addcmul_(update, rate("neg_lr", param))  # param.add_(update, alpha=-lr)
            # exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)
            exp_avg.mul_(columns("beta2", param)).addcmul_(grad, columns("one_minus_beta2", param))

    def _constant_values(self) -> tuple[dict[str, list[float]], dict[str, list[bool]]]:
        beta1, beta2 = self.floats("beta1"), self.floats("beta2")
        return ({"beta1": beta1, "one_minus_beta1": [1 - b for b in beta1], "beta2": beta2,
                 "one_minus_beta2": [1 - b for b in beta2]}, {"decays": [w != 0 for w in self.floats("weight_decay")]})
