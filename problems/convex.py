"""Convex ML problems with a reference optimum, so reports can show the suboptimality f - f*.

On a convex problem the best achievable training loss f* is a number we can compute,
so "how far is this optimizer from done" has an exact answer: ``train_suboptimality =
f(w) - f*``. Deep-learning problems only offer "lower than another optimizer". Both
problems here fit a linear model ``nn.Linear(d, 1)``, and both compute f* without any
torch optimizer, in float64:

* ``least_squares``: synthetic linear regression whose design matrix has an exactly
  chosen condition number; f* in closed form (``numpy.linalg.lstsq``).
* ``logistic``: L2-regularised logistic regression on scikit-learn's bundled breast-cancer
  data (569 samples, 30 features, no download); f* from SciPy's L-BFGS-B with a tight
  tolerance, polished by Newton steps and checked by the gradient norm at the solution.

Shared conventions (:class:`LinearModelProblem`):

* The data set is part of the problem, not of the trial: it depends on the ``data_seed``
  option only (default 0), never on the trial seed. Every value is rounded to float32
  once; the training tensors (float32, on the problem's device) hold exactly those values,
  and so do the float64 host copies that the reference optimum and the metrics use, so f*
  is the minimum of the very objective torch trains on.
* The model starts at ZERO, weights and bias: f(w0) is the same for every seed (seeds
  differ only in their data order), which makes a target relative to f(w0) - f* a fixed
  number.
* Batches follow :func:`bench_core.batching.shuffled_batches`: each epoch one
  ``torch.randperm(n_train, generator=generator, device=device)`` cut into full batches,
  the last partial batch dropped; a batch of the whole training set is the data as stored.
* :meth:`~LinearModelProblem.evaluate` copies the weights to the host and computes every
  metric in float64 with NumPy, with the same function that defined f*. In float32,
  ``f(w) - f*`` would lose its digits as it shrinks (float32 resolves about 1e-7 of f*,
  and summing a thousand rows loses more), so a learning curve of the suboptimality
  would end in rounding noise; in float64 it is good to about 1e-15. The splits are
  small: this costs well under a millisecond.
* Target: ``train_suboptimality <= 1e-3 * (f(w0) - f*)``, i.e. 99.9% of the initial gap closed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit
from torch import nn

from bench_core import Budget, Problem, ProblemSpec, Target, hookimpl, shuffled_batches, stacked_shuffled_batches
from bench_core.options import check_elements, check_integer, check_number

#: The plugin contract this module is written for (see bench_core.hookspecs).
OPTBENCH_CONTRACT = 1

__all__ = [
    "LeastSquaresProblem",
    "LinearData",
    "LinearModelProblem",
    "LogisticProblem",
    "breast_cancer_splits",
    "build_least_squares",
    "build_logistic",
    "least_squares_data",
    "logistic_data",
    "logistic_gradient",
    "logistic_hessian",
    "logistic_objective",
    "optbench_problems",
    "split_sizes",
    "squared_objective",
]

SPLITS = ("train", "valid", "test")
TRAIN_FRACTION, VALID_FRACTION = 0.6, 0.2
#: The target closes this fraction of the initial gap: train_suboptimality <= TARGET_FRACTION * (f(w0) - f*).
TARGET_FRACTION = 1e-3
#: The logistic reference optimum is rejected unless its gradient norm is below this.
LOGISTIC_GRADIENT_TOLERANCE = 1e-9

#: (X (n, d), y (n,)) of one split, float64 holding float32-representable values.
Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class LinearData:
    """A fixed data set and the reference minimiser of its training objective (float64, read-only).

    ``theta_star`` is the flat parameter vector: the d weights, then the bias if the model
    has one. ``f_star`` is the training objective there.
    """

    splits: Mapping[str, Arrays]
    theta_star: np.ndarray
    f_star: float


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays rounded to float32 and back (what the training tensors hold), made read-only."""
    out = []
    for array in arrays:
        array = np.asarray(array, dtype=np.float32).astype(np.float64)
        array.flags.writeable = False
        out.append(array)
    return tuple(out)


def split_sizes(n: int) -> tuple[int, int, int]:
    """Rows in train / valid / test: 60% / 20% / the rest."""
    n_train, n_valid = int(TRAIN_FRACTION * n), int(VALID_FRACTION * n)
    return n_train, n_valid, n - n_train - n_valid


class LinearModelProblem(Problem):
    """Shared base: ``nn.Linear(d, 1)`` on in-memory float32 tensors, scored against a known optimum.

    A subclass sets :attr:`bias`, implements :meth:`objective` (the float64 NumPy training
    objective of a flat parameter vector, the one f* minimises), :meth:`loss` (the same
    objective on a batch in torch, for training) and :meth:`split_metrics` (per-split
    metrics; ``train_loss`` is always :meth:`objective`).
    """

    #: Trials run as groups: the loss batches under ``torch.func.vmap`` (see :mod:`bench_core.vectorized`).
    vectorizable = True


    bias: bool = False

    def __init__(self, data: LinearData, device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.data = data
        X, y = data.splits["train"]
        self.X_train = torch.tensor(X, dtype=torch.float32, device=self.device)
        self.y_train = torch.tensor(y, dtype=torch.float32, device=self.device)
        self.train_size = len(y)
        self.dim = X.shape[1]
        self.stochastic = True
        self.f_initial = self.objective(np.zeros(self.dim + self.bias))
        self.target = Target("train_suboptimality", TARGET_FRACTION * (self.f_initial - data.f_star))

    def objective(self, theta: np.ndarray) -> float:
        """The training objective at the flat parameter vector ``theta``, in float64."""
        raise NotImplementedError

    def split_metrics(self, theta: np.ndarray, split: str) -> dict[str, float]:
        """Metrics of ``theta`` on one split, named without the ``<split>_`` prefix."""
        raise NotImplementedError

    def split_inputs(self) -> dict[str, np.ndarray]:
        """The float64 ``X`` of train, valid and test, for the conformance kit's overlap check."""
        return {name: X for name, (X, _) in self.data.splits.items()}

    def init_model(self) -> nn.Module:
        """``nn.Linear(d, 1)`` at zero: a deterministic start, the same f(w0) for every seed."""
        model = nn.Linear(self.dim, 1, bias=self.bias)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.zero_()
        return model

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless ``(X[idx], y[idx])`` batches in ClassificationProblem's documented randperm order."""
        return shuffled_batches((self.X_train, self.y_train), batch_size, generator)

    def stacked_batches(self, batch_size: int, generators: Sequence[torch.Generator]) -> Iterator[Any]:
        """K trials' batches in one gather (:func:`bench_core.batching.stacked_shuffled_batches`)."""
        return stacked_shuffled_batches((self.X_train, self.y_train), batch_size, list(generators))

    def parameters64(self, model: nn.Module) -> np.ndarray:
        """The model's flat parameter vector (weights, then bias) as float64 on the host."""
        parts = [model.weight.detach().reshape(-1)]
        if self.bias:
            parts.append(model.bias.detach().reshape(-1))
        return torch.cat(parts).to(device="cpu", dtype=torch.float64).numpy()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Float64 metrics from the model's weights: train loss, suboptimality, distance, held-out metrics."""
        theta = self.parameters64(model)
        metrics = {f"{split}_{name}": value
                   for split in SPLITS for name, value in self.split_metrics(theta, split).items()}
        train_loss = self.objective(theta)
        return metrics | {
            "train_loss": train_loss,
            "train_suboptimality": train_loss - self.data.f_star,
            "distance_to_optimum": float(np.linalg.norm(theta - self.data.theta_star)),
        }


# --- least squares -----------------------------------------------------------------------------


def squared_objective(theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """``0.5 * mean((X theta - y)^2)`` in float64."""
    residual = X @ theta - y
    return 0.5 * float(residual @ residual) / len(y)


@functools.cache
def least_squares_data(n: int, dim: int, condition: float, noise: float, data_seed: int) -> LinearData:
    """The synthetic regression data and its closed-form optimum, built once per option set.

    Draws, in this order, from ``numpy.random.default_rng(data_seed)``: a random orthogonal
    V (d x d), orthonormal columns U (n_train x d), the valid and test rows Z (standard
    normal), w_true ~ N(0, I_d), then the noise of each split. With singular values
    ``s`` log-spaced from 1 down to ``1/condition``::

        X_train = sqrt(n_train) * U diag(s) V^T      # X_train^T X_train / n_train = V diag(s^2) V^T
        X_valid, X_test = Z diag(s) V^T              # rows with the same population covariance
        y = X w_true + noise * N(0, 1)

    so the training Hessian has eigenvalues s^2, from exactly 1 down to 1/condition^2.
    """
    n_train, n_valid, n_test = split_sizes(n)
    rng = np.random.default_rng(data_seed)
    s = np.geomspace(1.0, 1.0 / condition, dim)
    V, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    U, _ = np.linalg.qr(rng.standard_normal((n_train, dim)))
    design = {
        "train": math.sqrt(n_train) * (U * s) @ V.T,
        "valid": (rng.standard_normal((n_valid, dim)) * s) @ V.T,
        "test": (rng.standard_normal((n_test, dim)) * s) @ V.T,
    }
    w_true = rng.standard_normal(dim)
    splits = {}
    for name, X in design.items():
        splits[name] = _frozen(X, X @ w_true + noise * rng.standard_normal(len(X)))
    X_train, y_train = splits["train"]
    w_star = np.linalg.lstsq(X_train, y_train, rcond=None)[0]
    w_star.flags.writeable = False
    return LinearData(splits, w_star, squared_objective(w_star, X_train, y_train))


class LeastSquaresProblem(LinearModelProblem):
    """Linear regression, ``f(w) = 1/(2 n) ||X w - y||^2`` over the training rows; no bias.

    The design matrix has condition number ``condition`` (the Hessian ``condition^2``, with
    largest eigenvalue 1, so gradient descent is stable for lr < 2): ill-conditioning is
    what separates optimizers on a quadratic. ``noise > 0`` keeps the data off the model,
    so f* > 0 (about noise^2 (1 - d/n_train) / 2) and there is a real floor to approach.
    f* and w* come in closed form from ``numpy.linalg.lstsq``; see :func:`least_squares_data`.

    Metrics: ``{train,valid,test}_loss`` (the same 0.5 * mean squared error on each split),
    ``train_suboptimality`` and ``distance_to_optimum`` = ||w - w*||.

    Defaults and budget (n 2000 -> 1200 / 400 / 400 rows, dim 50, condition 100, noise 0.1;
    batch 32, 37 steps per epoch, 50 epochs = 1850 steps): f(w0) = 2.2801, f* = 4.889e-3,
    target suboptimality <= 2.275e-3. Measured over seeds 0-4 with the runner's 20
    evaluations, lr in {1e-3, 3e-3, ..., 1}: momentum 0.9 at lr 0.1 reaches the target in
    5/5 seeds after 740-832 steps and ends at 1.1e-3 (lr 0.3: 5/5 after 648-1110, but it
    ends above the target again, 3.3e-3, at its noise floor); SGD at lr 1 in 5/5 after
    832-1018; Adam at lr 0.03 in 5/5 after 832-1018 (ends at 3.1e-3), at lr 0.1 in 3/5.
    No other setting reaches it: the slow directions (Hessian eigenvalues down to 1e-4)
    need a large, well-chosen step size. About 0.25 s per trial on one CPU thread.
    """

    bias = False

    def objective(self, theta: np.ndarray) -> float:
        return squared_objective(theta, *self.data.splits["train"])

    def split_metrics(self, theta: np.ndarray, split: str) -> dict[str, float]:
        return {"loss": squared_objective(theta, *self.data.splits[split])} if split != "train" else {}

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``0.5 * mean((X w - y)^2)`` on the batch."""
        X, y = batch
        return 0.5 * (model(X).squeeze(-1) - y).square().mean()


# --- logistic regression -----------------------------------------------------------------------


@functools.cache
def breast_cancer_splits(data_seed: int) -> dict[str, Arrays]:
    """scikit-learn's breast-cancer data, split 60/20/20 and standardised with TRAIN statistics only.

    Rows are permuted by ``numpy.random.RandomState(data_seed)`` and cut into 341 / 113 /
    115 samples; every split is shifted and scaled by the training split's per-feature mean
    and standard deviation, so nothing about held-out rows leaks into training. Labels are
    scikit-learn's (1 = benign, 0 = malignant), as floats.
    """
    from sklearn.datasets import load_breast_cancer  # imported here: listing the catalog should not pay for it

    data = load_breast_cancer()
    X, y = data.data.astype(np.float64), data.target.astype(np.float64)
    n_train, n_valid, _ = split_sizes(len(y))
    perm = np.random.RandomState(data_seed).permutation(len(y))
    rows = {"train": perm[:n_train], "valid": perm[n_train:n_train + n_valid], "test": perm[n_train + n_valid:]}
    mean, std = X[rows["train"]].mean(0), X[rows["train"]].std(0)
    return {name: _frozen((X[idx] - mean) / std, y[idx]) for name, idx in rows.items()}


def logistic_objective(theta: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float) -> float:
    """``mean(log(1 + exp(z)) - y z) + l2/2 ||w||^2`` with ``z = X w + b``, in float64 (bias unregularised)."""
    z = X @ theta[:-1] + theta[-1]
    return float(np.mean(np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * float(theta[:-1] @ theta[:-1])


def logistic_gradient(theta: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """The gradient of :func:`logistic_objective` with respect to ``(w, b)``."""
    residual = (expit(X @ theta[:-1] + theta[-1]) - y) / len(y)
    return np.append(X.T @ residual + l2 * theta[:-1], residual.sum())


def logistic_hessian(theta: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """The Hessian of :func:`logistic_objective` with respect to ``(w, b)``."""
    p = expit(X @ theta[:-1] + theta[-1])
    Xb = np.hstack([X, np.ones((len(y), 1))])
    hessian = (Xb.T * (p * (1 - p))) @ Xb / len(y)
    hessian[:-1, :-1] += l2 * np.eye(X.shape[1])
    return hessian


@functools.cache
def logistic_data(l2: float, data_seed: int) -> LinearData:
    """The breast-cancer splits and the regularised objective's minimiser, in float64 without torch.

    The objective is strictly convex (l2 > 0, and the bias is pinned down unless the data
    were separable), so the minimiser is unique. SciPy's L-BFGS-B (gtol 1e-10) gets close
    but stalls near a gradient norm of 1e-10 (float64 objective values stop decreasing),
    so a few full Newton steps with the exact Hessian finish the job (quadratic convergence
    from there: the gradient norm ends near 1e-16). Raises RuntimeError unless the gradient
    norm at the answer is below ``LOGISTIC_GRADIENT_TOLERANCE``.
    """
    from scipy.optimize import minimize

    splits = breast_cancer_splits(data_seed)
    X, y = splits["train"]
    result = minimize(logistic_objective, np.zeros(X.shape[1] + 1), args=(X, y, l2), jac=logistic_gradient,
                      method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 0.0, "maxiter": 100_000})
    theta = result.x
    for _ in range(5):
        gradient = logistic_gradient(theta, X, y, l2)
        if np.linalg.norm(gradient) < 1e-14:
            break
        theta = theta - np.linalg.solve(logistic_hessian(theta, X, y, l2), gradient)
    gradient_norm = float(np.linalg.norm(logistic_gradient(theta, X, y, l2)))
    if not gradient_norm < LOGISTIC_GRADIENT_TOLERANCE:
        raise RuntimeError(f"logistic reference optimum (l2={l2}, data_seed={data_seed}) did not converge: "
                           f"gradient norm {gradient_norm:.2e} ({result.message})")
    theta.flags.writeable = False
    return LinearData(splits, theta, logistic_objective(theta, X, y, l2))


class LogisticProblem(LinearModelProblem):
    """L2-regularised logistic regression on breast cancer; see :func:`breast_cancer_splits`.

    Training objective, with ``z_i = w . x_i + b`` and labels ``y_i`` in {0, 1}::

        f(w, b) = 1/n sum_i [log(1 + exp(z_i)) - y_i z_i] + l2/2 ||w||^2

    The bias is not regularised (as in scikit-learn's LogisticRegression, whose C is
    ``1 / (n_train * l2)``). f* comes from :func:`logistic_data`.

    Metrics: ``train_loss`` (the regularised objective above), ``valid_loss`` and
    ``test_loss`` (the UNregularised mean log loss: what a held-out split measures),
    ``{train,valid,test}_accuracy`` (predict benign when z > 0; maximized),
    ``train_suboptimality`` and ``distance_to_optimum`` = ||(w, b) - (w*, b*)||.

    Defaults and budget: ``l2 = 3e-3`` (about 1/n_train, i.e. scikit-learn's default C = 1;
    the Hessian at the optimum then has eigenvalues from 3.0e-3 to 0.198); batch 32, 10
    steps per epoch, 100 epochs = 1000 steps. f(w0) = log 2 = 0.6931, f* = 0.076940,
    target suboptimality <= 6.162e-4. Measured over seeds 0-4 with the runner's 20
    evaluations, lr in {1e-3, 3e-3, ..., 1}: momentum 0.9 at lr 0.1 reaches the target in
    5/5 seeds after 250-300 steps, Adam at lr 0.03 in 5/5 after 300-350, SGD at lr 1 in 5/5
    after 250-450 (lr 0.3: 700); seven of the 21 settings reach it in every seed. A smaller
    l2 (1e-3, Hessian condition ~170 instead of ~67) is harder: in 500 steps only momentum
    at lr 0.3 reached the same relative target, in 4 of 5 seeds. About 0.3 s per trial on
    one CPU thread.
    """

    bias = True

    def __init__(self, data: LinearData, l2: float, device: torch.device | str = "cpu") -> None:
        self.l2 = float(l2)
        super().__init__(data, device)
        self.maximize = frozenset(f"{split}_accuracy" for split in SPLITS)

    def objective(self, theta: np.ndarray) -> float:
        return logistic_objective(theta, *self.data.splits["train"], self.l2)

    def split_metrics(self, theta: np.ndarray, split: str) -> dict[str, float]:
        X, y = self.data.splits[split]
        z = X @ theta[:-1] + theta[-1]
        metrics = {"accuracy": float(np.mean((z > 0) == (y > 0.5)))}
        if split != "train":  # train_loss is the regularised objective
            metrics["loss"] = float(np.mean(np.logaddexp(0.0, z) - y * z))
        return metrics

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Mean logistic loss on the batch plus ``l2/2 ||w||^2`` (an unbiased estimate of f)."""
        X, y = batch
        data_loss = F.binary_cross_entropy_with_logits(model(X).squeeze(-1), y)
        return data_loss + 0.5 * self.l2 * model.weight.square().sum()


# --- options and specs -------------------------------------------------------------------------


def build_least_squares(device: torch.device | str = "cpu", n: int = 2000, dim: int = 50, condition: float = 100.0,
                        noise: float = 0.1, data_seed: int = 0) -> LeastSquaresProblem:
    """The ``least_squares`` spec's builder: options are validated, a bad one raises ValueError."""
    check_integer("dim", dim, 1)
    check_integer("n", n, 1)
    check_number("condition", condition, 1.0)
    check_number("noise", noise, 0.0)
    check_integer("data_seed", data_seed, 0)
    check_elements(f"n={n!r}, dim={dim!r}", int(n) * int(dim))
    n_train, n_valid, n_test = split_sizes(int(n))
    if n_train < dim or min(n_valid, n_test) < 1:
        raise ValueError(f"n={n!r} is invalid: its 60% training rows must number at least dim={dim!r}, "
                         "and valid and test need a row each")
    data = least_squares_data(int(n), int(dim), float(condition), float(noise), int(data_seed))
    return LeastSquaresProblem(data, device)


def build_logistic(device: torch.device | str = "cpu", l2: float = 3e-3, data_seed: int = 0) -> LogisticProblem:
    """The ``logistic`` spec's builder: options are validated, a bad one raises ValueError."""
    check_number("l2", l2, 0.0, strict=True)
    check_integer("data_seed", data_seed, 0)
    return LogisticProblem(logistic_data(float(l2), int(data_seed)), l2, device)


@hookimpl
def optbench_problems() -> list[ProblemSpec]:
    return [
        ProblemSpec(
            "least_squares", build_least_squares,
            options={"n": 2000, "dim": 50, "condition": 100.0, "noise": 0.1, "data_seed": 0},
            description="Synthetic linear regression, design condition number 100, closed-form f*; "
                        "target suboptimality <= 1e-3 (f(w0) - f*)",
            batch_size=32, budget=Budget("epochs", 50),
        ),
        ProblemSpec(
            "logistic", build_logistic, options={"l2": 3e-3, "data_seed": 0},
            description="L2-regularised logistic regression on scikit-learn's breast cancer, f* from "
                        "L-BFGS-B + Newton; target suboptimality <= 1e-3 (f(w0) - f*)",
            batch_size=32, budget=Budget("epochs", 100),
        ),
    ]
