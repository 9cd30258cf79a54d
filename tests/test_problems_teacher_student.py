"""The teacher-student problem: data from data_seed alone, a real noise floor, the documented batch order."""

from __future__ import annotations

import inspect
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench_core import Budget
from bench_core.catalog import load_catalog
from bench_core.problems import teacher_student
from bench_core.problems.teacher_student import (
    BIAS_STD,
    GAIN,
    build_teacher_student,
    optbench_problems,
    teacher_student_data,
)
from bench_core.runner import ProblemCache, run_trial
from bench_core.trial import TrialConfig

DEFAULTS = {"input_dim": 20, "teacher_width": 32, "teacher_depth": 2, "width": 64, "depth": 2,
            "noise": 0.1, "n_train": 4096, "data_seed": 0}
SMALL = {"input_dim": 5, "teacher_width": 7, "teacher_depth": 2, "noise": 0.3, "n_train": 300, "data_seed": 3}


@pytest.fixture(scope="module")
def problem():
    return build_teacher_student()


def _fresh_data(**options):
    """The data drawn anew, bypassing the per-process cache (so a cached copy cannot hide a difference)."""
    return teacher_student_data.__wrapped__(options["input_dim"], options["teacher_width"], options["teacher_depth"],
                                            float(options["noise"]), options["n_train"], options["data_seed"])


def _documented_draws(input_dim, teacher_width, teacher_depth, noise, n_train, data_seed, **student):
    """The data rebuilt in float64 NumPy from the module docstring's recipe, without the module's own code."""
    g = torch.Generator().manual_seed(data_seed)
    dims = [input_dim] + [teacher_width] * teacher_depth + [1]
    layers = []
    for k, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
        gain = GAIN if k < len(dims) - 2 else 1.0
        W = torch.randn(fan_out, fan_in, generator=g) * gain / math.sqrt(fan_in)
        b = torch.randn(fan_out, generator=g) * BIAS_STD
        layers.append((W.double().numpy(), b.double().numpy()))
    sizes = {"train": n_train, "valid": 1024, "test": 1024}
    X = {name: torch.randn(n, input_dim, generator=g) for name, n in sizes.items()}
    eps = {name: torch.randn(n, generator=g).double().numpy() for name, n in sizes.items()}

    def raw(x):
        h = x.double().numpy()
        for k, (W, b) in enumerate(layers):
            h = h @ W.T + b
            if k < len(layers) - 1:
                h = np.tanh(h)
        return h[:, 0]

    scale = raw(X["train"]).std()
    clean = {name: raw(x) / scale for name, x in X.items()}
    return X, clean, eps


# --- the data -----------------------------------------------------------------------------------


def test_data_depends_on_data_seed_only():
    before = torch.get_rng_state()
    torch.manual_seed(1)
    a = _fresh_data(**SMALL)
    torch.manual_seed(2)
    b = _fresh_data(**SMALL)
    for name in ("train", "valid", "test"):
        assert torch.equal(a.splits[name][0], b.splits[name][0]) and torch.equal(a.splits[name][1], b.splits[name][1])
    for pa, pb in zip(a.teacher.parameters(), b.teacher.parameters(), strict=True):
        assert torch.equal(pa, pb)
    other = _fresh_data(**(SMALL | {"data_seed": 4}))
    assert not torch.allclose(a.splits["train"][0], other.splits["train"][0])
    assert not torch.allclose(a.splits["valid"][1], other.splits["valid"][1])
    # building draws nothing from the global RNG (torch's default init of the teacher is undone)
    torch.set_rng_state(before)
    _fresh_data(**SMALL)
    assert torch.equal(torch.get_rng_state(), before)


def test_data_follows_the_documented_recipe():
    options = SMALL | {"teacher_depth": 3}
    data = _fresh_data(**options)
    X, clean, eps = _documented_draws(**options)
    for name in ("train", "valid", "test"):
        X_got, y_got = data.splits[name]
        assert X_got.dtype == torch.float32 and y_got.shape == (len(X[name]),)
        assert torch.equal(X_got, X[name])
        np.testing.assert_allclose(data.clean[name].numpy(), clean[name], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(y_got.numpy(), clean[name] + options["noise"] * eps[name], rtol=1e-4, atol=1e-5)


def test_splits_have_the_documented_sizes_and_share_no_rows(problem):
    sizes = {name: len(X) for name, (X, _) in problem.splits.items()}
    assert sizes == {"train": 4096, "valid": 1024, "test": 1024}
    assert problem.train_size == 4096 and problem.stochastic
    rows = [tuple(row) for X, _ in problem.splits.values() for row in X.tolist()]
    assert len(set(rows)) == 4096 + 2048


def test_teacher_has_unit_variance_and_the_labels_the_noise_option(problem):
    X, y = problem.splits["train"]
    with torch.no_grad():
        clean = problem.teacher(X).squeeze(-1).double()
    assert clean.var(correction=0).item() == pytest.approx(1.0, abs=1e-5)
    residual = (y.double() - clean).numpy()
    # 4096 draws of noise * N(0, 1): the sample variance has relative standard deviation
    # sqrt(2 / 4095) = 2.2%, the mean a standard deviation of 0.1 / 64; 5 sigma each.
    assert residual.var() == pytest.approx(0.1**2, rel=5 * math.sqrt(2 / 4095))
    assert abs(residual.mean()) < 5 * 0.1 / math.sqrt(4096)
    # the noise option scales the noise: noiseless labels are the teacher exactly
    noiseless = build_teacher_student(noise=0.0)
    with torch.no_grad():
        assert torch.allclose(noiseless.splits["valid"][1], noiseless.teacher(noiseless.splits["valid"][0]).squeeze(-1))


def test_the_noise_floor_is_reached_by_the_teacher_itself():
    problem = build_teacher_student(width=32, depth=2)  # the teacher's shape
    student = problem.init_model()
    student.load_state_dict(problem.teacher.state_dict())
    metrics = problem.evaluate(student)
    _, _, eps = _documented_draws(**DEFAULTS)
    for name in ("valid", "test"):
        # exactly the mean squared noise of the split (float32 rounding aside) ...
        assert metrics[f"{name}_loss"] == pytest.approx(0.01 * np.mean(eps[name] ** 2), rel=1e-4)
        # ... which is noise**2 up to chi-square(1024)/1024 sampling: relative sd sqrt(2/1024), 5 sigma
        assert abs(metrics[f"{name}_excess_loss"]) < 5 * 0.01 * math.sqrt(2 / 1024)
    assert problem.target is not None and metrics["valid_excess_loss"] < problem.target.value


# --- the problem's methods ----------------------------------------------------------------------


def test_batches_follow_the_documented_randperm_order(problem):
    batch_size = 1000  # 4 batches an epoch, 96 samples dropped: crosses epoch boundaries
    batches = problem.batches(batch_size, torch.Generator().manual_seed(7))
    X, y = problem.splits["train"]
    g = torch.Generator().manual_seed(7)
    expected = []
    for _ in range(3):
        perm = torch.randperm(4096, generator=g)
        expected += [perm[k * batch_size:(k + 1) * batch_size] for k in range(4096 // batch_size)]
    for idx in expected:
        X_batch, y_batch = next(batches)
        assert X_batch.device == problem.device and X_batch.shape == (batch_size, 20)
        assert torch.equal(X_batch, X[idx]) and torch.equal(y_batch, y[idx])


@pytest.mark.parametrize("batch_size", [0, -1, 4097, True, 2.0])
def test_bad_batch_sizes_raise(problem, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        problem.batches(batch_size, torch.Generator().manual_seed(0))


def test_batch_of_the_whole_training_set_is_allowed(problem):
    X, _ = next(problem.batches(4096, torch.Generator().manual_seed(0)))
    assert len(X) == 4096


def test_loss_and_evaluate_match_an_independent_mse(problem):
    torch.manual_seed(0)
    model = problem.init_model()
    assert [type(m).__name__ for m in model] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert model[0].in_features == 20 and model[0].out_features == 64 and model[-1].out_features == 1
    metrics = problem.evaluate(model)
    assert set(metrics) == {"train_loss", "valid_loss", "test_loss", "valid_excess_loss", "test_excess_loss"}
    params = [p.detach().double().numpy() for p in model.parameters()]
    for name, (X, y) in problem.splits.items():
        h = X.double().numpy()
        for k in range(0, len(params), 2):
            h = h @ params[k].T + params[k + 1]
            if k < len(params) - 2:
                h = np.tanh(h)
        mse = np.mean((h[:, 0] - y.double().numpy()) ** 2)
        assert metrics[f"{name}_loss"] == pytest.approx(mse, rel=1e-5)
        if name != "train":
            assert metrics[f"{name}_excess_loss"] == pytest.approx(mse - 0.01, rel=1e-5, abs=1e-7)
    batch = next(problem.batches(32, torch.Generator().manual_seed(0)))
    X, y = batch
    with torch.no_grad():
        assert problem.loss(model, batch).item() == pytest.approx(((model(X)[:, 0] - y) ** 2).mean().item(), rel=1e-6)
    assert model.training  # evaluate restores the mode


def test_held_out_excess_losses_are_declared_to_reach_down_to_minus_the_noise_floor(problem):
    # excess = loss - noise^2 with loss >= 0: it can be negative (the default range of a loss, [0, inf), is wrong),
    # down to -noise^2 for a perfect fit
    torch.manual_seed(0)
    metrics = problem.evaluate(problem.init_model())
    for split in ("valid", "test"):
        low, high = problem.metric_range(f"{split}_excess_loss")
        assert (low, high) == (-DEFAULTS["noise"] ** 2, math.inf)
        assert metrics[f"{split}_excess_loss"] - metrics[f"{split}_loss"] == pytest.approx(low, rel=1e-9)
    assert problem.metric_range("train_loss") == (0.0, math.inf)


@pytest.mark.slow
def test_short_adam_training_lowers_the_valid_loss(problem):
    torch.manual_seed(0)
    model = problem.init_model()
    before = problem.evaluate(model)["valid_loss"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = problem.batches(32, torch.Generator().manual_seed(0))
    for _ in range(300):
        optimizer.zero_grad()
        problem.loss(model, next(batches)).backward()
        optimizer.step()
    after = problem.evaluate(model)["valid_loss"]
    # an untrained student sits near 1.4; 300 steps learn at least the linear part (best linear ~0.25)
    assert after < 0.5 * before and after < 0.4


# --- options and the spec -----------------------------------------------------------------------


@pytest.mark.parametrize(("option", "value"), [
    ("input_dim", 0), ("input_dim", 2.5), ("teacher_width", 0), ("teacher_depth", -1), ("width", 0),
    ("width", "64"), ("depth", -1), ("depth", True), ("noise", -0.1), ("noise", math.nan), ("noise", math.inf),
    ("n_train", 0), ("data_seed", -1), ("data_seed", None),
])
def test_bad_options_raise_naming_the_option(option, value):
    with pytest.raises(ValueError, match=option):
        build_teacher_student(**{option: value})


def test_depth_zero_students_and_teachers_are_linear_models():
    problem = build_teacher_student(depth=0, teacher_depth=0, n_train=64)
    assert [type(m).__name__ for m in problem.init_model()] == ["Linear"]
    assert [type(m).__name__ for m in problem.teacher] == ["Linear"]


def test_spec_matches_the_builder_and_the_documented_measurement():
    (spec,) = optbench_problems()
    assert spec.name == "teacher_student" and spec.description
    defaults = {name: p.default for name, p in inspect.signature(build_teacher_student).parameters.items()
                if name != "device"}
    assert dict(spec.options) == defaults == DEFAULTS
    assert spec.batch_size == 32 and spec.budget == Budget("epochs", 30)
    assert build_teacher_student().target == teacher_student.TARGET
    assert teacher_student.TARGET.metric == "valid_excess_loss"


def test_runs_through_the_harness_as_a_plugin_file():
    catalog = load_catalog([Path(teacher_student.__file__)])
    spec = catalog.problems["teacher_student"]
    config = TrialConfig(problem="teacher_student", optimizer="adam", hyperparams={"lr": 1e-3},
                         budget=Budget("steps", 5), batch_size=32, problem_options=dict(spec.options), evals=1)
    result = run_trial(config, ProblemCache(catalog))
    assert result.status == "ok", result.error
    assert result.steps == 5 and "valid_excess_loss" in result.final
    assert all(math.isfinite(v) for v in result.final.values())
