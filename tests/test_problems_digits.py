"""The digits problems: a fixed, disjoint split of the real data, models of the documented shape."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from bench_core import Budget, Problem
from bench_core.problems.digits import build_cnn, build_mlp, digits_arrays, optbench_problems, split_indices


@pytest.fixture(scope="module")
def mlp():
    return build_mlp()


@pytest.fixture(scope="module")
def cnn():
    return build_cnn()


def test_split_is_fixed_disjoint_and_covers_every_image():
    indices = split_indices()
    sizes = {name: len(idx) for name, idx in indices.items()}
    assert sizes == {"train": 1078, "valid": 359, "test": 360}
    assert sum(sizes.values()) == 1797
    joined = np.concatenate(list(indices.values()))
    assert len(set(joined.tolist())) == 1797 and sorted(joined.tolist()) == list(range(1797))
    perm = np.random.RandomState(0).permutation(1797)  # documented, independent of any trial seed
    assert np.array_equal(joined, perm)


def test_split_arrays_are_the_scaled_rows_of_scikit_learns_digits():
    digits = load_digits()
    for name, (X, y) in digits_arrays().items():
        idx = split_indices()[name]
        assert X.dtype == np.float32 and y.dtype == np.int64
        assert np.array_equal(X, (digits.data[idx] / 16).astype(np.float32))
        assert np.array_equal(y, digits.target[idx])
        assert X.min() == 0.0 and X.max() == 1.0
        assert set(y.tolist()) == set(range(10))  # every class in every split
    assert digits_arrays() is digits_arrays()  # loaded once per process


def test_problem_data_on_the_device_and_independent_of_the_seed(mlp):
    torch.manual_seed(123)
    again = build_mlp()
    assert mlp.train_size == 1078
    for name, (X, y) in mlp.splits.items():
        assert X.shape == (len(split_indices()[name]), 64) and X.dtype == torch.float32
        assert X.device == mlp.device and y.device == mlp.device
        assert X.min().item() >= 0.0 and X.max().item() <= 1.0
        assert torch.equal(X, again.splits[name][0]) and torch.equal(y, again.splits[name][1])
    # scikit-learn's 1797 images are all distinct, so disjoint indices mean no image in two splits
    rows = [tuple(row) for X, _ in mlp.splits.values() for row in X.tolist()]
    assert len(rows) == 1797 and len(set(rows)) == 1797


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_models_output_logits_and_start_near_chance(name, request):
    problem = request.getfixturevalue(name)
    X, _ = next(problem.batches(32, torch.Generator().manual_seed(0)))
    for seed in range(3):
        torch.manual_seed(seed)
        model = problem.init_model().to(problem.device)
        assert model(X).shape == (32, 10)
        assert model(problem.splits["test"][0]).shape == (360, 10)
        metrics = problem.evaluate(model)
        assert set(metrics) == {f"{s}_{m}" for s in ("train", "valid", "test") for m in ("loss", "accuracy")}
        assert all(0.0 <= metrics[f"{s}_accuracy"] <= 1.0 for s in ("train", "valid", "test"))
        assert metrics["train_loss"] == pytest.approx(math.log(10), abs=0.15)


def test_architectures_have_the_documented_sizes():
    def count(model: torch.nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    assert count(build_cnn().init_model()) == (16 * 9 + 16) + (32 * 16 * 9 + 32) + (512 * 10 + 10)
    assert count(build_mlp().init_model()) == (64 * 64 + 64) + (64 * 10 + 10)
    assert count(build_mlp(width=20, depth=2).init_model()) == (64 * 20 + 20) + (20 * 20 + 20) + (20 * 10 + 10)
    assert count(build_mlp(depth=0).init_model()) == 64 * 10 + 10


def test_cnn_computes_the_documented_layers(cnn):
    torch.manual_seed(0)
    model = cnn.init_model()
    conv1, conv2, linear = model[1], model[3], model[7]
    X = cnn.splits["valid"][0][:50]
    h = F.relu(F.conv2d(X.reshape(-1, 1, 8, 8), conv1.weight.contiguous(), conv1.bias, padding=1))
    h = F.relu(F.conv2d(h, conv2.weight.contiguous(), conv2.bias, padding=1))
    expected = F.linear(F.max_pool2d(h, 2).reshape(50, 512), linear.weight, linear.bias)
    torch.testing.assert_close(model(X), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_short_adam_run_learns(mlp):
    torch.manual_seed(0)
    model = mlp.init_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batches = mlp.batches(32, torch.Generator().manual_seed(0))
    for _ in range(2 * (1078 // 32)):  # two epochs
        optimizer.zero_grad()
        mlp.loss(model, next(batches)).backward()
        optimizer.step()
    assert mlp.evaluate(model)["valid_accuracy"] > 0.85


def test_specs_and_targets():
    specs = {spec.name: spec for spec in optbench_problems()}
    assert set(specs) == {"digits_mlp", "digits_cnn"}
    assert dict(specs["digits_mlp"].options) == {"width": 64, "depth": 1}
    assert dict(specs["digits_cnn"].options) == {}
    for spec in specs.values():
        assert spec.batch_size == 32 and spec.budget.unit == "epochs" and spec.description
        problem = spec.build(device=torch.device("cpu"), **spec.options)
        assert isinstance(problem, Problem)
        assert problem.target.metric == "valid_accuracy" and problem.target.metric in problem.maximize
        assert 0.9 <= problem.target.value < 1.0
    assert specs["digits_mlp"].budget == Budget("epochs", 30)
    assert specs["digits_cnn"].budget == Budget("epochs", 10)


@pytest.mark.parametrize(("options", "message"), [
    ({"width": 0}, "width=0"),
    ({"width": 1.5}, "width=1.5"),
    ({"depth": -1}, "depth=-1"),
    ({"depth": float("nan")}, "depth=nan"),
])
def test_bad_options_raise_a_value_error_naming_them(options, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        build_mlp(**options)
    with pytest.raises(TypeError):
        build_cnn(width=3)
