"""The environment a sweep ran in, recorded with every run so results can be compared honestly."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy
import torch

import bench_core
from bench_core.catalog import Catalog


def git_commit(folder: Path) -> str | None:
    """The commit checked out in ``folder``'s repository (``+dirty`` if modified), or ``None``."""
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def describe_device(device: str) -> str:
    """A human-readable name for a torch device string."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def environment(catalog: Catalog, device: str, workers: int, threads: int | None = None) -> dict[str, Any]:
    """Versions, hardware, the optbench commit, every plugin's origin, and the torch threads each trial ran with
    (they change floating-point reduction order, so results are comparable bit for bit only at equal counts)."""
    return {
        "optbench": bench_core.__version__,
        "commit": git_commit(Path(bench_core.__file__).resolve().parent),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "device_name": describe_device(device),
        "cuda": torch.version.cuda,
        "workers": workers,
        "threads_per_trial": threads,
        "plugins": {name: info.version or info.source for name, info in catalog.plugins.items()},
    }
