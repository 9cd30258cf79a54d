"""The torch.optim wrappers: what each spec builds, and that the steps match the textbook updates.

The reference updates are written out with plain tensor arithmetic on a quadratic
f(x) = 0.5 * sum(a * x**2), whose gradient a * x needs no autograd.
"""

from __future__ import annotations

import math

import pytest
import torch

from bench_core.catalog import load_catalog
from bench_core.plugins import torch_optimizers
from bench_core.specs import OptimizerSpec

SPECS: dict[str, OptimizerSpec] = {spec.name: spec for spec in torch_optimizers.optbench_optimizers()}
CURVATURE = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
START = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)


def run(name: str, hyperparams: dict[str, float], steps: int) -> torch.Tensor:
    """The iterate after ``steps`` steps of the built optimizer on the quadratic."""
    x = torch.nn.Parameter(START.clone())
    optimizer = SPECS[name].build([x], hyperparams)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = 0.5 * (CURVATURE * x * x).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        if SPECS[name].needs_closure:
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()
    return x.detach()


def grad(x: torch.Tensor) -> torch.Tensor:
    return CURVATURE * x


BUILD_CASES = [
    ("sgd", {"lr": 0.3}, torch.optim.SGD, {"lr": 0.3, "momentum": 0.0, "nesterov": False}),
    ("momentum", {"lr": 0.02, "momentum": 0.8}, torch.optim.SGD,
     {"lr": 0.02, "momentum": 0.8, "nesterov": False, "dampening": 0}),
    ("nesterov", {"momentum": 0.7}, torch.optim.SGD, {"momentum": 0.7, "nesterov": True, "dampening": 0}),
    ("adam", {"lr": 0.002, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6}, torch.optim.Adam,
     {"lr": 0.002, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0}),
    ("adamw", {"beta1": 0.85, "weight_decay": 0.1}, torch.optim.AdamW,
     {"lr": 1e-3, "betas": (0.85, 0.999), "eps": 1e-8, "weight_decay": 0.1}),
    ("rmsprop", {"alpha": 0.95, "momentum": 0.5, "eps": 1e-7}, torch.optim.RMSprop,
     {"lr": 1e-3, "alpha": 0.95, "momentum": 0.5, "eps": 1e-7, "centered": False}),
    ("adagrad", {"lr": 0.05, "eps": 1e-9}, torch.optim.Adagrad, {"lr": 0.05, "eps": 1e-9}),
    ("lbfgs", {"lr": 0.5}, torch.optim.LBFGS,
     {"lr": 0.5, "max_iter": 1, "max_eval": 26, "history_size": 10, "line_search_fn": "strong_wolfe"}),
]

HYPERPARAMS = {
    "sgd": set(),
    "momentum": {"momentum"},
    "nesterov": {"momentum"},
    "adam": {"beta1", "beta2", "eps"},
    "adamw": {"beta1", "beta2", "eps", "weight_decay"},
    "rmsprop": {"alpha", "eps", "momentum"},
    "adagrad": {"eps"},
    "lbfgs": set(),
}


def test_the_eight_torch_optimizers_are_provided_and_only_lbfgs_needs_a_closure():
    assert set(SPECS) == set(HYPERPARAMS)
    assert {name for name, spec in SPECS.items() if spec.needs_closure} == {"lbfgs"}
    description = SPECS["lbfgs"].description
    assert "deterministic" in description and "full-batch" in description and "several times" in description
    assert SPECS["lbfgs"].lr.default == 1.0


def test_lbfgs_with_its_line_search_solves_the_quadratic_like_a_quasi_newton_method():
    """On a 4-D quadratic, L-BFGS (exact curvature pairs) converges in a handful of iterations, gradient descent not."""
    assert float(run("lbfgs", {}, 12).abs().max()) < 1e-5
    assert float(run("sgd", {"lr": 0.25}, 12).abs().max()) > 0.1  # lr 1/L: the slow mode (a = 0.5) still far off


def test_lbfgs_line_search_can_shorten_a_step_at_one_iteration_per_step():
    """At max_iter=1 torch caps the search at max_eval - 1 evaluations: the default max_eval (1) leaves none.

    A first trial step far too long (lr 10) must then be cut back by the search, not taken or refused.
    """
    x = run("lbfgs", {"lr": 10.0}, 8)
    assert float(x.abs().max()) < 1e-6
    capped = torch.nn.Parameter(START.clone())
    stuck = torch.optim.LBFGS([capped], lr=10.0, max_iter=1, line_search_fn="strong_wolfe")  # torch's default max_eval

    def closure() -> torch.Tensor:
        stuck.zero_grad()
        loss = 0.5 * (CURVATURE * capped * capped).sum()
        loss.backward()
        return loss

    for _ in range(8):
        stuck.step(closure)
    assert float(capped.detach().abs().max()) > 1e-2, "the test needs a case that torch's default gets stuck on"


@pytest.mark.parametrize(("name", "hyperparams", "cls", "expected"), BUILD_CASES, ids=[c[0] for c in BUILD_CASES])
def test_build_gives_the_torch_class_with_the_requested_settings(name, hyperparams, cls, expected):
    optimizer = SPECS[name].build([torch.nn.Parameter(torch.ones(3))], hyperparams)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    for key, value in expected.items():
        assert group[key] == pytest.approx(value), key


@pytest.mark.parametrize("name", sorted(HYPERPARAMS))
def test_defaults_list_lr_and_every_declared_hyperparameter_each_with_a_search_range(name):
    spec = SPECS[name]
    assert set(spec.defaults()) == {"lr"} | HYPERPARAMS[name]
    assert spec.description and "\n" not in spec.description
    for param in [spec.lr, *spec.hyperparams.values()]:
        assert param.low is not None and param.low <= param.default <= param.high
        if param.low > 0 and param.high / param.low > 100:
            assert param.log, "a range spanning decades is searched on a log scale"
    assert spec.lr.log


@pytest.mark.parametrize("name", sorted(HYPERPARAMS))
def test_every_corner_of_the_search_space_builds_and_steps(name):
    """A sweep may draw any value in a declared range; torch must accept all of them."""
    spec = SPECS[name]
    corners = [{}] + [{key: getattr(param, end)} for key, param in spec.hyperparams.items() for end in ("low", "high")]
    for hyperparams in corners:
        x = run(name, hyperparams, steps=2)
        assert torch.isfinite(x).all(), hyperparams


def test_unknown_hyperparameters_are_rejected():
    params = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError, match="'momentum'"):
        SPECS["adam"].build(params, {"momentum": 0.9})
    with pytest.raises(ValueError, match="'weight_decay'"):
        SPECS["adam"].build(params, {"weight_decay": 0.1})
    with pytest.raises(ValueError, match="'momentum'"):
        SPECS["sgd"].build(params, {"momentum": 0.9})


def test_sgd_takes_a_plain_gradient_step():
    assert torch.allclose(run("sgd", {"lr": 0.1}, 1), START - 0.1 * grad(START))


def test_heavy_ball_momentum_matches_the_formula():
    lr, mu = 0.1, 0.9
    x, velocity = START.clone(), torch.zeros_like(START)
    for steps in (1, 2, 3):
        velocity = mu * velocity + grad(x)  # v_t = mu v_{t-1} + g_t
        x = x - lr * velocity  # x_{t+1} = x_t - lr v_t
        torch.testing.assert_close(run("momentum", {"lr": lr, "momentum": mu}, steps), x, rtol=1e-12, atol=1e-12)
    # by hand for the first coordinate (a = 0.5, x0 = 1): x1 = 0.95, x2 = 0.95 - 0.1 * (0.45 + 0.475)
    assert run("momentum", {"lr": lr, "momentum": mu}, 2)[0].item() == pytest.approx(0.8575)


def test_nesterov_momentum_matches_the_formula():
    lr, mu = 0.1, 0.9
    x, velocity = START.clone(), torch.zeros_like(START)
    for steps in (1, 2, 3):
        g = grad(x)
        velocity = mu * velocity + g
        x = x - lr * (g + mu * velocity)  # the look-ahead: step along g + mu v_t
        torch.testing.assert_close(run("nesterov", {"lr": lr, "momentum": mu}, steps), x, rtol=1e-12, atol=1e-12)
    # by hand for the first coordinate: g0 = 0.5, v1 = 0.5, x1 = 1 - 0.1 * (0.5 + 0.45) = 0.905
    assert run("nesterov", {"lr": lr, "momentum": mu}, 1)[0].item() == pytest.approx(0.905)


@pytest.mark.parametrize("weight_decay", [None, 0.1])
def test_adam_and_adamw_match_the_bias_corrected_formula(weight_decay):
    lr, beta1, beta2, eps = 0.05, 0.8, 0.95, 1e-8
    x, m, v = START.clone(), torch.zeros_like(START), torch.zeros_like(START)
    for t in range(1, 6):
        g = grad(x)
        if weight_decay is not None:
            x = x * (1 - lr * weight_decay)  # decoupled: shrink the weights, not the gradient
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        x = x - lr * m_hat / (v_hat.sqrt() + eps)
    hyperparams = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps}
    if weight_decay is None:
        result = run("adam", hyperparams, 5)
    else:
        result = run("adamw", hyperparams | {"weight_decay": weight_decay}, 5)
    torch.testing.assert_close(result, x, rtol=1e-10, atol=1e-12)
    # Adam's first step moves every coordinate by about lr, whatever the gradient's scale.
    first = run("adam", hyperparams, 1)
    torch.testing.assert_close((START - first).abs(), torch.full_like(START, lr), rtol=1e-6, atol=0)


def test_rmsprop_with_momentum_matches_the_formula():
    lr, alpha, mu, eps = 0.01, 0.9, 0.5, 1e-8
    x, square_avg, buffer = START.clone(), torch.zeros_like(START), torch.zeros_like(START)
    for _ in range(4):
        g = grad(x)
        square_avg = alpha * square_avg + (1 - alpha) * g * g
        buffer = mu * buffer + g / (square_avg.sqrt() + eps)
        x = x - lr * buffer
    result = run("rmsprop", {"lr": lr, "alpha": alpha, "momentum": mu, "eps": eps}, 4)
    torch.testing.assert_close(result, x, rtol=1e-10, atol=1e-12)


def test_adagrad_matches_the_formula():
    lr, eps = 0.1, 1e-10
    x, total = START.clone(), torch.zeros_like(START)
    for _ in range(4):
        g = grad(x)
        total = total + g * g
        x = x - lr * g / (total.sqrt() + eps)
    torch.testing.assert_close(run("adagrad", {"lr": lr, "eps": eps}, 4), x, rtol=1e-10, atol=1e-12)
    assert math.isclose(run("adagrad", {"lr": lr}, 1)[1].item(), -2.0 + lr)  # first step: lr * sign(g)


def test_built_in_optimizers_are_discovered_through_their_entry_points(monkeypatch):
    monkeypatch.setenv("OPTBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    catalog = load_catalog()
    for name in HYPERPARAMS:
        assert catalog.origin[("optimizer", name)] == "torch_optimizers", name
    assert catalog.origin[("optimizer", "lion")] == "lion"
    for plugin in ("torch_optimizers", "lion", "schedules"):
        info = catalog.plugins[plugin]
        assert info.distribution == "optbench" and info.source.startswith("entry point bench_core.plugins.")
        assert info.hooks, plugin


def test_a_spec_may_not_fix_what_it_also_tunes():
    import pytest
    import torch

    from bench_core import OptimizerSpec

    spec = OptimizerSpec("bad", torch.optim.SGD, hyperparams={"momentum": 0.9}, fixed={"momentum": 0.5})
    with pytest.raises(ValueError, match="'momentum' is both fixed and a hyperparameter"):
        spec.validate()
    with pytest.raises(ValueError, match="'momentum' is both fixed and a hyperparameter"):
        spec.build([torch.zeros(1, requires_grad=True)])  # an invalid spec never builds


BAD_PARAMS_PLUGIN = """
    import torch
    from bench_core import OptimizerSpec, Param, hookimpl

    @hookimpl
    def optbench_optimizers():
        return [
            OptimizerSpec("fine", torch.optim.SGD),
            OptimizerSpec("wide", torch.optim.Adam, hyperparams={"eps": Param(10.0, 1e-5, 1.0)}),
            OptimizerSpec("greedy", torch.optim.SGD, hyperparams={"trials": 2.0}),
            OptimizerSpec("also_fine", torch.optim.Adam),
        ]
"""


def test_a_bad_param_or_reserved_name_drops_only_that_optimizer_and_names_everything(write_plugin):
    from bench_core.catalog import load_catalog

    path = write_plugin("bad_params", BAD_PARAMS_PLUGIN)
    catalog = load_catalog([path])
    assert {"fine", "also_fine"} <= set(catalog.optimizers) and not {"wide", "greedy"} & set(catalog.optimizers)
    assert catalog.issues == [
        f"plugin {str(path)!r} (file {path}): optimizer 'wide': hyperparameter 'eps': default 10.0 lies outside "
        "[1e-05, 1.0]; skipped",
        f"plugin {str(path)!r} (file {path}): optimizer 'greedy': hyperparameter name 'trials' is reserved: it is a "
        "suite setting or sweep axis (see bench_core.specs.RESERVED_NAMES); skipped",
    ]


def test_reserved_names_cover_every_suite_setting_and_sweep_axis():
    from bench_core import specs, suite

    for name in (*specs.AXES, *specs.SUITE_KEYS, "seed"):
        assert name in specs.RESERVED_NAMES, name
    assert suite.AXES is specs.AXES and suite.SUITE_KEYS is specs.SUITE_KEYS  # one list, owned by specs
