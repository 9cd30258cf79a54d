"""The environment recorded with every run: each field against the fact it records."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import torch

import bench_core
from bench_core.catalog import load_catalog
from bench_core.environment import describe_device, environment, git_commit


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                           "-c", "commit.gpgsign=false", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_recorded_versions_platform_and_settings_are_this_process(catalog):
    recorded = environment(catalog, "cpu", workers=3, threads=2)
    assert recorded["optbench"] == bench_core.__version__ == importlib.metadata.version("optbench")
    assert recorded["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert recorded["torch"] == torch.__version__
    assert recorded["numpy"] == numpy.__version__
    assert recorded["platform"] == platform.platform()
    assert recorded["cpu_count"] == os.cpu_count()
    assert recorded["cuda"] == torch.version.cuda
    assert (recorded["device"], recorded["workers"], recorded["threads_per_trial"]) == ("cpu", 3, 2)
    assert environment(catalog, "cpu", workers=1)["threads_per_trial"] is None
    json.dumps(recorded)  # stored as JSON with the run


def test_every_plugin_is_recorded_by_version_or_source(catalog, write_plugin):
    recorded = environment(catalog, "cpu", workers=1)["plugins"]
    assert set(recorded) == {"torch_optimizers", "lion", "schedules", "search", "analytic", "nqm", "convex",
                             "digits", "teacher_student", "vision"}
    assert set(recorded.values()) == {importlib.metadata.version("optbench")}  # built-ins: optbench's version
    path = write_plugin("env_plugin", """
        from bench_core import OptimizerSpec, hookimpl
        import torch

        @hookimpl
        def optbench_optimizers():
            return [OptimizerSpec("env_sgd", torch.optim.SGD, lr=0.1)]
    """)
    local = environment(load_catalog([path]), "cpu", workers=1)["plugins"]
    (name,) = set(local) - set(recorded)  # a local plugin is named by its path
    assert Path(name).name == path.name
    assert local[name] == f"file {name}", "a local plugin has no version: its source is recorded"


def test_the_cpu_is_named_by_the_platform_and_cuda_by_torch():
    assert describe_device("cpu") == (platform.processor() or platform.machine())
    if torch.cuda.is_available():
        assert describe_device("cuda:0") == torch.cuda.get_device_name(0)
    else:  # asked for CUDA without it (a dry run on a laptop): still a name, not a crash
        assert describe_device("cuda") == describe_device("cpu")


def test_the_commit_is_the_checked_out_one_marked_dirty_when_tracked_files_changed(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "commit", "-q", "-m", "first")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert git_commit(tmp_path) == head
    (tmp_path / "untracked.txt").write_text("new\n")
    assert git_commit(tmp_path) == head, "untracked files do not make a checkout dirty"
    (tmp_path / "a.txt").write_text("two\n")
    assert git_commit(tmp_path) == head + "+dirty"


def test_no_commit_outside_a_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # whatever holds the temporary folders
    assert git_commit(tmp_path) is None


def test_the_recorded_commit_is_optbench_s_own(catalog):
    folder = Path(bench_core.__file__).resolve().parent
    try:
        head = git(folder, "rev-parse", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("optbench is not installed from a git checkout")
    assert environment(catalog, "cpu", workers=1)["commit"] in (head, head + "+dirty")
