"""Real Fashion-MNIST, where the system has it (Debian's dataset-fashion-mnist; CI installs it).

Each test skips, saying why, where the files are absent. What they guard: the official files read
back to their documented shapes and class counts, the problems split them as documented, and a
short real training run reaches an accuracy that a broken pipeline (shuffled labels, images not
scaled, a wrong split) cannot.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench_core.problems import datasets, vision
from bench_core.runner import ProblemCache, run_trial
from bench_core.specs import Budget
from bench_core.testing import problem_checks
from bench_core.trial import TrialConfig


@pytest.fixture
def system_fashion_mnist(monkeypatch, tmp_path):
    """Only the system's copy: no $OPTBENCH_DATA_DIR, and a ./data that holds nothing."""
    monkeypatch.delenv("OPTBENCH_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        folder = datasets.locate("fashion_mnist")
    except datasets.DatasetNotFound:
        pytest.skip(f"real Fashion-MNIST not installed in {datasets.SYSTEM_DATA_DIR}/fashion-mnist "
                    "(apt-get install dataset-fashion-mnist)")
    assert folder == datasets.SYSTEM_DATA_DIR / "fashion-mnist"
    return folder


def test_the_official_files_read_back_to_their_documented_shapes_and_classes(system_fashion_mnist):
    data = datasets.load_fashion_mnist()
    for split, n in (("train", 60_000), ("test", 10_000)):
        images, labels = data[split]["images"], data[split]["labels"]
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8 and labels.shape == (n,)
        assert np.bincount(labels, minlength=10).tolist() == [n // 10] * 10  # ten classes, balanced
        assert images.min() == 0 and images.max() == 255


@pytest.mark.slow
def test_the_problems_split_the_real_files_as_documented(system_fashion_mnist):
    problem = vision.build_fmnist_mlp()
    sizes = {name: len(y) for name, (_, y) in problem.splits.items()}
    assert sizes == {"train": 50_000, "valid": 10_000, "test": 10_000}
    X, _ = problem.splits["train"]
    assert float(X.min()) >= 0.0 and float(X.max()) <= 1.0  # pixels scaled to [0, 1]
    spec = {spec.name: spec for spec in vision.optbench_problems()}["fmnist_mlp"]
    checks = dict(problem_checks(spec, reach_target=False))
    checks["disjoint_splits"]()  # no image in two splits (raises on overlap)


@pytest.mark.slow
def test_a_short_real_run_reaches_an_accuracy_a_broken_pipeline_cannot(system_fashion_mnist, catalog):
    """Adam at 1e-3 for 400 steps of batch 128 (under one epoch) on fmnist_mlp: measured 0.84-0.85 validation
    accuracy here; shuffled labels give about 0.1, unscaled pixels or a split mixing classes well under 0.8."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        options = dict(catalog.problems["fmnist_mlp"].options)
        config = TrialConfig(problem="fmnist_mlp", optimizer="adam", hyperparams={"lr": 1e-3},
                             budget=Budget("steps", 400), batch_size=128, problem_options=options, evals=1, seed=0)
        result = run_trial(config, ProblemCache(catalog))
    finally:
        torch.set_num_threads(threads)
    assert result.status == "ok", result.error
    assert result.final["valid_accuracy"] >= 0.80, result.final
    assert result.final["test_accuracy"] >= 0.78, result.final
