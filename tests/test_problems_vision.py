"""The DeepOBS vision problems, on tiny data sets written here in the official file formats."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_data import CIFAR_PER_BATCH, CIFAR_TEST, N_TEST, N_TRAIN, write_tiny_datasets

from bench_core import Budget, Problem
from bench_core.catalog import load_catalog
from bench_core.problems import datasets, vision
from bench_core.problems.datasets import DatasetNotFound
from bench_core.problems.vision import (
    VisionProblem,
    build_cifar10_3c3d,
    build_fmnist_2c2d,
    build_mnist_2c2d,
    eval_indices,
    holdout_split,
    optbench_problems,
)
from bench_core.runner import ProblemCache, run_trial
from bench_core.trial import TrialConfig

SMALL = {"valid_size": 10, "eval_size": 1000}
BUILDERS = {"mnist_2c2d": build_mnist_2c2d, "fmnist_2c2d": build_fmnist_2c2d, "cifar10_3c3d": build_cifar10_3c3d,
            "mnist_logreg": vision.build_mnist_logreg, "fmnist_logreg": vision.build_fmnist_logreg,
            "mnist_mlp": vision.build_mnist_mlp, "fmnist_mlp": vision.build_fmnist_mlp}


@pytest.fixture
def raw(tmp_path, monkeypatch) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Tiny MNIST (plain layout), Fashion-MNIST (torchvision layout) and CIFAR-10 under a fresh data dir."""
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path))
    return write_tiny_datasets(tmp_path)


def _n_train(name: str) -> int:
    return 5 * CIFAR_PER_BATCH if name == "cifar10_3c3d" else N_TRAIN


def _input_shape(name: str) -> tuple[int, ...]:
    return (3, 32, 32) if name == "cifar10_3c3d" else (1, 28, 28)


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILDERS)
def test_batches_and_logits_have_the_documented_shapes(raw, name):
    problem = BUILDERS[name](**SMALL)
    assert isinstance(problem, Problem) and problem.train_size == _n_train(name) - 10
    X, y = next(problem.batches(8, torch.Generator().manual_seed(0)))
    assert X.shape == (8, *_input_shape(name)) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert X.device == problem.device and y.device == problem.device
    torch.manual_seed(0)
    assert problem.init_model()(X).shape == (8, 10)
    sizes = {split: len(y) for split, (_, y) in problem.splits.items()}
    n_test = CIFAR_TEST if name == "cifar10_3c3d" else N_TEST
    assert sizes == {"train": _n_train(name) - 10, "valid": 10, "test": n_test}


@pytest.mark.parametrize("name", BUILDERS)
def test_split_is_fixed_disjoint_and_covers_the_official_training_set(raw, name):
    torch.manual_seed(1)
    problem = BUILDERS[name](**SMALL)
    torch.manual_seed(2)
    torch.rand(5)
    again = BUILDERS[name](**SMALL)
    n = _n_train(name)
    train_idx, valid_idx = problem.train_indices, problem.valid_indices
    assert len(set(train_idx) & set(valid_idx)) == 0
    assert sorted([*train_idx, *valid_idx]) == list(range(n))
    perm = np.random.RandomState(0).permutation(n)  # documented, independent of torch's RNG and the trial seed
    assert np.array_equal(valid_idx, np.sort(perm[:10])) and np.array_equal(train_idx, np.sort(perm[10:]))
    for split in ("train", "valid", "test"):
        assert torch.equal(problem.splits[split][0], again.splits[split][0])
        assert torch.equal(problem.splits[split][1], again.splits[split][1])
    # the tensors hold exactly those rows of the official files, labels included
    images, labels = raw[name]["train"]
    for split, idx in (("train", train_idx), ("valid", valid_idx)):
        assert torch.equal(problem.splits[split][1], torch.from_numpy(labels[idx].astype(np.int64)))
        if name != "cifar10_3c3d":
            pixels = torch.round(problem.splits[split][0] * 255).to(torch.uint8)
            assert torch.equal(pixels, torch.from_numpy(images[idx]).unsqueeze(1))
    # by content too: no training image appears in the validation split
    train_rows = {row.tobytes() for row in images[train_idx]}
    assert not any(row.tobytes() in train_rows for row in images[valid_idx])


def test_holdout_split_matches_its_definition():
    train_idx, valid_idx = holdout_split(100, 30)
    perm = np.random.RandomState(0).permutation(100)
    assert np.array_equal(valid_idx, np.sort(perm[:30])) and np.array_equal(train_idx, np.sort(perm[30:]))


def test_mnist_pixels_are_scaled_to_the_unit_interval(raw):
    problem = build_mnist_2c2d(**SMALL)
    X = problem.splits["test"][0]
    expected = torch.from_numpy(raw["mnist_2c2d"]["test"][0].astype(np.float32) / 255).unsqueeze(1)
    torch.testing.assert_close(X, expected, rtol=0, atol=1e-7)


def test_cifar_is_standardised_per_channel_with_training_statistics(raw):
    problem = build_cifar10_3c3d(**SMALL)
    X_train = problem.splits["train"][0].double()
    torch.testing.assert_close(X_train.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-5)
    torch.testing.assert_close(X_train.std(dim=(0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64),
                               rtol=0, atol=1e-5)
    images = raw["cifar10_3c3d"]["train"][0][problem.train_indices] / 255.0
    mean, std = images.mean(axis=(0, 2, 3)), images.std(axis=(0, 2, 3))
    assert np.allclose(problem.channel_mean, mean) and np.allclose(problem.channel_std, std)
    assert mean[2] > mean[1] > mean[0]  # the data really had different channel means
    # valid and test use the training statistics, not their own, and keep channel-major layout
    test_images = raw["cifar10_3c3d"]["test"][0] / 255.0
    expected = (test_images - mean[:, None, None]) / std[:, None, None]
    torch.testing.assert_close(problem.splits["test"][0].double(), torch.from_numpy(expected), rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "weight_decay"), [("mnist_2c2d", 0.01), ("cifar10_3c3d", 0.002)])
def test_weight_decay_adds_deepobs_l2_on_weights_only(raw, name, weight_decay):
    problem = BUILDERS[name](**SMALL, weight_decay=weight_decay)
    torch.manual_seed(0)
    model = problem.init_model()
    batch = next(problem.batches(8, torch.Generator().manual_seed(0)))
    ce = F.cross_entropy(model(batch[0]), batch[1])
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    assert len(weights) == (4 if name == "mnist_2c2d" else 6)
    penalty = 0.5 * weight_decay * sum(float(w.detach().double().pow(2).sum()) for w in weights)
    assert penalty > 0
    assert problem.loss(model, batch).item() == pytest.approx(ce.item() + penalty, rel=1e-5)
    # gradient of the penalty is weight_decay * w, as torch's optimizer weight_decay
    model.zero_grad()
    (problem.loss(model, batch) - ce.detach()).backward()
    grads = [p.grad.clone() for p in weights]
    model.zero_grad()
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    for w, g in zip(weights, grads, strict=True):
        torch.testing.assert_close(g - w.grad, weight_decay * w.detach(), rtol=1e-3, atol=1e-6)
    plain = BUILDERS[name](**SMALL, weight_decay=0.0)
    assert plain.loss(model, batch).item() == pytest.approx(ce.item(), rel=1e-6)
    # evaluated losses stay plain cross-entropy, whatever the weight decay
    assert problem.evaluate(model) == pytest.approx(plain.evaluate(model), rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILDERS)
def test_evaluate_reports_every_split_and_caps_at_eval_size(raw, name):
    capped = BUILDERS[name](valid_size=10, eval_size=4)
    full = BUILDERS[name](**SMALL)
    torch.manual_seed(0)
    model = full.init_model()
    metrics = full.evaluate(model)
    assert set(metrics) == {f"{s}_{m}" for s in ("train", "valid", "test") for m in ("loss", "accuracy")}
    assert all(math.isfinite(v) for v in metrics.values())
    assert full.maximize == {"train_accuracy", "valid_accuracy", "test_accuracy"}
    for split, (X, y) in full.splits.items():
        logits = model(X)
        assert metrics[f"{split}_loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
        assert metrics[f"{split}_accuracy"] == pytest.approx((logits.argmax(1) == y).double().mean().item())
    small = capped.evaluate(model)
    for split, (X, y) in capped.splits.items():
        rows = np.random.RandomState(0).permutation(len(y))[:4]  # the documented subset
        assert np.array_equal(eval_indices(len(y), 4), rows)
        logits = model(X[rows])
        assert small[f"{split}_loss"] == pytest.approx(F.cross_entropy(logits, y[rows]).item(), rel=1e-5)
        assert small[f"{split}_accuracy"] * 4 == pytest.approx(round(small[f"{split}_accuracy"] * 4))
    assert eval_indices(10, 10) is None and eval_indices(10, 11) is None


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILDERS)
def test_a_few_optimizer_steps_fit_the_tiny_training_set(raw, name):
    problem = BUILDERS[name](**SMALL)
    torch.manual_seed(0)
    model = problem.init_model()
    before = problem.evaluate(model)["train_loss"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = problem.batches(10, torch.Generator().manual_seed(0))
    for _ in range(60):
        optimizer.zero_grad()
        loss = problem.loss(model, next(batches))
        loss.backward()
        optimizer.step()
        assert math.isfinite(loss.item())
    after = problem.evaluate(model)
    assert after["train_loss"] < before and after["train_accuracy"] > 0.5


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_architectures_have_the_deepobs_sizes():
    torch.manual_seed(0)
    net = vision.net_2c2d()
    assert _count(net) == (32 * 1 * 25 + 32) + (64 * 32 * 25 + 64) + (7 * 7 * 64 * 1024 + 1024) + (1024 * 10 + 10)
    assert net[:7](torch.zeros(2, 1, 28, 28)).shape == (2, 7 * 7 * 64)
    net = vision.net_3c3d()
    assert _count(net) == (64 * 3 * 25 + 64) + (96 * 64 * 9 + 96) + (128 * 96 * 9 + 128) \
        + (128 * 3 * 3 * 512 + 512) + (512 * 256 + 256) + (256 * 10 + 10)
    features = net[:13]
    assert isinstance(net[13], torch.nn.Linear)
    assert features(torch.zeros(2, 3, 32, 32)).shape == (2, 128 * 3 * 3)


def test_3c3d_pools_like_tensorflow_same():
    """A 3x3/2 'same' pool on 28 pixels covers rows 0-2, 2-4, ..., 26-27 plus one zero row, as in DeepOBS."""
    torch.manual_seed(0)
    net = vision.net_3c3d()
    pad, pool = net[2], net[3]
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 27, 27] = 1.0
    out = pool(pad(x))
    assert out.shape == (1, 1, 14, 14) and out[0, 0, 13, 13] == 1.0 and out.sum() == 1.0
    # windows start at even rows 0, 2, 4, ... (PyTorch's symmetric padding=1 would start them at -1, 1, 3, ...),
    # so row and column 2 fall in the first two windows each way
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 2, 2] = 1.0
    out = pool(pad(x))[0, 0]
    assert out[:2, :2].tolist() == [[1.0, 1.0], [1.0, 1.0]] and out.sum() == 4.0
    assert torch.equal(pool(pad(x)), F.max_pool2d(F.pad(x, (0, 1, 0, 1)), 3, 2))


@pytest.mark.slow
def test_logreg_and_mlp_have_the_deepobs_sizes_and_initialisation():
    torch.manual_seed(0)
    logreg = vision.net_logreg()
    assert _count(logreg) == 784 * 10 + 10 and all(torch.all(p == 0) for p in logreg.parameters())
    assert logreg(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    mlp = vision.net_mlp()
    dense = [m for m in mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dense] == [(784, 1000), (1000, 500), (500, 100), (100, 10)]
    assert sum(isinstance(m, torch.nn.ReLU) for m in mlp) == 3
    for layer in dense:
        assert torch.all(layer.bias == 0) and layer.weight.abs().max() <= 0.06
        assert layer.weight.std().item() == pytest.approx(0.03 * 0.88, rel=0.1)  # std 0.03 truncated at 2 std


@pytest.mark.slow
def test_initialisation_follows_deepobs():
    torch.manual_seed(0)
    net = vision.net_2c2d()
    for layer in (net[0], net[3], net[7], net[9]):
        assert torch.all(layer.bias == 0.05) and layer.weight.abs().max() <= 0.1
        assert layer.weight.std().item() == pytest.approx(0.05 * 0.88, rel=0.2)  # truncated at 2 std
    net = vision.net_3c3d()
    for layer in (m for m in net if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)):
        assert torch.all(layer.bias == 0)
        fan_in = layer.weight[0].numel()
        fan_out = layer.weight.shape[0] * layer.weight[0, 0].numel()
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.2)


@pytest.mark.parametrize("name", BUILDERS)
def test_missing_data_raises_dataset_not_found(tmp_path, monkeypatch, name):
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path / "nonexistent"))
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIR", tmp_path / "no-system-data")
    with pytest.raises(DatasetNotFound, match="not found") as info:
        BUILDERS[name]()
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "nonexistent") in message and "--data-dir" in message


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize(("options", "message"), [
    ({"valid_size": 0}, "valid_size=0"),
    ({"valid_size": 2.5}, "valid_size=2.5"),
    ({"eval_size": 0}, "eval_size=0"),
    ({"weight_decay": -0.1}, "weight_decay=-0.1"),
    ({"weight_decay": float("nan")}, "weight_decay=nan"),
])
def test_bad_options_raise_a_value_error_naming_them(tmp_path, monkeypatch, name, options, message):
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path / "nonexistent"))  # checked before any file is read
    with pytest.raises(ValueError, match=message.replace(".", r"\.")) as info:
        BUILDERS[name](**options)
    assert not isinstance(info.value, DatasetNotFound)


@pytest.mark.parametrize("name", BUILDERS)
def test_valid_size_must_leave_training_images(raw, name):
    n = _n_train(name)
    with pytest.raises(ValueError, match=f"valid_size={n} .*< {n}"):
        BUILDERS[name](valid_size=n)
    assert BUILDERS[name](valid_size=n - 1, eval_size=5).train_size == 1


def test_specs_targets_and_defaults():
    specs = {spec.name: spec for spec in optbench_problems()}
    assert set(specs) == set(BUILDERS)
    for name, spec in specs.items():
        defaults = {key: p.default for key, p in inspect.signature(BUILDERS[name]).parameters.items()
                    if key != "device"}
        assert dict(spec.options) == defaults  # every option listed, with the builder's default
        assert spec.build is BUILDERS[name]
        assert spec.batch_size == 128 and spec.budget.unit == "epochs"
        assert spec.description and "\n" not in spec.description and "--data-dir" in spec.description
    assert specs["mnist_2c2d"].options["valid_size"] == 10000 and specs["cifar10_3c3d"].options["valid_size"] == 5000
    assert specs["cifar10_3c3d"].options["weight_decay"] == 0.002 and specs["fmnist_2c2d"].options["weight_decay"] == 0
    assert all(spec.options["eval_size"] == 10000 for spec in specs.values())
    assert specs["mnist_2c2d"].budget == Budget("epochs", 10) == specs["fmnist_2c2d"].budget
    assert specs["cifar10_3c3d"].budget == Budget("epochs", 20)
    for name in ("mnist_logreg", "fmnist_logreg", "mnist_mlp", "fmnist_mlp"):
        assert specs[name].budget == Budget("epochs", 5) and specs[name].options["weight_decay"] == 0
    targets = {"mnist_2c2d": vision.MNIST_TARGET, "fmnist_2c2d": vision.FMNIST_TARGET,
               "cifar10_3c3d": vision.CIFAR10_TARGET, "mnist_logreg": vision.MNIST_LOGREG_TARGET,
               "fmnist_logreg": vision.FMNIST_LOGREG_TARGET, "mnist_mlp": vision.MNIST_MLP_TARGET,
               "fmnist_mlp": vision.FMNIST_MLP_TARGET}
    assert {name: t.value for name, t in targets.items() if "2c2d" in name or "3c3d" in name} == \
        {"mnist_2c2d": 0.98, "fmnist_2c2d": 0.88, "cifar10_3c3d": 0.70}
    for name, target in targets.items():
        assert target.metric == "valid_accuracy" and 0.5 < target.value < 1
        assert str(target.value) in specs[name].description


@pytest.mark.parametrize("name", BUILDERS)
def test_built_problem_carries_its_target(raw, name):
    problem = BUILDERS[name](**SMALL)
    assert isinstance(problem, VisionProblem)
    assert problem.target.metric == "valid_accuracy" and problem.target.metric in problem.maximize


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILDERS)
def test_the_runner_trains_a_trial(raw, name):
    catalog = load_catalog()
    if name not in catalog.problems:  # until the plugin is registered as an entry point, load it as a file
        catalog = load_catalog([vision.__file__])
    options = dict(catalog.problems[name].options) | SMALL
    config = TrialConfig(problem=name, optimizer="sgd", hyperparams={"lr": 0.01}, budget=Budget("epochs", 1),
                         batch_size=8, problem_options=options, evals=1)
    result = run_trial(config, ProblemCache(catalog))
    assert result.status == "ok", result.error
    assert result.steps == (_n_train(name) - 10) // 8 and len(result.curve) == 2
    assert {"valid_accuracy", "test_loss", "train_loss"} <= set(result.final)
    assert all(math.isfinite(v) for v in result.final.values())
