"""Results know what code produced them: fingerprints, re-runs after a change, and the report's warning."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bench_core import OptimizerSpec, fingerprint
from bench_core.catalog import LOCAL_MODULE_PREFIX, load_catalog
from bench_core.configuration import with_identity
from bench_core.driver import run_sweep
from bench_core.fingerprint import describe_change, module_component, optimizer_fingerprint, problem_fingerprint
from bench_core.listing import catalog_rows
from bench_core.report import mixed_code_warnings, write_report
from bench_core.store import Store
from bench_core.suite import expand

ENV = os.environ | {"OPTBENCH_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONUNBUFFERED": "1"}

PLUGIN = """
    import torch

    from bench_core import OptimizerSpec, hookimpl


    class HalfStep(torch.optim.Optimizer):
        def __init__(self, params, lr=0.1):
            super().__init__(params, {"lr": lr})

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.add_(p.grad, alpha=-1.0 * group["lr"])


    @hookimpl
    def optbench_optimizers():
        return [OptimizerSpec("myopt", HalfStep, lr=0.1)]
"""
#: The same plugin with another update rule: half the step.
EDITED = PLUGIN.replace("alpha=-1.0 * group", "alpha=-0.5 * group")


@pytest.fixture
def fresh_local_modules():
    """Forget plugin files loaded by path during the test, so a later load imports the file again."""
    before = set(sys.modules)
    yield lambda: [sys.modules.pop(name) for name in set(sys.modules) - before
                   if name.startswith(LOCAL_MODULE_PREFIX)]
    for name in set(sys.modules) - before:
        if name.startswith(LOCAL_MODULE_PREFIX):
            del sys.modules[name]


def _rows(path: Path) -> dict[str, dict]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT trial_id, optimizer, final, finished_at, fingerprint FROM trials").fetchall()
    return {trial_id: {"optimizer": optimizer, "final": json.loads(final), "finished_at": finished,
                       "fingerprint": json.loads(fp)} for trial_id, optimizer, final, finished, fp in rows}


@pytest.mark.slow
def test_an_edited_plugin_file_reruns_its_trials_and_an_unchanged_one_is_served(tmp_path, capsys,
                                                                                 fresh_local_modules):
    from bench_core.cli import main

    plugin = tmp_path / "myopt.py"
    plugin.write_text(textwrap.dedent(PLUGIN))
    results = tmp_path / "r.sqlite"
    args = ["run", "--plugins", str(plugin), "--problem", "quadratic", "--optimizer", "myopt,sgd", "--lr",
            "0.01,0.05", "--steps", "20", "--evals", "2", "--no-report", "--no-progress", "--results", str(results)]

    def run_here(*extra: str) -> str:
        """A run in this process (the plugin file imported afresh); its stderr."""
        fresh_local_modules()
        capsys.readouterr()
        assert main([*args, *extra]) == 0
        return capsys.readouterr().err

    def run_in_a_new_process(*extra: str) -> str:
        done = subprocess.run([sys.executable, "-m", "bench_core.cli", *args, *extra], capture_output=True,
                              text=True, env=ENV, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stderr

    run_here("--workers", "1")
    first = _rows(results)
    assert len(first) == 4 and all(set(row["fingerprint"]) == {"optimizer", "problem"} for row in first.values())
    mine = {tid for tid, row in first.items() if row["optimizer"] == "myopt"}

    plugin.write_text(textwrap.dedent(EDITED))
    # another process, with the process pool: workers run, the driver fingerprints
    second_err = run_in_a_new_process("--workers", "2")
    notices = [line for line in second_err.splitlines() if "changed since" in line]
    assert len(notices) == 1, second_err
    assert notices[0].startswith("optbench: optimizer 'myopt' changed since 2 stored trials were run (plugin file "
                                 "myopt.py: source hash ")
    assert notices[0].endswith("; re-running them")
    assert "4 trials: 2 already stored, ran 2" in second_err
    second = _rows(results)
    for tid in mine:  # re-run with the new rule: other numbers, another fingerprint
        assert second[tid]["final"]["train_loss"] != first[tid]["final"]["train_loss"]
        assert second[tid]["fingerprint"]["optimizer"] != first[tid]["fingerprint"]["optimizer"]
        assert second[tid]["fingerprint"]["problem"] == first[tid]["fingerprint"]["problem"]
    for tid in set(first) - mine:  # sgd did not change: served, untouched
        assert second[tid] == first[tid]

    third_err = run_here("--workers", "1")  # back in this process: the other process's fingerprints still match
    assert "changed since" not in third_err and "predate" not in third_err
    assert "4 trials: 4 already stored, ran 0" in third_err
    assert _rows(results) == second


@pytest.mark.slow
def test_a_torch_optimizer_is_named_by_torch_and_the_same_in_fresh_processes(tmp_path):
    plain = OptimizerSpec("plain_sgd", torch.optim.SGD)
    assert optimizer_fingerprint(plain) == f"torch=={torch.__version__}"
    script = textwrap.dedent("""
        import torch
        from bench_core import OptimizerSpec
        from bench_core.catalog import load_catalog
        from bench_core.fingerprint import optimizer_fingerprint, problem_fingerprint
        catalog = load_catalog()
        print(optimizer_fingerprint(OptimizerSpec("plain_sgd", torch.optim.SGD)))
        print(optimizer_fingerprint(catalog.optimizers["adam"]))
        print(problem_fingerprint(catalog.problems["quadratic"]))
    """)
    outputs = []
    for cwd in (tmp_path, Path.home()):  # two processes, started from two folders
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, cwd=cwd,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    lines = outputs[0].splitlines()
    assert lines[0] == f"torch=={torch.__version__}"
    assert f"torch=={torch.__version__}" in lines[1].split(", ")
    assert all(str(tmp_path) not in line and str(Path.home()) not in line for line in lines)


def _myopt_fingerprint(path: Path) -> str:
    catalog = load_catalog([path])
    assert catalog.issues == []
    return optimizer_fingerprint(catalog.optimizers["myopt"])


def test_a_plugin_files_fingerprint_follows_its_source_not_its_mtime_or_folder(tmp_path, fresh_local_modules):
    plugin = tmp_path / "a" / "myopt.py"
    plugin.parent.mkdir()
    plugin.write_text(textwrap.dedent(PLUGIN))
    original = _myopt_fingerprint(plugin)
    assert original.startswith("myopt.py@") and f"torch=={torch.__version__}" in original
    assert str(tmp_path) not in original

    stat = plugin.stat()
    os.utime(plugin, ns=(stat.st_atime_ns + 10**10, stat.st_mtime_ns + 10**10))  # touched: a new mtime only
    fresh_local_modules()
    assert _myopt_fingerprint(plugin) == original

    moved = tmp_path / "elsewhere" / "deeper" / "myopt.py"
    moved.parent.mkdir(parents=True)
    shutil.move(plugin, moved)
    fresh_local_modules()
    assert _myopt_fingerprint(moved) == original

    moved.write_text(textwrap.dedent(EDITED))
    fresh_local_modules()
    edited = _myopt_fingerprint(moved)
    assert edited != original and edited.startswith("myopt.py@")
    assert describe_change(original, edited).startswith("plugin file myopt.py: source hash ")


def test_a_plain_module_on_sys_path_is_hashed(tmp_path, monkeypatch):
    (tmp_path / "fp_plain_module.py").write_text("def rule(values):\n    return values\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fp_plain_module", raising=False)
    import fp_plain_module  # noqa: F401  (module_component names modules that are imported)

    component = module_component("fp_plain_module")
    assert component.startswith("fp_plain_module@") and len(component.split("@")[1]) == fingerprint.HASH_DIGITS
    del sys.modules["fp_plain_module"]


def test_fixed_arguments_count_as_they_are_not_in_the_trial_id():
    nesterov = OptimizerSpec("n", torch.optim.SGD, fixed={"nesterov": True}, hyperparams={"momentum": 0.9})
    plain = OptimizerSpec("n", torch.optim.SGD, fixed={"nesterov": False}, hyperparams={"momentum": 0.9})
    assert optimizer_fingerprint(nesterov) != optimizer_fingerprint(plain)
    assert describe_change(optimizer_fingerprint(plain), optimizer_fingerprint(nesterov)).startswith(
        "spec settings (fixed arguments, closure) changed")


def test_describe_change_names_versions_and_added_code():
    text = describe_change("torch==2.12.0, myopt.py@3f2a9c1b0d4e", "torch==2.13.0, myopt.py@9c1b0d4e3f2a, util@1")
    assert text == "plugin file myopt.py: source hash 3f2a9c… -> 9c1b0d…; torch 2.12.0 -> 2.13.0; now also module util"


def test_list_json_shows_each_optimizers_and_problems_fingerprint(catalog):
    rows = catalog_rows(catalog)
    adam = next(row for row in rows["optimizers"] if row["name"] == "adam")
    assert adam["fingerprint"] == optimizer_fingerprint(catalog.optimizers["adam"])
    quadratic = next(row for row in rows["problems"] if row["name"] == "quadratic")
    assert quadratic["fingerprint"] == problem_fingerprint(catalog.problems["quadratic"])


# -- the driver, in process: "the code changed" is a stubbed fingerprint ------------------------------------

SETTINGS = {"name": "s", "problems": ["quadratic"], "optimizers": ["sgd"], "lr": [0.01, 0.02], "steps": 10,
            "evals": 2, "device": "cpu"}


def test_trials_stored_before_fingerprints_are_served_with_one_note(catalog, tmp_path, capsys):
    path = tmp_path / "r.sqlite"
    with Store(path) as store:
        run_sweep(expand(SETTINGS, catalog), catalog, store, workers=1, progress=False)
    with sqlite3.connect(path) as db:  # what a migrated schema-2 file holds: no fingerprint
        db.execute("UPDATE trials SET fingerprint = '{}'")
    before = _rows(path)
    capsys.readouterr()
    with Store(path) as store:
        again = run_sweep(expand(SETTINGS, catalog), catalog, store, workers=1, progress=False)
    err = capsys.readouterr().err
    assert (again.total, again.skipped, sum(again.counts.values())) == (2, 2, 0)
    assert [line for line in err.splitlines() if "predate" in line] == [
        "optbench: 2 stored trials predate code fingerprints: served as stored, whatever code ran them "
        "(--rerun runs every trial again)"]
    assert "changed since" not in err
    assert _rows(path) == before


def test_a_changed_trial_is_rerun_and_its_stale_score_never_steers_a_transfer(catalog, tmp_path, monkeypatch,
                                                                             capsys):
    settings = {"name": "t", "problems": ["logistic"], "optimizers": ["sgd"], "lr": [0.01, 1.0], "batch_size": 16,
                "transfer_batch_sizes": [64], "steps": 20, "evals": 2, "device": "cpu"}
    path = tmp_path / "r.sqlite"
    with Store(path) as store:
        run_sweep(expand(settings, catalog), catalog, store, workers=1, progress=False)
        trials = store.trials("t")
    tuning = trials[trials["batch_size"] == 16]
    metric = "final.valid_loss"
    best = tuning.loc[tuning[metric].idxmin(), "hp.lr"]
    worst = tuning.loc[tuning[metric].idxmax(), "hp.lr"]
    assert trials.loc[trials["batch_size"] == 64, "hp.lr"].tolist() == [best]
    # Doctor the stored scores so that, read stale, they would crown the worst setting.
    stale_final = json.dumps({"train_loss": 0.0, "valid_loss": 0.0, "test_loss": 0.0})
    worst_id = tuning.loc[tuning["hp.lr"] == worst, "trial_id"].item()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE trials SET final = ? WHERE trial_id = ?", (stale_final, worst_id))

    monkeypatch.setattr(fingerprint, "optimizer_fingerprint", lambda spec: "sgd.py@000000000000")
    capsys.readouterr()
    with Store(path) as store:
        outcome = run_sweep(expand(settings, catalog), catalog, store, workers=1, progress=False)
        after = store.trials("t")
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "changed since" in line] == [
        "optbench: optimizer 'sgd' changed since 2 stored trials were run (no longer spec settings (fixed arguments, "
        "closure); now also plugin file sgd.py; no longer torch); re-running them"]
    assert sum(outcome.counts.values()) == 3  # both tuning trials and the transfer of the (true) best
    assert len(after) == 3 and after["fingerprint"].map(lambda fp: fp["optimizer"]).eq("sgd.py@000000000000").all()
    assert after.loc[after["batch_size"] == 64, "hp.lr"].tolist() == [best]  # the worst was never transferred
    assert after.loc[after["trial_id"] == worst_id, metric].item() != 0.0


@pytest.mark.slow
def test_the_report_warns_when_a_shared_trial_left_a_suite_with_mixed_code(catalog, tmp_path, monkeypatch):
    one = {**SETTINGS, "name": "one", "lr": [0.01, 0.02]}
    two = {**SETTINGS, "name": "two", "lr": [0.02, 0.03]}  # shares lr 0.02 with suite one
    with Store(tmp_path / "r.sqlite") as store:
        run_sweep(expand(one, catalog), catalog, store, workers=1, progress=False)
        assert mixed_code_warnings(with_identity(store.trials("one"))) == []
        monkeypatch.setattr(fingerprint, "optimizer_fingerprint", lambda spec: "sgd.py@000000000000")
        run_sweep(expand(two, catalog), catalog, store, workers=1, progress=False)  # re-runs the shared trial
        assert mixed_code_warnings(with_identity(store.trials("two"))) == []  # all of it is today's code
        warnings = mixed_code_warnings(with_identity(store.trials("one")))
        assert len(warnings) == 1
        assert warnings[0].startswith("> **Warning:** sgd pools trials that different code (of the optimizer or the "
                                      "problem) produced on quadratic")
        assert ": 1 of its 2 trials there ran code older than the latest" in warnings[0]
        report = write_report(store, "one", tmp_path / "reports", catalog).read_text()
    assert warnings[0] in report
    assert report.index(warnings[0]) < report.index("## ")  # near the top, before every section


def test_a_problem_counts_the_class_its_build_is_annotated_to_return(tmp_path, monkeypatch, fresh_local_modules):
    library = tmp_path / "lib"
    library.mkdir()
    (library / "fp_problem_lib.py").write_text(textwrap.dedent("""
        from bench_core.problems.analytic import Sphere


        class LibProblem(Sphere):
            pass
    """))
    monkeypatch.syspath_prepend(str(library))
    monkeypatch.delitem(sys.modules, "fp_problem_lib", raising=False)
    plugin = tmp_path / "libplug.py"
    plugin.write_text(textwrap.dedent("""
        from __future__ import annotations

        from fp_problem_lib import LibProblem

        from bench_core import ProblemSpec, hookimpl


        def build(device="cpu") -> LibProblem:
            return LibProblem(device=device)


        @hookimpl
        def optbench_problems():
            return [ProblemSpec("lib_problem", build)]
    """))
    catalog = load_catalog([plugin])
    assert catalog.issues == []
    parts = problem_fingerprint(catalog.problems["lib_problem"]).split(", ")
    assert [part.split("@")[0] for part in parts if "@" in part] == [
        "bench_core.problems.analytic", "fp_problem_lib", "libplug.py"]
    monkeypatch.delitem(sys.modules, "fp_problem_lib")


def _fake_install(site: Path, editable: bool) -> None:
    """A distribution ``fp-fakepkg 1.2.3`` installed into ``site`` as an installer leaves it (RECORD and all)."""
    package = site / "fp_fakepkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    info = site / "fp_fakepkg-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fp-fakepkg\nVersion: 1.2.3\n")
    (info / "RECORD").write_text("fp_fakepkg/__init__.py,,\nfp_fakepkg-1.2.3.dist-info/METADATA,,\n")
    (info / "top_level.txt").write_text("fp_fakepkg\n")
    if editable:
        (info / "direct_url.json").write_text(json.dumps({"url": "file:///src", "dir_info": {"editable": True}}))


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True])
def test_a_regular_install_is_named_by_version_and_an_editable_one_by_its_source(tmp_path, monkeypatch, editable):
    _fake_install(tmp_path, editable)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fp_fakepkg", raising=False)
    fingerprint._package_distributions.cache_clear()
    try:
        import fp_fakepkg  # noqa: F401  (module_component names modules that are imported)

        component = module_component("fp_fakepkg")
    finally:
        sys.modules.pop("fp_fakepkg", None)
        fingerprint._package_distributions.cache_clear()
    if editable:  # its files can change under the same version: hashed
        assert component.startswith("fp_fakepkg@") and len(component.split("@")[1]) == fingerprint.HASH_DIGITS
    else:
        assert component == "fp-fakepkg==1.2.3"
