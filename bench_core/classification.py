"""A reusable base for supervised classification problems on in-memory tensors.

Small data sets fit on the device whole, so a problem built on this class never copies
data from the host during training: batches are gathered on the device with indices
drawn there. Like every built-in problem it uses nothing but the public plugin API, so
third-party plugins can subclass it too.

Training batches follow :func:`bench_core.batching.shuffled_batches` (one randperm per
epoch, the last partial batch dropped), documented there exactly so a plain PyTorch loop
can reproduce a trial's batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from bench_core.batching import shuffled_batches, stacked_shuffled_batches
from bench_core.specs import Problem

__all__ = ["SPLITS", "ClassificationProblem", "Split"]

SPLITS = ("train", "valid", "test")
#: Layers ``vmap`` turns into grouped convolutions (see :attr:`ClassificationProblem.vectorizable`).
CONVOLUTIONS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d,
                torch.nn.ConvTranspose3d)
#: (inputs, integer class labels) of one split.
Split = tuple[torch.Tensor, torch.Tensor]


class ClassificationProblem(Problem):
    """Cross-entropy classification of in-memory tensors, held on the device.

    ``train``, ``valid`` and ``test`` are ``(X, y)`` pairs: ``X`` of shape ``(n, ...)``
    (converted to float32), ``y`` integer labels of shape ``(n,)``. ``valid`` and ``test``
    may be ``None``; their metrics are then left out. The model comes from
    ``model_factory()`` when one is given, else a subclass overrides :meth:`init_model`;
    either way it must map a batch ``X`` to logits ``(batch, classes)``.

    :meth:`evaluate` reports ``<split>_loss`` (mean cross-entropy) and ``<split>_accuracy``
    on every sample of each split, in chunks of ``eval_batch_size`` rows so large splits
    fit in memory. Where scoring a whole split at every evaluation costs too much, a
    subclass sets ``eval_rows[split]`` to a fixed index tensor (on the device) of the rows
    to score; ``None`` (the default) means every row.

    Trials run as groups (:attr:`vectorizable`): a cross-entropy of a model's logits batches under
    ``torch.func.vmap``. A model that draws random numbers (dropout) or has buffers (batch norm)
    cannot; its groups fall back to one trial at a time by themselves.
    """

    @property
    def vectorizable(self) -> bool:  # type: ignore[override]
        """Whether trials run as groups: yes, except a model with convolutions on the CPU.

        ``vmap`` runs a stack of K convolutions as one grouped convolution, which torch's CPU kernels run
        slower than K separate ones (``digits_cnn``, forward and backward at batch 128: 1.7x slower for
        K = 10; at batch 16 1.15x faster), and a convolutional net's step is compute-bound anyway, so
        there is nothing to win. On a GPU, groups of them are formed.
        """
        if self.device.type != "cpu":
            return True
        if getattr(self, "_has_convolutions", None) is None:
            with torch.random.fork_rng(devices=[]):  # the harness's seeding of the global RNG is left alone
                model = self.init_model()
            self._has_convolutions = any(isinstance(m, CONVOLUTIONS) for m in model.modules())
        return not self._has_convolutions

    def __init__(
        self,
        train: Split,
        valid: Split | None = None,
        test: Split | None = None,
        *,
        device: torch.device | str = "cpu",
        model_factory: Callable[[], torch.nn.Module] | None = None,
        eval_batch_size: int = 4096,
    ) -> None:
        super().__init__(device)
        if model_factory is None and type(self).init_model is ClassificationProblem.init_model:
            raise TypeError(f"{type(self).__name__}: give a model_factory or override init_model()")
        if eval_batch_size < 1:
            raise ValueError(f"eval_batch_size={eval_batch_size!r} must be >= 1")
        self.model_factory = model_factory
        self.eval_batch_size = int(eval_batch_size)
        self.splits: dict[str, Split] = {}
        for name, split in zip(SPLITS, (train, valid, test), strict=True):
            if split is not None:
                self.splits[name] = self._checked(name, split)
        self.train_size = len(self.splits["train"][1])
        self.eval_rows: dict[str, torch.Tensor | None] = dict.fromkeys(self.splits)
        self.stochastic = True
        self.maximize = frozenset(f"{name}_accuracy" for name in self.splits)

    def _checked(self, name: str, split: Split) -> Split:
        X, y = split
        X, y = torch.as_tensor(X), torch.as_tensor(y)
        if y.ndim != 1 or X.ndim < 1 or len(X) != len(y):
            raise ValueError(f"{name} split: expected X of shape (n, ...) and y of shape (n,), "
                             f"got {tuple(X.shape)} and {tuple(y.shape)}")
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise ValueError(f"{name} split: labels must be integers, got {y.dtype}")
        if len(y) == 0:
            raise ValueError(f"{name} split is empty (pass None to leave a split out)")
        return X.to(device=self.device, dtype=torch.float32), y.to(device=self.device, dtype=torch.long)

    def split_inputs(self) -> dict[str, torch.Tensor]:
        """The ``X`` of each split held, for the conformance kit's overlap check."""
        return {name: X for name, (X, _) in self.splits.items()}

    def init_model(self) -> torch.nn.Module:
        """``model_factory()``; subclasses without a factory override this."""
        if self.model_factory is None:
            raise NotImplementedError(f"{type(self).__name__} has no model_factory")
        return self.model_factory()

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Split]:
        """Endless ``(X[idx], y[idx])`` batches in :func:`~bench_core.batching.shuffled_batches` order.

        Raises ``ValueError`` right away (not at the first ``next``) when ``batch_size``
        exceeds the training set, since no full batch could ever be drawn.
        """
        return shuffled_batches(self.splits["train"], batch_size, generator)

    def stacked_batches(self, batch_size: int, generators: Sequence[torch.Generator]) -> Iterator[Split]:
        """K trials' batches in one gather (:func:`~bench_core.batching.stacked_shuffled_batches`)."""
        return stacked_shuffled_batches(self.splits["train"], batch_size, list(generators))

    def loss(self, model: torch.nn.Module, batch: Split) -> torch.Tensor:
        """Mean cross-entropy of the model's logits on the batch."""
        X, y = batch
        return F.cross_entropy(model(X), y)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Loss and accuracy on every sample of each split, in eval mode, with one host sync."""
        was_training = model.training
        model.eval()
        names, values = [], []
        try:
            with torch.no_grad():
                for name, (X, y) in self.splits.items():
                    rows = self.eval_rows.get(name)
                    n = len(y) if rows is None else len(rows)
                    loss_sum = torch.zeros((), device=self.device)
                    correct = torch.zeros((), device=self.device, dtype=torch.long)
                    for start in range(0, n, self.eval_batch_size):
                        chunk = slice(start, start + self.eval_batch_size)
                        index = chunk if rows is None else rows[chunk]  # gather one chunk at a time, not the split
                        logits = model(X[index])
                        target = y[index]
                        loss_sum += F.cross_entropy(logits.float(), target, reduction="sum")
                        correct += (logits.argmax(-1) == target).sum()
                    names += [f"{name}_loss", f"{name}_accuracy"]
                    values += [loss_sum / n, correct.float() / n]
        finally:
            model.train(was_training)
        return dict(zip(names, torch.stack(values).tolist(), strict=True))
