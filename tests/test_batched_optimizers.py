"""The batched optimizers against torch.optim, row by row and bit for bit (CPU, float32).

Every built-in spec with a ``batched`` form steps K = 5 trials with different hyperparameters (drawn from
the spec's own search ranges, with the low end, so momentum 0 and weight decay 0 where the range allows)
in one call; each row is compared with a separate ``spec.build(...)`` instance stepping the same
gradients at the same learning rates. Comparison is by bit pattern (``view(torch.int32)``), stricter than
``torch.equal``: it tells -0.0 from 0.0 and compares NaNs too. Gradients span 1e-30 to 1e30 with exact
(and negative) zeros, the learning rate changes every step like a schedule, one step leaves a parameter
without a gradient, and copies of the group that lose trials after 20 steps (``keep``) are held to the
same twins to the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from bench_core import BatchedOptimizer, OptimizerSpec, Param, per_trial
from bench_core.plugins.batched_optimizers import (
    BatchedAdagrad,
    BatchedAdam,
    BatchedAdamW,
    BatchedRMSprop,
    BatchedSGD,
)

K = 5
STEPS = 60
KEEP_AT = 20
SHAPES = [(3,), (4, 5), ()]
#: The step at which the last parameter has no gradient (torch.optim skips it, its step count included).
NO_GRAD_STEP = 7
BATCHED_SPECS = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "lion"]


def bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().view(torch.int32)


def draw(param: Param, generator: torch.Generator) -> list[float]:
    """K values of a hyperparameter: its low end (0 for momentum, weight decay, beta1 where allowed), one
    drawn from its range (log-uniformly where it is log-scaled), its default, another drawn, its high end."""
    low, high = float(param.low), float(param.high)
    drawn = []
    for u in torch.rand(K - 3, generator=generator, dtype=torch.float64).tolist():
        drawn.append(math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if param.log
                     else low + u * (high - low))
    return [low, drawn[0], float(param.default), drawn[1], high]


def gradients(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Every step's per-trial gradients for one parameter, shape ``(STEPS, K, *shape)``, spread over orders of
    magnitude: each (step, trial) its own scale (1e-5..1e3), elements a further 1e-2..1e2, and 10% exact
    zeros, 2% negative zeros, 3% tiny (~1e-30), 0.5% huge (~1e30)."""
    full = (STEPS, K, *shape)
    values = torch.randn(full, generator=generator, dtype=torch.float64)
    scale = 10 ** (torch.rand(STEPS, K, generator=generator, dtype=torch.float64) * 8 - 5)
    values = values * scale.reshape((STEPS, K) + (1,) * len(shape))
    values = values * 10 ** (torch.rand(full, generator=generator, dtype=torch.float64) * 4 - 2)
    u = torch.rand(full, generator=generator, dtype=torch.float64)
    values = torch.where(u < 0.10, 0.0, values)
    values = torch.where((u >= 0.10) & (u < 0.12), -0.0, values)
    values = torch.where((u >= 0.12) & (u < 0.15), values.sign() * 1e-30 * (1 + u), values)
    values = torch.where((u >= 0.15) & (u < 0.155), values.sign() * 1e30 * (1 + u), values)
    return values.float()


def initial_params(generator: torch.Generator) -> list[torch.Tensor]:
    """Each trial's starting point: normal values scaled 1e-3..10, 10% exact zeros."""
    params = []
    for shape in SHAPES:
        full = (K, *shape)
        values = torch.randn(full, generator=generator) * 10 ** (torch.rand(full, generator=generator) * 4 - 3)
        params.append(torch.where(torch.rand(full, generator=generator) < 0.1, 0.0, values))
    return params


Twin = Callable[[list[torch.Tensor], dict[str, float]], torch.optim.Optimizer]
Batched = Callable[[list[torch.Tensor], dict[str, torch.Tensor]], BatchedOptimizer]


class Group:
    """A batched optimizer over stacks of trials, and which original trial each of its rows is."""

    def __init__(self, batched: Batched, start: list[torch.Tensor], hyperparams: dict[str, list[float]]) -> None:
        self.rows = list(range(K))
        self.stacks = [p.clone().requires_grad_(True) for p in start]
        self.optimizer = batched(self.stacks, {name: torch.tensor(values, dtype=torch.float64)
                                               for name, values in hyperparams.items()})

    def keep(self, keep: list[int]) -> None:
        index = torch.tensor(keep)
        self.stacks = [s.detach().index_select(0, index).requires_grad_(True) for s in self.stacks]
        self.optimizer.keep(index, self.stacks)
        self.rows = [self.rows[j] for j in keep]


def compare(batched: Batched, twin: Twin, hyperparams: dict[str, list[float]], lr_range: tuple[float, float],
            seed: int = 0, keeps: tuple[list[int], ...] = ()) -> dict[str, float]:
    """Step ``batched`` over K trials and one ``twin`` per trial with the same gradients and learning rates;
    fail at the first step where any row's parameters differ from its twin's in any bit.

    For each list of rows in ``keeps``, another batched optimizer steps alongside the first and, after
    :data:`KEEP_AT` steps, carries on with those rows only (:meth:`BatchedOptimizer.keep`), held to the same
    twins.
    Returns how many elements ended finite and how many moved, to show the comparison was about real numbers.
    """
    generator = torch.Generator().manual_seed(seed)
    start = initial_params(generator)
    low, high = lr_range
    base_lr = [math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
               for u in torch.rand(K, generator=generator, dtype=torch.float64).tolist()]
    factors = (10 ** (torch.rand(STEPS, generator=generator, dtype=torch.float64) - 1)).tolist()  # 0.1..1
    grads = [gradients(shape, generator) for shape in SHAPES]
    groups = [Group(batched, start, hyperparams) for _ in range(1 + len(keeps))]
    twin_params = [[p[k].clone().requires_grad_(True) for p in start] for k in range(K)]
    twins = [twin(twin_params[k], {name: values[k] for name, values in hyperparams.items()}) for k in range(K)]
    last = len(SHAPES) - 1
    for step in range(STEPS):
        if step == KEEP_AT:
            for group, rows in zip(groups[1:], keeps, strict=True):
                group.keep(rows)
        lrs = [rate * factors[step] for rate in base_lr]  # what a schedule hands each trial this step
        for group in groups:
            for i, stack in enumerate(group.stacks):
                stack.grad = None if (step == NO_GRAD_STEP and i == last) else grads[i][step, group.rows]
            group.optimizer.step(torch.tensor([lrs[k] for k in group.rows], dtype=torch.float64))
        for k in range(K):
            twins[k].param_groups[0]["lr"] = lrs[k]
            for i, p in enumerate(twin_params[k]):
                p.grad = None if (step == NO_GRAD_STEP and i == last) else grads[i][step, k].clone()
            twins[k].step()
        for number, group in enumerate(groups):
            for i, stack in enumerate(group.stacks):
                theirs = torch.stack([twin_params[k][i].detach() for k in group.rows])
                if torch.equal(bits(stack), bits(theirs)):
                    continue
                j = next(j for j in range(len(group.rows)) if not torch.equal(bits(stack[j]), bits(theirs[j])))
                ours, first = stack[j].detach().flatten(), (bits(stack[j]) != bits(theirs[j])).flatten()
                count, first = int(first.sum()), int(first.nonzero()[0])
                which = f"kept {keeps[number - 1]}" if number else "whole"
                pytest.fail(f"{which} group, step {step}, trial {group.rows[j]}, parameter {i} {SHAPES[i]}: "
                            f"{count} elements differ, first at flat index {first}: batched {ours[first].item()!r} "
                            f"vs torch.optim {theirs[j].flatten()[first].item()!r}")
    final = torch.cat([s.detach().flatten() for s in groups[0].stacks])
    moved = torch.cat([(s.detach() != p).flatten() for s, p in zip(groups[0].stacks, start, strict=True)])
    return {"finite": torch.isfinite(final).float().mean().item(), "moved": moved.float().mean().item()}


def spec_hyperparams(spec: OptimizerSpec, seed: int) -> dict[str, list[float]]:
    generator = torch.Generator().manual_seed(1000 + seed)
    return {name: draw(param, generator) for name, param in spec.hyperparams.items()}


#: The groups that lose trials after KEEP_AT steps: low/default/high (momentum 0 beside momentum > 0), the two
#: drawn rows (no zero momentum left), and the low row alone (zero momentum everywhere, K = 1).
KEEPS = ([0, 2, 4], [1, 3], [0])


@pytest.mark.parametrize("name", BATCHED_SPECS)
def test_each_row_matches_its_torch_optim_twin_bit_for_bit(catalog, name):
    spec = catalog.optimizers[name]
    hyperparams = spec_hyperparams(spec, seed=0)
    seen = compare(spec.batched, lambda params, values: spec.build(params, values), hyperparams,
                   (spec.lr.low, spec.lr.high), seed=len(name), keeps=KEEPS)
    # The comparison was about real numbers: most elements stayed finite and most moved.
    assert seen["finite"] > 0.5
    assert seen["moved"] > 0.5


def test_the_draw_mixes_zero_and_nonzero_values_where_the_range_allows(catalog):
    for name, hyperparameter in [("momentum", "momentum"), ("rmsprop", "momentum"), ("lion", "weight_decay")]:
        values = spec_hyperparams(catalog.optimizers[name], seed=0)[hyperparameter]
        assert values[0] == 0.0 and all(v > 0 for v in values[1::2]), (name, values)
    values = spec_hyperparams(catalog.optimizers["adamw"], seed=0)
    assert all(len(set(row)) == K for row in values.values())


def torch_fuses_add() -> bool:
    """Whether ``p.add_(x, alpha=a)`` rounds once (a fused multiply-add) on this machine's CPU kernels: with
    x = a = 1 + 2**-12, a * x = 1 + 2**-11 + 2**-24 is a float32 tie that rounds to 1 + 2**-11 on its own."""
    x = torch.tensor([1 + 2**-12])
    return torch.tensor([-(1 + 2**-11)]).add(x, alpha=1 + 2**-12).item() != 0.0


class NaiveSGD(BatchedOptimizer):
    """Plain SGD written the obvious way, ``p += (-lr) * g`` with two roundings."""

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        for param in self.params:
            if param.grad is not None:
                param.add_(param.grad * per_trial(-lr, param))


class OneUlpOff(BatchedSGD):
    """Momentum SGD whose learning rate is one float32 ulp too large."""

    def step(self, lr: torch.Tensor) -> None:
        super().step(lr * (1 + 2**-23))


def test_the_comparison_catches_a_one_ulp_difference(catalog):
    spec = catalog.optimizers["momentum"]
    with pytest.raises(pytest.fail.Exception, match="elements differ"):
        compare(OneUlpOff, lambda params, values: spec.build(params, values), spec_hyperparams(spec, 0),
                (spec.lr.low, spec.lr.high))


def test_rounding_twice_is_caught_where_torch_rounds_once(catalog):
    """Why the batched forms use ``addcmul``: where torch's ``add(alpha=)`` fuses the multiply-add (torch 2.13's
    AVX2 kernels do), ``p + (-lr) * g`` in two roundings drifts from it; where it does not, the two agree."""
    spec = catalog.optimizers["sgd"]

    def run() -> None:
        compare(NaiveSGD, lambda params, values: spec.build(params, values), {}, (spec.lr.low, spec.lr.high))

    if torch_fuses_add():
        with pytest.raises(pytest.fail.Exception, match="elements differ"):
            run()
    else:
        run()


#: The options torch.optim has that the specs do not expose, per class: (batched factory, torch.optim twin,
#: per-trial values). Each is checked against torch.optim in the same way.
EXTRAS: dict[str, tuple[Batched, Twin, dict[str, list[float]]]] = {
    "sgd-dampening-weight_decay": (
        BatchedSGD, lambda p, v: torch.optim.SGD(p, lr=0.1, **v),
        {"momentum": [0.0, 0.5, 0.9, 0.0, 0.99], "dampening": [0.0, 0.1, 0.5, 0.3, 0.9],
         "weight_decay": [0.0, 1e-4, 0.1, 0.5, 0.0]}),
    "adam-weight_decay-amsgrad": (
        lambda p, h: BatchedAdam(p, h, amsgrad=True),
        lambda p, v: torch.optim.Adam(p, lr=0.1, betas=(v["beta1"], v["beta2"]), eps=v["eps"],
                                      weight_decay=v["weight_decay"], amsgrad=True),
        {"beta1": [0.0, 0.9, 0.5, 0.99, 0.8], "beta2": [0.9, 0.999, 0.99, 0.9999, 0.95],
         "eps": [1e-8, 1e-10, 1e-4, 1e-6, 1e-8], "weight_decay": [0.0, 1e-2, 0.5, 0.0, 1e-4]}),
    "adamw-amsgrad": (
        lambda p, h: BatchedAdamW(p, h, amsgrad=True),
        lambda p, v: torch.optim.AdamW(p, lr=0.1, betas=(v["beta1"], v["beta2"]), eps=v["eps"],
                                       weight_decay=v["weight_decay"], amsgrad=True),
        {"beta1": [0.0, 0.9, 0.5, 0.99, 0.8], "beta2": [0.9, 0.999, 0.99, 0.9999, 0.95],
         "eps": [1e-8, 1e-10, 1e-4, 1e-6, 1e-8], "weight_decay": [0.0, 1e-2, 0.5, 1.0, 1e-4]}),
    "rmsprop-centered-weight_decay": (
        lambda p, h: BatchedRMSprop(p, h, centered=True),
        lambda p, v: torch.optim.RMSprop(p, lr=0.1, centered=True, **v),
        {"alpha": [0.9, 0.99, 0.999, 0.95, 0.0], "eps": [1e-8, 1e-10, 1e-4, 1e-6, 1e-8],
         "momentum": [0.0, 0.9, 0.5, 0.0, 0.99], "weight_decay": [0.0, 1e-2, 0.5, 1e-4, 0.0]}),
    "adagrad-lr_decay-weight_decay-initial": (
        BatchedAdagrad, lambda p, v: torch.optim.Adagrad(p, lr=0.1, **v),
        {"eps": [1e-10, 1e-12, 1e-4, 1e-8, 1e-10], "lr_decay": [0.0, 1e-3, 0.1, 1.0, 0.5],
         "weight_decay": [0.0, 1e-2, 0.5, 1e-4, 0.0], "initial_accumulator_value": [0.0, 0.1, 1.0, 1e-8, 0.0]}),
}


@pytest.mark.parametrize("case", list(EXTRAS))
def test_options_beyond_the_specs_match_torch_optim(case):
    batched, twin, hyperparams = EXTRAS[case]
    seen = compare(batched, twin, hyperparams, (1e-4, 1e-1), keeps=([0, 1, 3], [2]))
    assert seen["finite"] > 0.5


def test_every_built_in_first_order_spec_has_a_batched_form_and_lbfgs_has_none(catalog):
    assert catalog.optimizers["lbfgs"].batched is None
    first_order = {name for name, spec in catalog.optimizers.items() if spec.batched is not None}
    assert first_order == set(BATCHED_SPECS)


def test_sgd_fixes_momentum_and_nesterov_fixes_nesterov(catalog):
    params = [torch.zeros(K, 2, requires_grad=True)]
    sgd = catalog.optimizers["sgd"].batched(params, {})
    assert sgd.hyperparams["momentum"].tolist() == [0.0] * K and not sgd.nesterov
    nesterov = catalog.optimizers["nesterov"].batched(params, {"momentum": torch.full((K,), 0.9, dtype=torch.float64)})
    assert nesterov.nesterov


def test_keep_narrows_the_hyperparameters_and_state_but_not_the_step_count(catalog):
    params = [torch.zeros(K, 2, requires_grad=True)]
    values = {name: torch.tensor(v, dtype=torch.float64)
              for name, v in spec_hyperparams(catalog.optimizers["adam"], 0).items()}
    optimizer = catalog.optimizers["adam"].batched(params, values)
    params[0].grad = torch.ones(K, 2)
    optimizer.step(torch.full((K,), 0.01, dtype=torch.float64))
    kept = [params[0].detach()[[1, 3]].requires_grad_(True)]
    optimizer.keep(torch.tensor([1, 3]), kept)
    assert optimizer.hyperparams["beta1"].tolist() == values["beta1"][[1, 3]].tolist()
    assert optimizer.state[0]["exp_avg"].shape == (2, 2)
    assert optimizer.state[0]["step"].item() == 1.0
    assert optimizer.params[0] is kept[0]


@pytest.mark.parametrize(("factory", "hyperparams", "message"), [
    (BatchedSGD, {"momentum": [0.9, -0.1]}, "invalid momentum -0.1"),
    (lambda p, h: BatchedSGD(p, h, nesterov=True), {"momentum": [0.9, 0.0]}, "invalid momentum 0.0"),
    (BatchedAdam, {"beta1": [0.9, 1.0]}, "invalid beta1 1.0"),
    (BatchedAdam, {"eps": [float("nan"), 1e-8]}, "invalid eps nan"),
    (BatchedAdam, {"gamma": [0.9, 0.9]}, "unknown hyperparameter 'gamma'"),
    (BatchedAdam, {"beta1": [0.9, 0.9, 0.9]}, r"beta1 has shape \(3,\), expected \(2,\)"),
])
def test_values_torch_optim_refuses_are_refused(factory, hyperparams, message):
    params = [torch.zeros(2, 3, requires_grad=True)]
    with pytest.raises(ValueError, match=message):
        factory(params, {name: torch.tensor(v, dtype=torch.float64) for name, v in hyperparams.items()})


def test_a_value_fixed_and_per_trial_at_once_is_refused():
    params = [torch.zeros(2, 3, requires_grad=True)]
    with pytest.raises(ValueError, match="'momentum' given both"):
        BatchedSGD(params, {"momentum": torch.zeros(2, dtype=torch.float64)}, momentum=0.0)
