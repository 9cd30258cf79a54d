"""``optbench export`` (issue 16): trials and learning curves, as CSV and as Parquet, read back equal to the store.

Every expectation comes from the results file itself (``Store.trials()``, ``Store.curves()``, the
stored curve JSON), never from numbers written here, so a change that drops, shifts or retypes a
value fails. The sweep is real and tiny: quadratic with SGD (which diverges at its default
learning rate, so curves differ in length) and Adam, plus a plugin optimizer with an integer,
a text, a boolean and a mixed text/number hyperparameter, so typed columns with gaps are exported.
"""

from __future__ import annotations

import errno
import io
import json
import math
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from cli_errors import assert_one_line_error

from bench_core.cli import main
from bench_core.errors import UserError
from bench_core.store import NULLABLE_INTEGERS, Store

TYPED_PLUGIN = """
import torch
from bench_core import Choice, OptimizerSpec, Param, hookimpl


class Typed(torch.optim.SGD):
    def __init__(self, params, lr, k, update, damped, mode):
        super().__init__(params, lr=lr * (0.5 if update == "halved" else 1.0) * (0.9 if damped else 1.0))


@hookimpl
def optbench_optimizers():
    return [OptimizerSpec("typed", Typed, lr=Param(0.01, 1e-3, 0.5, log=True),
                          hyperparams={"k": Param(4, 1, 20, integer=True),
                                       "update": Choice(["plain", "halved"]),
                                       "damped": Choice([False, True]),
                                       "mode": Choice(["auto", 2])})]
"""
SWEEP = ("--problem", "quadratic", "--steps", "20", "--evals", "4", "--workers", "1", "--no-progress", "--no-report")
#: Columns whose values are dicts in ``Store.trials()`` and JSON text in a file.
DICT_COLUMNS = ("metric_ranges", "fingerprint")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    plugin, path = folder / "typed_plugin.py", folder / "r.sqlite"
    plugin.write_text(TYPED_PLUGIN)
    assert main(["run", *SWEEP, "--optimizer", "sgd,adam", "--seeds", "0,1", "--results", str(path),
                 "--name", "plain"]) in (0, 1)
    assert main(["run", *SWEEP, "--plugins", str(plugin), "--optimizer", "typed", "--hp", "k=1,8",
                 "--hp", "update=plain,halved", "--hp", "damped=true", "--hp", "mode=auto,2", "--results", str(path),
                 "--name", "typed"]) in (0, 1)
    return path


@pytest.fixture
def stored(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    with Store(results, create=False) as store:
        return store.trials(), store.curves()


def export(capsys: pytest.CaptureFixture[str], results: Path, *argv: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    status = main(["export", "--results", str(results), *argv])
    return status, capsys.readouterr().err.splitlines()


def read(path: Path | io.BytesIO | io.StringIO, format: str) -> pd.DataFrame:
    if format == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def same(stored: Any, exported: Any) -> bool:
    """Equal; floats to within the last bit a CSV parser may round differently (pandas < 3)."""
    if isinstance(stored, float) and isinstance(exported, float):
        return stored == exported or math.isclose(stored, exported, rel_tol=4e-16)
    return stored == exported and isinstance(stored, bool) == isinstance(exported, bool)


def assert_same_values(back: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns in the same order, same rows in the same order, and every cell equal (missing where missing)."""
    assert list(back.columns) == list(expected.columns)
    assert back["trial_id"].tolist() == expected["trial_id"].tolist()
    for name in expected.columns:
        want, got = expected[name].tolist(), back[name].tolist()
        if name in DICT_COLUMNS:
            got = [json.loads(text) for text in got]
        elif name == "finished_at":
            got = pd.to_datetime(back[name], utc=True, format="ISO8601").tolist()
        elif len(kinds := {type(v) for v in want if not missing(v)}) > 1 and not kinds <= {int, float}:
            want = [v if missing(v) else str(v) for v in want]  # a column of mixed types is exported as its text
        bad = [(i, w, g) for i, (w, g) in enumerate(zip(want, got, strict=True))
               if not (missing(w) and missing(g)) and not (not missing(g) and same(w, g))]
        assert not bad, f"{name}: (row, stored, exported) {bad[:3]}"


def integer_columns(trials: pd.DataFrame) -> list[str]:
    """Columns that hold whole numbers: integer in the store's frame, or integers the frame keeps as float."""
    return [name for name in trials.columns
            if pd.api.types.is_integer_dtype(trials[name]) or name in NULLABLE_INTEGERS]


def test_the_sweep_gives_the_export_something_to_get_wrong(stored):
    trials, curves = stored
    assert len(trials) == 4 + 2 * 2 * 2
    assert trials["hp.k"].isna().any() and trials["hp.k"].notna().any(), "an integer column with gaps"
    assert str(trials["hp.k"].dtype) == "Int64", "Store.trials(): whole-number hyperparameters are Int64, gaps or not"
    assert curves["trial_id"].value_counts().nunique() > 1, "curves of different lengths"
    assert {type(v) for v in trials["hp.mode"].dropna()} == {str, int}, "a column of mixed types"
    assert {"ok", "diverged"} <= set(trials["status"])


@pytest.mark.parametrize("format", ["parquet", "csv"])
def test_the_trials_export_holds_the_stored_trials_with_their_types(results, stored, tmp_path, capsys, format):
    if format == "parquet":
        pytest.importorskip("pyarrow")
    trials, _ = stored
    out = tmp_path / f"trials.{format}"
    status, lines = export(capsys, results, "--format", format, "-o", str(out))
    assert status == 0, lines
    back = read(out, format)
    assert_same_values(back, trials)
    if format == "parquet":
        for name in integer_columns(trials):
            assert pd.api.types.is_integer_dtype(back[name]), f"{name} is {back[name].dtype}"
        for name in ("hp.update", "hp.mode", "problem", "optimizer", "status", "config", *DICT_COLUMNS):
            assert pd.api.types.is_string_dtype(back[name]), f"{name} is {back[name].dtype}"
        assert pd.api.types.is_bool_dtype(back["hp.damped"])
        assert isinstance(back["finished_at"].dtype, pd.DatetimeTZDtype)
    else:  # a CSV has no types: integer columns must be written without a fraction
        text = pd.read_csv(out, dtype=str, keep_default_na=False)
        for name in integer_columns(trials):
            cells = [cell for cell in text[name] if cell]
            assert all(re.fullmatch(r"-?\d+", cell) for cell in cells), f"{name}: {cells[:3]}"
        assert set(text["hp.update"]) == {"", "plain", "halved"}


def test_parquet_is_chosen_by_the_file_name_and_equals_the_csv(results, stored, tmp_path, capsys):
    pytest.importorskip("pyarrow")
    assert export(capsys, results, "-o", str(tmp_path / "t.parquet"))[0] == 0
    assert export(capsys, results, "-o", str(tmp_path / "t.csv"))[0] == 0
    assert (tmp_path / "t.parquet").read_bytes().startswith(b"PAR1")
    parquet, csv = read(tmp_path / "t.parquet", "parquet"), read(tmp_path / "t.csv", "csv")
    assert_same_values(parquet, stored[0])
    assert_same_values(csv, stored[0])


@pytest.mark.parametrize("format", ["parquet", "csv"])
def test_the_curves_export_is_the_stored_curves_with_each_trials_settings(results, stored, tmp_path, capsys, format):
    if format == "parquet":
        pytest.importorskip("pyarrow")
    trials, curves = stored
    out = tmp_path / f"curves.{format}"
    status, lines = export(capsys, results, "--what", "curves", "--format", format, "-o", str(out))
    assert status == 0, lines
    back = read(out, format)
    with sqlite3.connect(f"file:{results}?mode=ro", uri=True) as db:
        points = db.execute("SELECT SUM(json_array_length(curve)) FROM trials").fetchone()[0]
    assert len(back) == len(curves) == points
    columns = list(trials.columns)
    settings = columns[columns.index("problem"):columns.index("budget_amount") + 1]  # Store.trials()' documented order
    assert list(back.columns) == ["trial_id", *settings, *curves.columns[1:]]
    assert_same_values(back[list(curves.columns)], curves)
    expected = trials.set_index("trial_id").loc[curves["trial_id"], settings].reset_index()
    assert_same_values(back[["trial_id", *settings]], expected)
    if format == "parquet":
        for name in ("step", "samples", "seed", "batch_size", "hp.k"):
            assert pd.api.types.is_integer_dtype(back[name]), f"{name} is {back[name].dtype}"


def test_an_export_of_one_suite_holds_only_its_trials(results, tmp_path, capsys):
    pytest.importorskip("pyarrow")
    with Store(results, create=False) as store:
        typed, curves = store.trials("typed"), store.curves("typed")
    assert export(capsys, results, "--suite", "typed", "-o", str(tmp_path / "t.parquet"))[0] == 0
    assert export(capsys, results, "--suite", "typed", "--what", "curves", "-o", str(tmp_path / "c.parquet"))[0] == 0
    assert_same_values(pd.read_parquet(tmp_path / "t.parquet"), typed)
    assert pd.read_parquet(tmp_path / "c.parquet")["trial_id"].tolist() == curves["trial_id"].tolist()


@pytest.mark.parametrize("argv", [("--format", "parquet", "-o", "t.parquet"), ("-o", "t.parquet"),
                                  ("--format", "parquet", "--what", "curves", "-o", "t.data")])
def test_parquet_without_pyarrow_is_one_line_and_writes_nothing(results, tmp_path, capsys, monkeypatch, argv):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = tmp_path / "out"
    out.mkdir()
    argv = tuple(str(out / arg) if arg.startswith("t.") else arg for arg in argv)
    status, lines = export(capsys, results, *argv)
    assert_one_line_error(status, lines, "pip install 'optbench[parquet]'")
    assert list(out.iterdir()) == []
    with Store(results, create=False) as store, pytest.raises(UserError, match=re.escape("optbench[parquet]")):
        store.export(out / "t.parquet", format="parquet")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("format", ["parquet", "csv"])
def test_an_export_to_an_unwritable_path_is_one_line(results, tmp_path, capsys, monkeypatch, format):
    if format == "parquet":
        pytest.importorskip("pyarrow")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    status, lines = export(capsys, results, "--format", format, "-o", str(blocker / "t.out"))
    assert_one_line_error(status, lines, str(blocker), "is a file")
    folder = tmp_path / "t.out"
    folder.mkdir()
    status, lines = export(capsys, results, "--format", format, "-o", str(folder))
    assert_one_line_error(status, lines, str(folder), "cannot write")
    monkeypatch.setattr("os.access", lambda *args, **kwargs: False)  # permission denied, even for root
    status, lines = export(capsys, results, "--format", format, "-o", str(tmp_path / "locked" / "t.out"))
    assert_one_line_error(status, lines, "permission denied")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "t.out"]
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_parquet_export_stopped_mid_write_keeps_the_old_file(results, tmp_path, capsys, monkeypatch, failure):
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "t.parquet"
    out.write_text("old export\n")

    def half_then_fail(table: Any, target: Any, **kwargs: Any) -> None:
        Path(target).write_bytes(b"PAR1 half a file")
        raise failure

    monkeypatch.setattr(pyarrow_parquet, "write_table", half_then_fail)
    status, lines = export(capsys, results, "-o", str(out))
    if isinstance(failure, OSError):
        assert_one_line_error(status, lines, str(out), "No space left on device", "older file there is kept")
    else:
        assert status == 130
    assert out.read_text() == "old export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"], "no temporary file is left"


@pytest.mark.parametrize("format", ["parquet", "csv"])
def test_standard_output_gets_the_same_file(results, stored, tmp_path, capsysbinary, format):
    if format == "parquet":
        pytest.importorskip("pyarrow")
    capsysbinary.readouterr()
    assert main(["export", "--results", str(results), "--format", format, "-o", "-"]) == 0
    written = capsysbinary.readouterr().out
    assert_same_values(read(io.BytesIO(written), format), stored[0])


def test_parquet_to_a_terminal_is_refused_in_one_line(results, capsysbinary, monkeypatch):
    pytest.importorskip("pyarrow")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    capsysbinary.readouterr()
    status = main(["export", "--results", str(results), "--format", "parquet", "-o", "-"])
    captured = capsysbinary.readouterr()
    assert_one_line_error(status, captured.err.decode().splitlines(), "terminal")
    assert captured.out == b""


def test_a_closed_pipe_on_standard_output_is_one_line(results, capsys, monkeypatch):
    class ClosedPipe(io.BytesIO):
        def write(self, data: Any) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    class Stdout(io.TextIOWrapper):
        def isatty(self) -> bool:
            return False

    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", Stdout(ClosedPipe()))
    status = main(["export", "--results", str(results), "-o", "-"])
    lines = capsys.readouterr().err.splitlines()
    assert_one_line_error(status, lines, "standard output was closed")


def test_unknown_format_or_table_is_refused_by_the_library(results, tmp_path):
    with Store(results, create=False) as store:
        with pytest.raises(ValueError, match="'xlsx'"):
            store.export(tmp_path / "t.xlsx", format="xlsx")
        with pytest.raises(ValueError, match="'runs'"):
            store.export(tmp_path / "t.csv", what="runs")
    assert list(tmp_path.iterdir()) == []


def test_a_metric_named_like_a_setting_is_refused_not_renamed(results, tmp_path, monkeypatch):
    real = Store.curves

    def curves(self: Store, suite: str | None = None) -> pd.DataFrame:
        return real(self, suite).rename(columns={"train_loss": "seed"})  # a plugin's metric named "seed"

    monkeypatch.setattr(Store, "curves", curves)
    with Store(results, create=False) as store, pytest.raises(UserError, match="seed"):
        store.export(tmp_path / "c.csv", what="curves")
    assert list(tmp_path.iterdir()) == []
