"""``optbench check-plugin`` end to end: each exit status (0 passes, 1 fails, 2 a user error) in a subprocess,
as a plugin author runs it; the other cases through the command's entry point (``main``) in this process, which
reports the same output and exit status without starting another Python."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench_core.cli import main

pytestmark = pytest.mark.slow

PLANTED = Path(__file__).with_name("planted_optimizer.py")  # an optimizer that ignores its lr


def optbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench_core.cli", *args], capture_output=True, text=True,
                          env=os.environ | {"OPTBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}, timeout=300)


@pytest.fixture
def optbench_here(capsys):
    """``optbench(...)`` run by ``main`` in this process: the same returncode, stdout and stderr."""

    def run(*args: str) -> SimpleNamespace:
        capsys.readouterr()
        returncode = main(list(args))
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=returncode, stdout=out, stderr=err)

    return run


def test_a_builtin_optimizer_passes():
    done = optbench("check-plugin", "lion")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "optimizer lion (plugin lion): passes" in done.stdout
    for check in ("steps", "respects_lr", "param_groups", "state_dict_roundtrip", "deterministic", "zero_grad",
                  "no_grad_params", "device_cpu"):
        assert f"| {check} " in done.stdout
    assert "| state_dict_roundtrip | PASS" in done.stdout
    assert "FAIL" not in done.stdout


def test_lbfgs_passes_through_a_closure_with_its_exemptions_shown_as_skipped(optbench_here):
    done = optbench_here("check-plugin", "lbfgs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "optimizer lbfgs (plugin torch_optimizers): passes" in done.stdout
    assert "| respects_lr          | SKIP" in done.stdout and "| param_groups         | SKIP" in done.stdout
    for check in ("steps", "state_dict_roundtrip", "deterministic", "zero_grad", "no_grad_params", "device_cpu"):
        assert f"| {check:<20} | PASS" in done.stdout, check
    assert "FAIL" not in done.stdout


def test_a_faulty_optimizer_fails_with_the_check_and_its_reason(tmp_path):
    path = tmp_path / "stubborn.py"
    shutil.copy(PLANTED, path)
    done = optbench("check-plugin", "stubborn", "--plugins", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"optimizer stubborn (plugin {path}): fails 2 check(s)" in done.stdout
    failing = {line.split("|")[1].strip() for line in done.stdout.splitlines() if "| FAIL" in line}
    assert failing == {"respects_lr", "param_groups"}
    assert "the learning rate is not respected" in done.stdout
    assert "per-group lr ignored" in done.stdout


def test_a_plugin_name_checks_everything_it_provides(optbench_here):
    done = optbench_here("check-plugin", "analytic", "--skip-slow")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "problem sphere (plugin analytic): passes" in done.stdout
    assert "problem rosenbrock (plugin analytic): passes" in done.stdout
    assert "target_reachable" not in done.stdout  # --skip-slow
    # an analytic function has no splits: the overlap check says so, it does not pass silently
    rows = [[cell.strip() for cell in line.split("|")[1:4]] for line in done.stdout.splitlines()
            if line.startswith("| disjoint_splits ")]
    assert rows and all(row == ["disjoint_splits", "SKIP", "the problem declares no splits (Problem.split_inputs() "
                                "returns None)"] for row in rows)


def test_an_unknown_name_is_one_line_and_exit_2():
    done = optbench("check-plugin", "nope")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("optbench: error: check-plugin: 'nope' is no optimizer, problem or plugin")
    assert len(done.stderr.strip().splitlines()) == 1


def test_help_names_the_options(capsys):
    with pytest.raises(SystemExit) as exited:  # argparse exits once the help is printed
        main(["check-plugin", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("NAME", "--plugins", "--skip-slow", "--device"):
        assert option in out


def test_an_exempted_check_is_skipped_with_its_reason_and_check_plugin_exits_0(tmp_path, optbench_here):
    path = tmp_path / "shared_step.py"
    source = PLANTED.read_text().replace(
        'OptimizerSpec("stubborn", IgnoresLr, lr=0.05)',
        'OptimizerSpec("stubborn", IgnoresLr, lr=0.05, exempt={"respects_lr": "a fixed step by design", '
        '"param_groups": "one step for every group"})')
    assert source != PLANTED.read_text()
    path.write_text(source)
    done = optbench_here("check-plugin", "stubborn", "--plugins", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    skipped = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if "| SKIP" in line}
    assert {"respects_lr", "param_groups"} <= set(skipped) <= {"respects_lr", "param_groups", "device_cuda"}
    assert "not applicable: a fixed step by design" in skipped["respects_lr"]
    assert "not applicable: one step for every group" in skipped["param_groups"]
    assert "FAIL" not in done.stdout


def test_a_plugin_file_is_checked_by_the_path_as_given(tmp_path, monkeypatch, optbench_here):
    shutil.copy(PLANTED, tmp_path / "stubborn.py")
    monkeypatch.chdir(tmp_path)
    done = optbench_here("check-plugin", "stubborn.py")
    assert done.returncode == 1, done.stdout + done.stderr  # the planted optimizer fails, but it was found
    assert f"optimizer stubborn (plugin {tmp_path / 'stubborn.py'}): fails 2 check(s)" in done.stdout


def test_an_exemption_naming_no_check_is_a_one_line_error(tmp_path, optbench_here):
    path = tmp_path / "typo.py"
    typo = 'OptimizerSpec("stubborn", IgnoresLr, lr=0.05, exempt={"respect_lr": "x"})'
    path.write_text(PLANTED.read_text().replace('OptimizerSpec("stubborn", IgnoresLr, lr=0.05)', typo))
    done = optbench_here("check-plugin", "stubborn", "--plugins", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        "optbench: error: check-plugin: optimizer 'stubborn': exempt names no check 'respect_lr' (checks: steps, "
        "respects_lr, param_groups, state_dict_roundtrip, deterministic, zero_grad, no_grad_params, device_cpu, "
        "device_cuda)"]


LEAKY = """
import torch

from bench_core import ClassificationProblem, ProblemSpec, hookimpl


def data(n, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=generator), torch.randint(0, 2, (n,), generator=generator)


def build(device="cpu"):
    train, valid = data(50, 0), data(20, 1)
    test = (torch.cat([data(14, 2)[0], train[0][:6]]), data(20, 2)[1])  # 6 training samples leak into test
    return ClassificationProblem(train, valid, test, device=device, model_factory=lambda: torch.nn.Linear(4, 2))


@hookimpl
def optbench_problems():
    return [ProblemSpec("leaky", build, batch_size=10)]
"""


def test_overlapping_splits_fail_naming_the_splits_and_the_shared_samples(write_plugin, optbench_here):
    path = write_plugin("leaky", LEAKY)
    done = optbench_here("check-plugin", str(path), "--skip-slow")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"problem leaky (plugin {path}): fails 1 check(s)" in done.stdout
    failing = [line for line in done.stdout.splitlines() if "| FAIL" in line]
    assert len(failing) == 1 and failing[0].startswith("| disjoint_splits ")
    assert "splits overlap: train and test share 6 sample(s)" in failing[0]
