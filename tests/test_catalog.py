"""Plugin discovery: built-ins through entry points, local files, and broken plugins reported by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench_core.catalog import load_catalog
from bench_core.errors import UserError

LOCAL_OPTIMIZER = """
    import torch
    from bench_core import OptimizerSpec, hookimpl

    class HalfSGD(torch.optim.SGD):
        pass

    @hookimpl
    def optbench_optimizers():
        return [OptimizerSpec("half_sgd", HalfSGD, lr=0.05)]
"""


def test_builtins_come_from_the_optbench_entry_points(catalog):
    assert catalog.issues == []
    for name in ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "lbfgs", "lion"):
        assert name in catalog.optimizers
    assert {"rosenbrock", "quadratic", "digits_mlp", "digits_cnn"} <= set(catalog.problems)
    assert {"constant", "cosine"} <= set(catalog.schedules)
    assert catalog.origin[("optimizer", "adam")] == "torch_optimizers"
    assert catalog.origin[("optimizer", "lion")] == "lion"
    for info in catalog.plugins.values():
        assert info.distribution == "optbench"
        assert info.source.startswith("entry point bench_core.")
    assert "optbench_optimizers" in catalog.plugins["torch_optimizers"].hooks


@pytest.mark.slow
def test_a_torch_optimizer_subclass_plugs_in_from_a_local_file(write_plugin):
    path = write_plugin("half", LOCAL_OPTIMIZER)
    catalog = load_catalog([path])
    assert catalog.issues == []
    spec = catalog.optimizers["half_sgd"]
    assert catalog.origin[("optimizer", "half_sgd")] == str(path)
    optimizer = spec.build([torch.nn.Parameter(torch.ones(2))])
    assert type(optimizer).__name__ == "HalfSGD"
    assert optimizer.param_groups[0]["lr"] == 0.05


def test_a_folder_loads_every_python_file(write_plugin, tmp_path):
    write_plugin("half", LOCAL_OPTIMIZER)
    write_plugin("_private", "raise RuntimeError('must not be imported')")
    write_plugin("sched", """
        from bench_core import ScheduleSpec, hookimpl

        @hookimpl
        def optbench_schedules():
            return [ScheduleSpec("halve", lambda step, total: 0.5)]
    """)
    catalog = load_catalog([tmp_path])
    assert catalog.issues == []
    assert "half_sgd" in catalog.optimizers and "halve" in catalog.schedules


def test_an_import_error_is_reported_by_name_and_the_rest_still_loads(write_plugin):
    path = write_plugin("broken", "import no_such_module_here")
    catalog = load_catalog([path])
    assert len(catalog.issues) == 1
    issue = catalog.issues[0]
    assert str(path) in issue and "failed to load" in issue and "no_such_module_here" in issue
    assert "\n" not in issue
    assert "adam" in catalog.optimizers


def test_bad_answers_and_duplicates_are_reported_and_skipped(write_plugin):
    path = write_plugin("bad", """
        import torch
        from bench_core import OptimizerSpec, hookimpl

        @hookimpl
        def optbench_optimizers():
            return [OptimizerSpec("adam", torch.optim.SGD), "not a spec", OptimizerSpec("fine", torch.optim.SGD)]

        @hookimpl
        def optbench_problems():
            return {"not": "a list"}

        @hookimpl
        def optbench_schedules():
            raise RuntimeError("boom")
    """)
    catalog = load_catalog([path])
    text = "\n".join(catalog.issues)
    assert "optimizer 'adam' is already provided by plugin 'torch_optimizers'" in text
    assert "returned str, expected OptimizerSpec" in text
    assert "optbench_problems must return a list of ProblemSpec, got dict" in text
    assert "optbench_schedules raised RuntimeError: boom" in text
    assert all(str(path) in issue for issue in catalog.issues)
    assert isinstance(catalog.optimizers["adam"].build([torch.nn.Parameter(torch.ones(1))]), torch.optim.Adam)
    assert "fine" in catalog.optimizers


def test_a_misspelt_hook_is_reported(write_plugin):
    path = write_plugin("typo", """
        from bench_core import hookimpl

        @hookimpl
        def optbench_optimisers():
            return []
    """)
    catalog = load_catalog([path])
    assert any("unknown hook 'optbench_optimisers'" in issue and str(path) in issue for issue in catalog.issues)


def test_a_missing_plugin_path_is_a_user_error(tmp_path):
    try:
        load_catalog([tmp_path / "nope.py"])
    except UserError as exc:
        assert "nope.py" in str(exc)
    else:
        raise AssertionError("expected UserError")


def test_unknown_names_list_what_exists(catalog):
    try:
        catalog.get("optimizer", "adamm")
    except UserError as exc:
        assert "unknown optimizer 'adamm'" in str(exc) and "adam" in str(exc)
    else:
        raise AssertionError("expected UserError")


def _fake_distribution(root, name, module, source):
    (root / f"{module}.py").write_text(source)
    info = root / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[optbench]\n{name} = {module}\n")


def test_third_party_entry_points_load_unless_autoload_is_disabled(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "fakeplug", "fakeplug_mod", LOCAL_OPTIMIZER.replace("\n    ", "\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_catalog(autoload=True)
    assert "half_sgd" in loaded.optimizers
    assert loaded.plugins["fakeplug"].distribution == "fakeplug"
    assert loaded.plugins["fakeplug"].version == "1.2.3"
    isolated = load_catalog(autoload=False)
    assert "half_sgd" not in isolated.optimizers and "adam" in isolated.optimizers


def test_tracing_prints_every_catalog_hook_call(monkeypatch, capsys):
    monkeypatch.setenv("OPTBENCH_TRACE_HOOKS", "1")
    load_catalog()
    err = capsys.readouterr().err
    assert "optbench: hook optbench_optimizers -> torch_optimizers: [sgd" in err
    assert "optbench: hook optbench_problems -> analytic:" in err


def test_a_failing_observer_is_reported_not_raised(write_plugin):
    path = write_plugin("observer", """
        from bench_core import hookimpl

        seen = []

        @hookimpl
        def optbench_trial_finished(result):
            seen.append(result)
            raise ValueError("disk full")
    """)
    catalog = load_catalog([path])
    failures = catalog.notify_trial_finished(config=None, result="r")
    assert failures == [f"plugin {str(path)!r}: optbench_trial_finished raised ValueError: disk full"]


def test_builtins_declare_the_current_contract(catalog):
    from bench_core.hookspecs import CONTRACT_VERSION

    assert {info.contract for info in catalog.plugins.values()} == {CONTRACT_VERSION}


def test_a_plugin_for_another_contract_is_refused_with_a_clear_message(write_plugin):
    paths = []
    for name, declaration in [("future", "OPTBENCH_CONTRACT = 99"), ("retired", "OPTBENCH_CONTRACT = 0"),
                              ("garbled", "OPTBENCH_CONTRACT = '1'"), ("current", "OPTBENCH_CONTRACT = 1"),
                              ("undeclared", "")]:
        source = LOCAL_OPTIMIZER.replace("half_sgd", f"{name}_sgd") + f"\n    {declaration}\n"
        paths.append(write_plugin(name, source))
    catalog = load_catalog(paths)
    assert len(catalog.issues) == 3, catalog.issues
    def about(name: str) -> str:  # by file name: a temporary folder's name may hold "99" too
        return next(message for message in catalog.issues if f"{name}.py" in message)

    future, garbled, retired = about("future"), about("garbled"), about("retired")
    assert "future.py" in future and "written for plugin contract 99" in future and "upgrade optbench" in future
    assert "retired.py" in retired and "contract 0" in retired and "upgrade the plugin" in retired
    assert "garbled.py" in garbled and "expected an integer" in garbled
    assert all("\n" not in message for message in catalog.issues)
    assert {"current_sgd", "undeclared_sgd"} <= set(catalog.optimizers)
    assert not {"future_sgd", "retired_sgd", "garbled_sgd"} & set(catalog.optimizers)
    contracts = {Path(info.name).stem: info.contract for info in catalog.plugins.values() if info.name.endswith(".py")}
    assert contracts == {"current": 1, "undeclared": None}


WRAPPER_PLUGIN = """
    from bench_core import hookimpl

    seen = []

    @hookimpl(wrapper=True)
    def optbench_optimizers():
        answers = yield
        seen.append(sorted(spec.name for answer in answers for spec in answer))
        return answers
"""

OBSERVER = """
    from bench_core import hookimpl

    @hookimpl{marker}
    def optbench_trial_finished(config, result):
        config.append({name!r})
"""


def test_a_wrapper_wraps_every_catalog_call_as_pluggy_documents(write_plugin):
    import sys

    path = write_plugin("wrapper", WRAPPER_PLUGIN)
    catalog = load_catalog([path])
    assert catalog.issues == []  # a wrapper no longer fails with "returned generator"
    module = next(m for m in sys.modules.values() if getattr(m, "__file__", None) == str(path))
    assert module.seen == [sorted(["adam", "adamw", "adagrad", "lbfgs", "momentum", "nesterov", "rmsprop", "sgd"]),
                           ["lion"]]
    assert "sgd" in catalog.optimizers


def test_observers_follow_pluggys_order_tryfirst_included(write_plugin):
    first = write_plugin("first", OBSERVER.format(marker="(tryfirst=True)", name="first"))
    plain = write_plugin("plain", OBSERVER.format(marker="", name="plain"))
    order: list[str] = []
    assert load_catalog([first, plain]).notify_trial_finished(config=order, result=None) == []
    assert order == ["first", "plain"]  # tryfirst, although pluggy calls the last registered first otherwise
    unmarked = write_plugin("unmarked", OBSERVER.format(marker="", name="unmarked"))
    order.clear()
    load_catalog([unmarked, plain]).notify_trial_finished(config=order, result=None)
    assert order == ["plain", "unmarked"]


def test_a_built_in_keeps_its_name_whichever_plugin_pluggy_calls_first(write_plugin):
    path = write_plugin("thief", """
        import torch
        from bench_core import OptimizerSpec, hookimpl

        @hookimpl(tryfirst=True)
        def optbench_optimizers():
            return [OptimizerSpec("sgd", torch.optim.Adam)]
    """)
    catalog = load_catalog([path])
    assert catalog.origin[("optimizer", "sgd")] == "torch_optimizers"
    assert any("optimizer 'sgd' is already provided by plugin 'torch_optimizers'; ignored" in i for i in catalog.issues)
