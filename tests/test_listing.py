"""``optbench list``: every built-in optimizer, problem, schedule and search strategy, with the plugin it came from.

The expectations come from the plugins themselves (each built-in entry point's module, asked directly for what
it provides), not from the catalog the listing is made of.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json

import pytest

from bench_core.cli import main
from bench_core.listing import catalog_rows, data_status, render_listing
from bench_core.specs import ProblemSpec

HOOKS = {"optimizers": "optbench_optimizers", "problems": "optbench_problems", "schedules": "optbench_schedules",
         "searches": "optbench_search_strategies"}
TITLES = {"optimizers": "Optimizers", "problems": "Problems", "schedules": "Schedules",
          "searches": "Search strategies"}


def provided_by_builtins() -> dict[str, dict[str, str]]:
    """kind -> name -> entry-point name, from each built-in plugin module's own hooks."""
    expected: dict[str, dict[str, str]] = {kind: {} for kind in HOOKS}
    for entry_point in importlib.metadata.distribution("optbench").entry_points:
        if entry_point.group != "optbench":
            continue
        module = importlib.import_module(entry_point.value)
        for kind, hook in HOOKS.items():
            for spec in getattr(module, hook, lambda: [])():
                assert spec.name not in expected[kind], f"two built-ins provide {kind} {spec.name!r}"
                expected[kind][spec.name] = entry_point.name
    return expected


def listed(capsys, *args: str) -> str:
    assert main(["list", *args]) == 0
    return capsys.readouterr().out


def section(text: str, title: str) -> list[str]:
    """The rows of one table of the plain-text listing (after its title, header and rule lines)."""
    block = next(block for block in text.split("\n\n") if block.startswith(title + "\n"))
    return block.splitlines()[3:]


def test_the_built_in_plugins_provide_what_the_listing_must_show():
    expected = provided_by_builtins()
    # a few facts stated outright, so that an empty discovery above cannot pass the tests below
    assert expected["optimizers"]["adam"] == "torch_optimizers" and expected["optimizers"]["lion"] == "lion"
    assert expected["problems"]["quadratic"] == "analytic" and expected["problems"]["digits_mlp"] == "digits"
    assert expected["problems"]["mnist_2c2d"] == "vision" and expected["schedules"]["cosine"] == "schedules"
    assert expected["searches"]["grid"] == "search"


def test_list_json_names_every_built_in_and_the_plugin_it_came_from(capsys):
    rows = json.loads(listed(capsys, "--json"))
    for kind, names in provided_by_builtins().items():
        assert {row["name"]: row["plugin"] for row in rows[kind]} == names, kind
        assert [row["name"] for row in rows[kind]] == sorted(names), f"{kind} are listed by name"
        assert all(row["description"] for row in rows[kind]), f"every one of the {kind} has a description"
    assert {row["name"] for row in rows["plugins"]} == {
        entry_point.name for entry_point in importlib.metadata.distribution("optbench").entry_points
        if entry_point.group == "optbench"}
    assert rows["issues"] == []


def test_list_shows_each_built_in_in_its_table_with_its_plugin(capsys):
    text = listed(capsys)
    for kind, names in provided_by_builtins().items():
        table = section(text, TITLES[kind])
        assert len(table) == len(names), TITLES[kind]
        for name, plugin in names.items():
            row = next((line for line in table if line.split()[0] == name), None)
            assert row is not None, f"{name} is missing from {TITLES[kind]}"
            assert plugin in row.split(), row


def test_list_shows_the_defaults_of_each_optimizer_and_the_budget_of_each_problem(capsys, catalog):
    rows = json.loads(listed(capsys, "--json"))
    adam = next(row for row in rows["optimizers"] if row["name"] == "adam")
    assert adam["defaults"] == catalog.optimizers["adam"].defaults() and "lr" in adam["defaults"]
    quadratic = next(row for row in rows["problems"] if row["name"] == "quadratic")
    spec = catalog.problems["quadratic"]
    assert quadratic["budget"] == f"{spec.budget.amount} {spec.budget.unit}"
    assert quadratic["options"] == dict(spec.options)
    table = section(listed(capsys), "Optimizers")
    assert any(line.split()[0] == "adam" and f"lr={adam['defaults']['lr']:g}" in line for line in table)


def test_a_local_plugin_is_listed_with_the_file_it_came_from(capsys, write_plugin):
    path = write_plugin("listed_plugin", """
        import torch
        from bench_core import OptimizerSpec, hookimpl

        @hookimpl
        def optbench_optimizers():
            return [OptimizerSpec("listed_sgd", torch.optim.SGD, lr=0.1, description="SGD from a file")]
    """)
    rows = json.loads(listed(capsys, "--json", "--plugins", str(path)))
    row = next(row for row in rows["optimizers"] if row["name"] == "listed_sgd")
    assert row["plugin"].endswith("listed_plugin.py") and row["description"] == "SGD from a file"
    plugin = next(info for info in rows["plugins"] if info["name"] == row["plugin"])
    assert plugin["source"] == f"file {row['plugin']}" and plugin["hooks"] == ["optbench_optimizers"]
    assert plugin["version"] is None
    text = listed(capsys, "--plugins", str(path))
    assert any(line.split()[0] == "listed_sgd" and row["plugin"] in line for line in section(text, "Optimizers"))


def test_report_sections_list_the_built_ins_in_report_order(catalog):
    from bench_core.report_sections import DEFAULT_SECTIONS, PLUGIN_PREFIX

    rows = catalog_rows(catalog)["report_sections"]
    assert [row["name"] for row in rows] == [PLUGIN_PREFIX + name for name in DEFAULT_SECTIONS]
    assert {row["plugin"] for row in rows} == {"optbench (built-in)"}


def test_the_terminal_listing_has_every_table(catalog):
    text = render_listing(catalog_rows(catalog))
    titles = [block.splitlines()[0] for block in text.split("\n\n")]
    assert titles == ["Optimizers", "Problems", "Schedules", "Search strategies", "Data sets", "Report sections",
                      "Plugins"]


def test_data_status_reports_a_failing_lookup_by_its_first_line_and_never_raises():
    def missing() -> str:
        raise FileNotFoundError("no files here\nsecond line of detail")

    def found() -> str:
        return "/data/sets"

    spec = ProblemSpec("needs_data", lambda device: None, data=missing)
    assert data_status(spec) == {"found": False, "message": "no files here", "hint": "no files here"}
    assert data_status(ProblemSpec("has_data", lambda device: None, data=found)) == {"found": True,
                                                                                     "where": "/data/sets"}
    assert data_status(ProblemSpec("no_data", lambda device: None)) is None


@pytest.mark.parametrize("error", [RuntimeError(), ValueError("   ")])
def test_data_status_names_an_error_without_a_message_by_its_type(error):
    def lookup() -> str:
        raise error

    status = data_status(ProblemSpec("p", lambda device: None, data=lookup))
    assert status["found"] is False and type(error).__name__ in status["message"]
