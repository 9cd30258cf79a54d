"""Tiny data sets in the official file formats, written by tests: no real data set is needed."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

N_TRAIN, N_TEST = 40, 8
CIFAR_PER_BATCH, CIFAR_TEST = 6, 7


def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    return struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.tobytes()


def write_mnist_files(folder: Path, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random MNIST-format files (train images gzipped, the rest plain) in ``folder``; returns the arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    arrays = {}
    for split, prefix, n in (("train", "train", N_TRAIN), ("test", "t10k", N_TEST)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
        arrays[split] = (images, labels)
    return arrays


def write_cifar_files(folder: Path, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random CIFAR-10 binary batches in ``folder``; returns the train and test arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    parts = []
    for name, n in [(f"data_batch_{i}.bin", CIFAR_PER_BATCH) for i in range(1, 6)] + [("test_batch.bin", CIFAR_TEST)]:
        # channel means differ, so standardisation has something to remove
        images = np.clip(rng.normal([[[60]], [[120]], [[200]]], 30, (n, 3, 32, 32)), 0, 255).astype(np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        records = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
        parts.append((images, labels))
    return {"train": (np.concatenate([p[0] for p in parts[:5]]), np.concatenate([p[1] for p in parts[:5]])),
            "test": parts[5]}


def write_tiny_datasets(root: Path) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Tiny MNIST (plain layout), Fashion-MNIST (torchvision layout) and CIFAR-10 under ``root``, by problem name."""
    mnist = write_mnist_files(root / "mnist", seed=0)
    fashion = write_mnist_files(root / "FashionMNIST" / "raw", seed=1)
    return {
        **{name: mnist for name in ("mnist_2c2d", "mnist_logreg", "mnist_mlp")},
        **{name: fashion for name in ("fmnist_2c2d", "fmnist_logreg", "fmnist_mlp")},
        "cifar10_3c3d": write_cifar_files(root / "cifar-10-batches-bin", seed=2),
    }
