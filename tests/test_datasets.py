"""Local data-set readers: exact round trips of tiny files written here, and one-line errors otherwise."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from bench_core.problems import datasets
from bench_core.problems.datasets import (
    DatasetCorrupt,
    DatasetNotFound,
    data_dir,
    load_cifar10,
    load_fashion_mnist,
    load_mnist,
    load_mnist_like,
    read_cifar10_batch,
    read_idx,
)

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}
MNIST_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte"]


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file's contents, written independently of the reader under test."""
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def tiny_mnist(n_train: int = 12, n_test: int = 6, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {split: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10)
            for split, n in (("train", n_train), ("test", n_test))}


def write_mnist(folder: Path, arrays: dict[str, tuple[np.ndarray, np.ndarray]], gz: bool = False) -> None:
    ext = ".gz" if gz else ""
    for (split, prefix) in (("train", "train"), ("test", "t10k")):
        images, labels = arrays[split]
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)


def tiny_cifar(counts: tuple[int, ...] = (5, 5, 5, 5, 5, 4), seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8))
            for n in counts]


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Records written pixel by pixel in the documented order: label, then R, G, B planes row by row."""
    out = bytearray()
    for image, label in zip(images, labels, strict=True):
        out.append(int(label))
        for channel in range(3):
            for row in range(32):
                out += bytes(int(v) for v in image[channel, row])
    return bytes(out)


def write_cifar(folder: Path, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name, (images, labels) in zip(names, batches, strict=True):
        (folder / name).write_bytes(cifar_bytes(images, labels))


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("OPTBENCH_DATA_DIR", raising=False)
    assert data_dir() == Path("data")
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((4, 3, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / f"x.idx{suffix}", array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == (4, 3, 5) and np.array_equal(back, array)


def test_idx_of_one_and_zero_dimensions(tmp_path):
    assert np.array_equal(read_idx(write_idx(tmp_path / "v", np.arange(7, dtype=np.int32))), np.arange(7))
    assert read_idx(write_idx(tmp_path / "e", np.zeros((0, 28), dtype=np.uint8))).shape == (0, 28)


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda raw: raw[:-3], "expected 80 bytes of data, found 77"),
    (lambda raw: raw + b"\0", "expected 80 bytes of data, found 81"),
    (lambda raw: raw[:6], "truncated IDX header"),
    (lambda raw: raw[:2], "truncated IDX header"),
    (lambda raw: b"\1" + raw[1:], "bad IDX magic"),
    (lambda raw: raw[:2] + b"\x07" + raw[3:], "unknown IDX type code 0x07"),
])
def test_corrupt_idx_raises_one_line_naming_the_file(tmp_path, mangle, message):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(mangle(idx_bytes(np.ones((2, 5, 8), dtype=np.uint8))))
    with pytest.raises(DatasetCorrupt, match=message) as info:
        read_idx(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_and_broken_gzip(tmp_path):
    data = gzip.compress(idx_bytes(np.ones((20, 28, 28), dtype=np.uint8)))
    (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.gz").write_bytes(b"not gzip at all")
    for name in ("cut.gz", "junk.gz"):
        with pytest.raises(DatasetCorrupt, match=name) as info:
            read_idx(tmp_path / name)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_like_reads_the_four_files_exactly(tmp_path, gz):
    arrays = tiny_mnist()
    write_mnist(tmp_path / "mnist", arrays, gz=gz)
    data = load_mnist_like("MNIST", [tmp_path / "elsewhere", tmp_path / "mnist"])
    for split in ("train", "test"):
        images, labels = arrays[split]
        assert data[split]["images"].dtype == np.uint8 and data[split]["images"].shape == images.shape
        assert data[split]["labels"].dtype == np.int64
        assert np.array_equal(data[split]["images"], images) and np.array_equal(data[split]["labels"], labels)


def test_helpers_find_torchvision_layouts_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path))
    mnist, fashion = tiny_mnist(seed=1), tiny_mnist(10, 4, seed=2)
    write_mnist(tmp_path / "MNIST" / "raw", mnist, gz=True)
    write_mnist(tmp_path / "FashionMNIST" / "raw", fashion)
    assert np.array_equal(load_mnist()["train"]["images"], mnist["train"][0])
    assert np.array_equal(load_fashion_mnist()["test"]["images"], fashion["test"][0])
    assert load_mnist() is load_mnist()  # read once per process
    assert not load_mnist()["train"]["images"].flags.writeable  # shared, so read-only
    # the plain-name folder comes first when both exist
    write_mnist(tmp_path / "mnist", fashion)
    assert np.array_equal(load_mnist()["train"]["images"], fashion["train"][0])


def test_cache_notices_a_replaced_file(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path))
    write_mnist(tmp_path / "mnist", tiny_mnist(seed=3))
    load_mnist()
    replacement = tiny_mnist(n_train=14, seed=4)
    write_mnist(tmp_path / "mnist", replacement)
    assert np.array_equal(load_mnist()["train"]["images"], replacement["train"][0])


def test_missing_files_say_where_to_put_what_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIR", tmp_path / "system")
    with pytest.raises(DatasetNotFound) as info:
        load_mnist()
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message
    assert message.startswith("MNIST not found")
    for folder in (tmp_path / "nowhere" / "mnist", tmp_path / "nowhere" / "MNIST" / "raw"):
        assert str(folder) in message
    assert all(name in message for name in MNIST_NAMES)
    assert "apt-get" not in message  # no package installs MNIST
    with pytest.raises(DatasetNotFound, match="Fashion-MNIST not found") as info:
        load_fashion_mnist()
    assert str(tmp_path / "nowhere" / "FashionMNIST" / "raw") in str(info.value)
    assert str(tmp_path / "system" / "fashion-mnist") in str(info.value)
    assert "apt-get install dataset-fashion-mnist" in str(info.value), "the message names the Debian package"


def test_data_sets_are_found_in_the_documented_order(monkeypatch, tmp_path):
    """$OPTBENCH_DATA_DIR, then ./data, then the system's folder (as Debian's dataset-fashion-mnist lays it out)."""
    monkeypatch.chdir(tmp_path)
    system, user = tmp_path / "usr-share-datasets", tmp_path / "mine"
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIR", system)
    monkeypatch.delenv("OPTBENCH_DATA_DIR", raising=False)
    assert datasets.data_roots() == [Path("data"), system]
    write_mnist(system / "fashion-mnist", tiny_mnist(n_train=11, seed=1), gz=True)
    assert datasets.locate("fashion_mnist") == system / "fashion-mnist"
    assert len(load_fashion_mnist()["train"]["labels"]) == 11
    write_mnist(tmp_path / "data" / "FashionMNIST" / "raw", tiny_mnist(n_train=12, seed=2))
    assert len(load_fashion_mnist()["train"]["labels"]) == 12, "./data comes before the system's folder"
    write_mnist(user / "fashion_mnist", tiny_mnist(n_train=13, seed=3))
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(user))
    assert datasets.data_roots() == [user, Path("data"), system]
    assert datasets.locate("fashion_mnist") == user / "fashion_mnist"
    assert len(load_fashion_mnist()["train"]["labels"]) == 13, "$OPTBENCH_DATA_DIR comes first"
    assert datasets.candidate_folders("fashion_mnist") == [
        user / "fashion_mnist", user / "FashionMNIST" / "raw", Path("data") / "fashion_mnist",
        Path("data") / "FashionMNIST" / "raw", system / "fashion-mnist"]


def test_an_incomplete_folder_is_skipped_and_reported(tmp_path):
    arrays = tiny_mnist()
    write_mnist(tmp_path / "a", arrays)
    (tmp_path / "a" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFound) as info:
        load_mnist_like("MNIST", [tmp_path / "a", tmp_path / "b"])
    assert f"{tmp_path / 'a'} lacks t10k-labels-idx1-ubyte" in str(info.value)
    write_mnist(tmp_path / "b", arrays, gz=True)
    assert np.array_equal(load_mnist_like("MNIST", [tmp_path / "a", tmp_path / "b"])["test"]["labels"],
                          arrays["test"][1])


def test_mismatched_counts_and_bad_labels_are_corrupt(tmp_path):
    arrays = tiny_mnist()
    write_mnist(tmp_path / "m", arrays)
    write_idx(tmp_path / "m" / "train-labels-idx1-ubyte", np.zeros(11, dtype=np.uint8))
    with pytest.raises(DatasetCorrupt, match="expected 12 labels"):
        load_mnist_like("MNIST", [tmp_path / "m"])
    write_idx(tmp_path / "m" / "train-labels-idx1-ubyte", np.full(12, 10, dtype=np.uint8))
    with pytest.raises(DatasetCorrupt, match=r"labels must lie in 0\.\.9"):
        load_mnist_like("MNIST", [tmp_path / "m"])
    write_idx(tmp_path / "m" / "train-labels-idx1-ubyte", arrays["train"][1])
    write_idx(tmp_path / "m" / "train-images-idx3-ubyte", np.zeros((12, 32, 32), dtype=np.uint8))
    with pytest.raises(DatasetCorrupt, match=r"shape \(n, 28, 28\)"):
        load_mnist_like("MNIST", [tmp_path / "m"])


def test_cifar10_batch_is_channel_major(tmp_path):
    images = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    images[1, 2, 0, 5] = 200  # blue plane, top row, sixth column of the second image
    (tmp_path / "b.bin").write_bytes(cifar_bytes(images, np.array([3, 7], dtype=np.uint8)))
    raw = (tmp_path / "b.bin").read_bytes()
    assert raw[3073] == 7 and raw[3073 + 1 + 2 * 1024 + 5] == 200  # the documented record layout
    back, labels = read_cifar10_batch(tmp_path / "b.bin")
    assert back.shape == (2, 3, 32, 32) and back.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [3, 7]
    assert np.array_equal(back, images)


@pytest.mark.parametrize("folder", ["cifar-10-batches-bin", "cifar10/cifar-10-batches-bin", "cifar10"])
def test_cifar10_round_trip_in_every_layout(monkeypatch, tmp_path, folder):
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path))
    batches = tiny_cifar(seed=len(folder))
    write_cifar(tmp_path / folder, batches)
    data = load_cifar10()
    assert data["train"]["images"].shape == (25, 3, 32, 32) and data["test"]["images"].shape == (4, 3, 32, 32)
    assert np.array_equal(data["train"]["images"], np.concatenate([b[0] for b in batches[:5]]))
    assert np.array_equal(data["train"]["labels"], np.concatenate([b[1] for b in batches[:5]]))
    assert np.array_equal(data["test"]["images"], batches[5][0])
    assert data["train"]["labels"].dtype == np.int64 and np.array_equal(data["test"]["labels"], batches[5][1])


def test_cifar10_bad_size_and_bad_label(tmp_path):
    images, labels = tiny_cifar((3,))[0]
    raw = cifar_bytes(images, labels)
    for name, content in (("short.bin", raw[:-1]), ("empty.bin", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DatasetCorrupt, match="3073") as info:
            read_cifar10_batch(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "c100.bin").write_bytes(bytes([10]) + raw[1:])
    with pytest.raises(DatasetCorrupt, match="label 10"):
        read_cifar10_batch(tmp_path / "c100.bin")


def test_cifar10_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path))
    write_cifar(tmp_path / "cifar10", tiny_cifar())
    (tmp_path / "cifar10" / "data_batch_3.bin").unlink()
    with pytest.raises(DatasetNotFound) as info:
        load_cifar10()
    message = str(info.value)
    assert message.startswith("CIFAR-10 not found") and "\n" not in message
    assert all(str(tmp_path / f) in message for f in ("cifar-10-batches-bin", "cifar10/cifar-10-batches-bin"))
    assert "data_batch_1.bin" in message and "test_batch.bin" in message and "lacks data_batch_3.bin" in message


def test_module_never_unpickles():
    source = Path(datasets.__file__).read_text()
    assert "import pickle" not in source and "allow_pickle" not in source and "torch.load" not in source


@pytest.mark.slow
def test_list_says_per_data_set_problem_whether_its_files_were_found_and_where(monkeypatch, tmp_path, capsys):
    import json

    from bench_core.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPTBENCH_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIR", tmp_path / "system")
    write_mnist(tmp_path / "mine" / "fashion_mnist", tiny_mnist())
    assert main(["list", "--json", "--data-dir", str(tmp_path / "mine")]) == 0
    problems = {row["name"]: row for row in json.loads(capsys.readouterr().out)["problems"]}
    assert problems["fmnist_2c2d"]["data"] == {"found": True, "where": str(tmp_path / "mine" / "fashion_mnist")}
    assert problems["mnist_2c2d"]["data"]["found"] is False
    assert problems["mnist_2c2d"]["data"]["message"].startswith("MNIST not found: looked in")
    assert problems["quadratic"]["data"] is None  # no data files: no status
    monkeypatch.delenv("OPTBENCH_DATA_DIR", raising=False)
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    section = text[text.index("Data sets"):].split("\n\n")[0]
    assert re.search(r"fmnist_2c2d +not found +apt-get install dataset-fashion-mnist, or put the files in", section)
    assert "quadratic" not in section
