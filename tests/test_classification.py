"""ClassificationProblem against its documented data order and against metrics computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench_core.classification import ClassificationProblem


def data(n: int, features: int = 3, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose first feature is their index, so a batch tells which rows it holds."""
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, features, generator=generator, dtype=torch.float64)
    X[:, 0] = torch.arange(n)
    y = torch.randint(classes, (n,), generator=generator, dtype=torch.int32)
    return X, y


def linear(features: int = 3, classes: int = 4) -> nn.Module:
    return nn.Linear(features, classes)


def problem(n_train: int = 10, **kwargs) -> ClassificationProblem:
    return ClassificationProblem(data(n_train), data(7, seed=1), data(5, seed=2), model_factory=linear, **kwargs)


def test_batches_follow_the_documented_randperm_order_and_drop_the_partial_batch():
    p = problem(10)
    X, y = data(10)
    batches = p.batches(3, torch.Generator().manual_seed(7))
    reference = torch.Generator().manual_seed(7)
    for _epoch in range(3):
        perm = torch.randperm(10, generator=reference)
        seen = []
        for k in range(3):  # 10 // 3 full batches; perm[9] is dropped
            xb, yb = next(batches)
            idx = perm[3 * k:3 * k + 3]
            assert torch.equal(xb, X[idx].float()) and torch.equal(yb, y[idx].long())
            seen += xb[:, 0].long().tolist()
        assert sorted(seen) == sorted(perm[:9].tolist())
        assert perm[9].item() not in seen


def test_a_batch_of_the_whole_training_set_is_the_training_set_as_stored_every_step():
    p = problem(6)
    X, y = p.splits["train"]
    batches = p.batches(6, torch.Generator().manual_seed(0))
    for _ in range(3):  # no shuffle, no copy (the order of rows does not change a mean loss)
        xb, yb = next(batches)
        assert xb is X and yb is y


@pytest.mark.parametrize("batch_size", [11, 0, -1, 2.0, True])
def test_impossible_batch_sizes_raise_at_once(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        problem(10).batches(batch_size, torch.Generator())


def test_a_batch_larger_than_the_training_set_says_so():
    with pytest.raises(ValueError, match="exceeds the 10 training samples"):
        problem(10).batches(11, torch.Generator())


@pytest.mark.slow
def test_a_plain_pytorch_loop_reproduces_training():
    p = problem(20)
    X, y = data(20)
    torch.manual_seed(3)
    model = p.init_model()
    torch.manual_seed(3)
    reference = linear()
    batches = p.batches(4, torch.Generator().manual_seed(3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(3)
    for _epoch in range(3):
        perm = torch.randperm(20, generator=generator)
        for k in range(5):
            idx = perm[4 * k:4 * k + 4]
            ref_opt.zero_grad()
            F.cross_entropy(reference(X[idx].float()), y[idx].long()).backward()
            ref_opt.step()
            opt.zero_grad()
            p.loss(model, next(batches)).backward()
            opt.step()
    for mine, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_evaluate_matches_metrics_computed_by_hand_in_eval_mode():
    splits = {"train": data(10), "valid": data(7, seed=1), "test": data(5, seed=2)}
    p = ClassificationProblem(*splits.values(), eval_batch_size=3,
                              model_factory=lambda: nn.Sequential(nn.Dropout(0.5), linear()))
    torch.manual_seed(0)
    model = p.init_model()
    model.train()
    metrics = p.evaluate(model)
    assert model.training  # the mode is restored
    assert set(metrics) == {f"{s}_{m}" for s in splits for m in ("loss", "accuracy")}
    layer = model[1]
    for name, (X, y) in splits.items():
        with torch.no_grad():
            logits = layer(X.float())  # eval mode: dropout is the identity
        assert metrics[f"{name}_loss"] == pytest.approx(F.cross_entropy(logits, y.long()).item(), rel=1e-5)
        accuracy = (logits.argmax(1) == y.long()).double().mean().item()
        assert metrics[f"{name}_accuracy"] == pytest.approx(accuracy, abs=1e-6)
        assert all(isinstance(v, float) for v in metrics.values())
    model.eval()
    p.evaluate(model)
    assert not model.training


def test_metadata_data_placement_and_loss():
    p = problem(10)
    assert p.train_size == 10 and p.stochastic
    assert p.maximize == frozenset({"train_accuracy", "valid_accuracy", "test_accuracy"})
    for X, y in p.splits.values():
        assert X.dtype == torch.float32 and y.dtype == torch.long
        assert X.device == p.device == y.device
    xb, yb = next(p.batches(5, torch.Generator().manual_seed(0)))
    model = p.init_model()
    assert p.loss(model, (xb, yb)).item() == pytest.approx(F.cross_entropy(model(xb), yb).item())


def test_valid_and_test_are_optional():
    p = ClassificationProblem(data(8), model_factory=linear)
    assert set(p.evaluate(p.init_model())) == {"train_loss", "train_accuracy"}
    assert p.maximize == frozenset({"train_accuracy"})


def test_a_subclass_may_override_init_model_instead_of_passing_a_factory():
    class Mine(ClassificationProblem):
        def init_model(self) -> nn.Module:
            return linear()

    p = Mine(data(8))
    loss = p.evaluate(p.init_model())["train_loss"]
    assert math.isfinite(loss)
    with pytest.raises(TypeError, match="model_factory"):
        ClassificationProblem(data(8))


@pytest.mark.parametrize(("train", "message"), [
    ((torch.zeros(4, 3), torch.zeros(5, dtype=torch.long)), "shape"),
    ((torch.zeros(4, 3), torch.zeros(4)), "integers"),
    ((torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), "empty"),
])
def test_malformed_splits_are_rejected(train, message):
    with pytest.raises(ValueError, match=message):
        ClassificationProblem(train, model_factory=linear)
