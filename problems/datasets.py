"""Readers for image data sets kept as local files: MNIST, Fashion-MNIST and CIFAR-10.

optbench never downloads anything: a benchmark run should not depend on a mirror being
up, and the results should not depend on which copy was fetched. Data sets are looked
for where a user or a system package already keeps them, in this order (:func:`data_roots`):

1. the run's data folder (``--data-dir``, ``bench_core.run(data_dir=...)``), else
   ``$OPTBENCH_DATA_DIR`` when set (:func:`bench_core.data.requested_data_dir`);
2. ``./data``;
3. the system's data folder, ``/usr/share/datasets``, where Debian's data packages put
   them (``apt-get install dataset-fashion-mnist`` gives
   ``/usr/share/datasets/fashion-mnist/`` with the four official IDX files, gzipped).

Under each, the layouts that torchvision and the official archives unpack to are
recognised as they are (:data:`DATASETS`); the first folder holding every file wins.

Only plain binary formats are read (IDX for MNIST-like sets, CIFAR-10's "binary
version"), never pickles, so a data file cannot run code. Every failure is a
``ValueError`` subclass with a one-line message that the CLI prints as it is:
:class:`DatasetNotFound` (says where it looked and what to put there) and
:class:`DatasetCorrupt` (names the file and what is wrong with it).

Loaded arrays are cached per folder and per file version (path, size, modification
time), so a sweep reads the files once per process; they are shared between callers and
marked read-only.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench_core.data import DATA_DIR_ENV, requested_data_dir

__all__ = [
    "CIFAR10_RECORD_BYTES",
    "CIFAR10_TEST_FILE",
    "CIFAR10_TRAIN_FILES",
    "DATASETS",
    "MNIST_FILES",
    "SYSTEM_DATA_DIR",
    "DatasetCorrupt",
    "DatasetNotFound",
    "candidate_folders",
    "data_dir",
    "data_roots",
    "load_cifar10",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_like",
    "locate",
    "read_cifar10_batch",
    "read_idx",
]

#: Where system packages install data sets (Debian's ``dataset-*`` packages).
SYSTEM_DATA_DIR = Path("/usr/share/datasets")

#: IDX type codes and the big-endian dtypes they stand for.
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: The four files of an MNIST-like data set, by split and part.
MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
CIFAR10_IMAGE_SHAPE = (3, 32, 32)
#: One label byte, then the 32x32 red, green and blue planes.
CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32
N_CLASSES = 10


class DatasetNotFound(ValueError):
    """A data set's files are in none of the folders searched; the message says where to put them.

    ``hint`` is the short form (how to get the files), for listings.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint or message


class DatasetCorrupt(ValueError):
    """A data file exists but cannot be what it claims to be (truncated, bad header, bad labels)."""


@dataclass(frozen=True)
class Dataset:
    """Where one data set's files may lie: sub-folders of a user's data folder, of the system's, and its package."""

    title: str
    #: Sub-folders of ``$OPTBENCH_DATA_DIR`` and ``./data``: optbench's own name, then torchvision's/the archive's.
    folders: tuple[str, ...]
    #: Sub-folders of :data:`SYSTEM_DATA_DIR`.
    system_folders: tuple[str, ...]
    #: The Debian package that installs it there, if there is one.
    package: str | None = None


DATASETS = {
    "mnist": Dataset("MNIST", ("mnist", "MNIST/raw"), ("mnist",)),
    "fashion_mnist": Dataset("Fashion-MNIST", ("fashion_mnist", "FashionMNIST/raw"), ("fashion-mnist",),
                             package="dataset-fashion-mnist"),
    "cifar10": Dataset("CIFAR-10", ("cifar-10-batches-bin", "cifar10/cifar-10-batches-bin", "cifar10"),
                       ("cifar-10-batches-bin", "cifar10")),
}


def data_dir() -> Path:
    """The user's data folder: the run's (``--data-dir``), else ``$OPTBENCH_DATA_DIR``, else ``./data``."""
    return requested_data_dir() or Path("data")


def data_roots() -> list[Path]:
    """The folders data sets are looked for under, in order: the run's data folder (``--data-dir``, else
    ``$OPTBENCH_DATA_DIR``), ``./data``, the system's."""
    requested = requested_data_dir()
    return [*([requested] if requested else []), Path("data"), SYSTEM_DATA_DIR]


def candidate_folders(key: str) -> list[Path]:
    """Every folder data set ``key`` may lie in, in search order."""
    dataset = DATASETS[key]
    folders = []
    for root in data_roots():
        subs = dataset.system_folders if root == SYSTEM_DATA_DIR else dataset.folders
        folders += [root / sub for sub in subs]
    return list(dict.fromkeys(folders))


def locate(key: str) -> Path:
    """The first folder holding every file of data set ``key``; :class:`DatasetNotFound` says where it looked."""
    dataset = DATASETS[key]
    return _first_complete(dataset.title, candidate_folders(key), _expected_files(key), gz=key != "cifar10",
                           hint=_hint(dataset))


def _hint(dataset: Dataset) -> str:
    package = f"apt-get install {dataset.package}, or " if dataset.package else ""
    return (f"{package}put the files in {DATA_DIR_ENV} or ./data under {dataset.folders[0]}/ "
            "(--data-dir sets the folder)")


def _first_complete(title: str, folders: Sequence[Path], names: Sequence[str], gz: bool, hint: str) -> Path:
    """The first of ``folders`` holding every file of ``names`` (plain, or ``.gz`` where ``gz``)."""
    partial: dict[Path, list[str]] = {}
    for folder in folders:
        found = [_find(folder, name) if gz else _exact(folder, name) for name in names]
        if all(found):
            return folder
        if any(found):
            partial[folder] = [name for name, path in zip(names, found, strict=True) if path is None]
    looked = ", ".join(str(folder) for folder in folders)
    lacking = "".join(f"; {folder} lacks {', '.join(missing)}" for folder, missing in partial.items())
    form = " (optionally .gz)" if gz else " (the binary version, cifar-10-binary.tar.gz)"
    raise DatasetNotFound(f"{title} not found: looked in {looked}; it needs {', '.join(names)}{form}: "
                          f"{hint}{lacking}", hint=hint)


def _expected_files(key: str) -> list[str]:
    return [*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE] if key == "cifar10" else list(MNIST_FILES.values())


def _exact(folder: Path, name: str) -> Path | None:
    return folder / name if (folder / name).is_file() else None


def _read_bytes(path: Path) -> bytes:
    """The file's contents, gunzipped when its name ends in ``.gz``."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DatasetCorrupt(f"{path}: not a readable gzip file ({exc})") from exc


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` read transparently), in native byte order.

    IDX: two zero bytes, a type code, the number of dimensions, one big-endian uint32
    size per dimension, then the data, big-endian, row-major. Anything that does not add
    up raises :class:`DatasetCorrupt` naming the file, so a half-copied download fails
    loudly instead of training on garbage.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DatasetCorrupt(f"{path}: truncated IDX header ({len(raw)} bytes, expected at least 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise DatasetCorrupt(f"{path}: bad IDX magic {raw[:4].hex()} (must start with two zero bytes)")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise DatasetCorrupt(f"{path}: unknown IDX type code 0x{code:02X}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetCorrupt(f"{path}: truncated IDX header ({len(raw)} bytes, expected {header} for {ndim} dims)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        raise DatasetCorrupt(f"{path}: header says shape {shape} of {dtype.name}, so expected {expected} bytes "
                             f"of data, found {found} (truncated or wrong file)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder: Path, name: str) -> Path | None:
    """``folder/name``, else ``folder/name.gz``, else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _fingerprint(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Identifies one version of the files, so the cache never serves a replaced file."""
    result = []
    for path in paths:
        stat = path.stat()
        result.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return tuple(result)


def _readonly(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.flags.writeable = False


def load_mnist_like(name: str, folder_candidates: Sequence[str | os.PathLike[str]]) -> dict[str, dict[str, np.ndarray]]:
    """``{"train"|"test": {"images": uint8 (n, 28, 28), "labels": int64 (n,)}}`` from the first complete folder.

    A folder counts when it holds all four standard files (each plain or ``.gz``); else
    :class:`DatasetNotFound` lists every folder searched and the files expected there.
    """
    folders = [Path(folder) for folder in folder_candidates]
    if not folders:
        raise ValueError(f"{name}: no folders to search")
    folder = _first_complete(name, folders, list(MNIST_FILES.values()), gz=True,
                             hint=f"put them in one of those folders, or point --data-dir ({DATA_DIR_ENV}) at "
                                  f"the folder holding {folders[0].name}/")
    return _load_mnist_folder(name, _fingerprint([_find(folder, n) for n in MNIST_FILES.values()]))


def _load_dataset(key: str) -> dict[str, dict[str, np.ndarray]]:
    folder = locate(key)
    return _load_mnist_folder(DATASETS[key].title, _fingerprint([_find(folder, n) for n in MNIST_FILES.values()]))


@functools.lru_cache(maxsize=8)
def _load_mnist_folder(name: str, files: tuple[tuple[str, int, int], ...]) -> dict[str, dict[str, np.ndarray]]:
    paths = dict(zip(MNIST_FILES, (Path(path) for path, _, _ in files), strict=True))
    result: dict[str, dict[str, np.ndarray]] = {}
    for split in ("train", "test"):
        images = read_idx(paths[split, "images"])
        labels = read_idx(paths[split, "labels"])
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DatasetCorrupt(f"{paths[split, 'images']}: expected uint8 images of shape (n, 28, 28), "
                                 f"got {images.dtype.name} {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DatasetCorrupt(f"{paths[split, 'labels']}: expected {len(images)} labels to match "
                                 f"{paths[split, 'images'].name}, got shape {labels.shape}")
        labels = labels.astype(np.int64)
        if len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES):
            raise DatasetCorrupt(f"{paths[split, 'labels']}: labels must lie in 0..{N_CLASSES - 1}, "
                                 f"found {labels.min()}..{labels.max()}")
        _readonly(images, labels)
        result[split] = {"images": images, "labels": labels}
    return result


def load_mnist() -> dict[str, dict[str, np.ndarray]]:
    """MNIST from ``mnist/`` or torchvision's ``MNIST/raw/`` under a data folder (see :func:`data_roots`)."""
    return _load_dataset("mnist")


def load_fashion_mnist() -> dict[str, dict[str, np.ndarray]]:
    """Fashion-MNIST from ``fashion_mnist/`` or torchvision's ``FashionMNIST/raw/`` under a data folder,
    or the system's ``/usr/share/datasets/fashion-mnist/`` (Debian's ``dataset-fashion-mnist``)."""
    return _load_dataset("fashion_mnist")


def read_cifar10_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (n, 3, 32, 32), labels int64 (n,))`` from one CIFAR-10 binary batch file.

    Each record is a label byte followed by the 1024 red, 1024 green and 1024 blue
    pixels, rows top to bottom, so a record reshapes straight to channel-major (3, 32, 32).
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) == 0 or len(raw) % CIFAR10_RECORD_BYTES:
        raise DatasetCorrupt(f"{path}: {len(raw)} bytes is not a positive multiple of the "
                             f"{CIFAR10_RECORD_BYTES}-byte CIFAR-10 record (truncated or not the binary version)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR10_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= N_CLASSES:
        raise DatasetCorrupt(f"{path}: label {labels.max()} is not a CIFAR-10 class (0..{N_CLASSES - 1}); "
                             "is this CIFAR-100?")
    images = records[:, 1:].reshape(-1, *CIFAR10_IMAGE_SHAPE).copy()
    return images, labels


def load_cifar10() -> dict[str, dict[str, np.ndarray]]:
    """CIFAR-10 (binary version) as ``{"train"|"test": {"images": uint8 (n, 3, 32, 32), "labels": int64 (n,)}}``.

    Searches ``cifar-10-batches-bin/`` (where the official archive unpacks),
    ``cifar10/cifar-10-batches-bin/`` and ``cifar10/`` under each data folder (see
    :func:`data_roots`) for ``data_batch_1.bin`` .. ``data_batch_5.bin`` and
    ``test_batch.bin``; the training set is the five batches in order.
    """
    folder = locate("cifar10")
    return _load_cifar10_folder(_fingerprint([folder / name for name in _expected_files("cifar10")]))


@functools.lru_cache(maxsize=4)
def _load_cifar10_folder(files: tuple[tuple[str, int, int], ...]) -> dict[str, dict[str, np.ndarray]]:
    batches = [read_cifar10_batch(path) for path, _, _ in files]
    train_images = np.concatenate([images for images, _ in batches[:-1]])
    train_labels = np.concatenate([labels for _, labels in batches[:-1]])
    test_images, test_labels = batches[-1]
    _readonly(train_images, train_labels, test_images, test_labels)
    return {"train": {"images": train_images, "labels": train_labels},
            "test": {"images": test_images, "labels": test_labels}}
