"""Lion against an independent transcription of the paper's update rule."""

from __future__ import annotations

import copy

import pytest
import torch

from bench_core.plugins import lion
from bench_core.plugins.lion import Lion

SPEC = lion.optbench_optimizers()[0]


def make_problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Least squares with a weight, a bias and a parameter the loss never touches."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(16, 3, generator=generator, dtype=torch.float64)
    targets = torch.randn(16, 2, generator=generator, dtype=torch.float64)
    params = [torch.randn(3, 2, generator=generator, dtype=torch.float64),
              torch.randn(2, generator=generator, dtype=torch.float64),
              torch.randn(4, generator=generator, dtype=torch.float64)]
    return inputs, targets, params


def loss_of(params: list[torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    weight, bias, _unused = params
    return ((inputs @ weight + bias - targets) ** 2).mean()


def train(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], steps: int, seed: int = 0) -> None:
    inputs, targets, _ = make_problem(seed)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_of(params, inputs, targets).backward()
        optimizer.step()


def reference_lion(steps: int, lr: float, beta1: float, beta2: float, weight_decay: float) -> list[torch.Tensor]:
    """The paper's Algorithm 2, one tensor at a time, gradients from autograd on our own copies."""
    inputs, targets, params = make_problem()
    momenta = [torch.zeros_like(p) for p in params]
    for _ in range(steps):
        leaves = [p.clone().requires_grad_(True) for p in params]
        grads = torch.autograd.grad(loss_of(leaves, inputs, targets), leaves[:2])
        for i, g in enumerate(grads):  # the third parameter has no gradient: untouched
            c = beta1 * momenta[i] + (1 - beta1) * g
            params[i] = params[i] - lr * (torch.sign(c) + weight_decay * params[i])
            momenta[i] = beta2 * momenta[i] + (1 - beta2) * g
    return params


@pytest.mark.parametrize("weight_decay", [0.0, 0.5])
def test_steps_match_the_reference_and_params_without_grad_stay_put(weight_decay):
    lr, beta1, beta2 = 0.01, 0.8, 0.95
    _, _, start = make_problem()
    params = [p.clone().requires_grad_(True) for p in start]
    optimizer = Lion(params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
    train(optimizer, params, steps=6)
    expected = reference_lion(6, lr, beta1, beta2, weight_decay)
    for got, want in zip(params, expected, strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=1e-12)
    assert torch.equal(params[2].detach(), start[2]), "a parameter without a gradient must not move, nor decay"
    assert params[2] not in optimizer.state


def test_each_coordinate_moves_by_exactly_lr_without_weight_decay():
    _, _, start = make_problem()
    params = [p.clone().requires_grad_(True) for p in start]
    optimizer = Lion(params, lr=0.003)
    for step in range(4):
        before = [p.detach().clone() for p in params[:2]]
        train(optimizer, params, steps=1)
        for old, new in zip(before, params[:2], strict=True):
            torch.testing.assert_close((new.detach() - old).abs(), torch.full_like(old, 0.003),
                                       rtol=0, atol=1e-15, msg=f"step {step}")


def test_state_dict_round_trip_continues_identically():
    _, _, start = make_problem()
    params = [p.clone().requires_grad_(True) for p in start]
    optimizer = Lion(params, lr=0.01, betas=(0.7, 0.9), weight_decay=0.1)
    train(optimizer, params, steps=3)
    saved_params = [p.detach().clone() for p in params]
    saved_state = copy.deepcopy(optimizer.state_dict())

    resumed = [p.clone().requires_grad_(True) for p in saved_params]
    other = Lion(resumed, lr=0.5, betas=(0.1, 0.2))  # hyperparameters come back from the state dict
    other.load_state_dict(saved_state)
    assert other.param_groups[0]["betas"] == (0.7, 0.9) and other.param_groups[0]["weight_decay"] == 0.1

    train(optimizer, params, steps=3, seed=1)
    train(other, resumed, steps=3, seed=1)
    for a, b in zip(params, resumed, strict=True):
        assert torch.equal(a.detach(), b.detach())
    assert torch.equal(optimizer.state[params[0]]["exp_avg"], other.state[resumed[0]]["exp_avg"])


def test_momentum_state_is_created_on_the_first_step():
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = Lion([param])
    assert not optimizer.state
    param.grad = torch.tensor([1.0, -2.0, 0.0])
    optimizer.step()
    torch.testing.assert_close(optimizer.state[param]["exp_avg"], torch.tensor([0.01, -0.02, 0.0]))  # (1 - 0.99) g
    torch.testing.assert_close(param.detach(), torch.tensor([1 - 1e-4, 1 + 1e-4, 1.0]))  # sign(0) = 0


def test_closure_is_evaluated_with_gradients_and_its_loss_returned():
    param = torch.nn.Parameter(torch.tensor([2.0]))
    optimizer = Lion([param], lr=0.1)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (param**2).sum()
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == pytest.approx(4.0)
    assert param.item() == pytest.approx(1.9)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": -1e-3}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"betas": (1.0, 0.99)}, "beta1"),
    ({"betas": (0.9, -0.1)}, "beta2"),
    ({"betas": (0.9,)}, "pair"),
    ({"weight_decay": -0.1}, "weight_decay"),
])
def test_invalid_hyperparameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Lion([torch.nn.Parameter(torch.ones(2))], **kwargs)


def test_invalid_per_group_hyperparameters_raise_too():
    with pytest.raises(ValueError, match="lr"):
        Lion([{"params": [torch.nn.Parameter(torch.ones(2))], "lr": -1.0}])
    optimizer = Lion([torch.nn.Parameter(torch.ones(2))])
    with pytest.raises(ValueError, match="beta2"):
        optimizer.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "betas": (0.9, 1.5)})
    assert len(optimizer.param_groups) == 1


def test_the_spec_builds_lion_from_flat_hyperparameters():
    assert SPEC.name == "lion" and SPEC.description
    assert SPEC.defaults() == {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}
    optimizer = SPEC.build([torch.nn.Parameter(torch.ones(2))], {"beta1": 0.95, "weight_decay": 0.2})
    assert type(optimizer) is Lion
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (1e-4, (0.95, 0.99), 0.2)
    with pytest.raises(ValueError, match="beta1"):
        SPEC.build([torch.nn.Parameter(torch.ones(2))], {"beta1": 1.5})
    with pytest.raises(ValueError, match="'momentum'"):
        SPEC.build([torch.nn.Parameter(torch.ones(2))], {"momentum": 0.9})
