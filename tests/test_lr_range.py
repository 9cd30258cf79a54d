"""Smith's learning-rate range test against the stability limit of gradient descent."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from bench_core.cli import main
from bench_core.driver import run_sweep
from bench_core.lr_range import analyse, range_settings
from bench_core.report import write_report
from bench_core.store import Store
from bench_core.suite import expand


@pytest.mark.slow
def test_the_range_test_finds_the_stability_edge_of_gradient_descent_on_a_quadratic(catalog, tmp_path):
    # f = 1/2 sum h_i x_i^2 with h in [1, 100]: every mode contracts while lr < 2 / 100, so the loss
    # falls monotonically below that learning rate and can only blow up above it.
    settings = range_settings(["quadratic"], ["sgd"], 1e-5, 1.0, 150)
    settings["problem"] = {"quadratic": {"options": {"noise": 0.0}}}
    with Store(tmp_path / "r.sqlite") as store:
        run_sweep(expand(settings, catalog), catalog, store, workers=1, progress=False)
        curve = store.curves("lr-range").sort_values("step")
        path = write_report(store, "lr-range", tmp_path / "reports")
    found = analyse(curve)
    edge = 2 / 100
    assert found["blowup"] > edge and found["blowup"] > found["lowest"]
    assert found["lowest"] > edge / 2, "the loss still falls at every step below the edge"
    losses = curve[(curve["step"] > 0) & (curve["lr"] < edge)]["train_loss"]
    assert losses.is_monotonic_decreasing
    assert found["steepest"] < found["lowest"]
    text = path.read_text()
    assert re.search(rf"\| quadratic +\| sgd +\|.*\| +{found['blowup']:.3g} +\|", text)
    assert (path.parent / "lr_range_quadratic.png").stat().st_size > 0


def test_the_lr_values_grow_geometrically_through_the_run(catalog, tmp_path):
    settings = range_settings(["quadratic"], ["sgd"], 1e-4, 1e-2, 20)
    with Store(tmp_path / "r.sqlite") as store:
        run_sweep(expand(settings, catalog), catalog, store, workers=1, progress=False)
        curve = store.curves("lr-range").sort_values("step")
    lrs = curve[curve["step"] > 0]["lr"].to_numpy()
    # the lr recorded after step k is the one step k - 1 used: 1e-4 * 100^((k - 1) / 20)
    expected = [1e-4 * 100 ** ((k - 1) / 20) for k in range(1, 21)]
    assert lrs.tolist() == pytest.approx(expected)


def test_analyse_reads_a_curve_that_ends_in_nan_as_blowing_up_there():
    lr = [10 ** (-4 + k / 4) for k in range(12)]
    loss = [5.0, 4.9, 4.5, 3.0, 1.5, 1.0, 0.9, 1.1, math.nan, math.nan, math.nan, math.nan]
    found = analyse(pd.DataFrame({"step": range(1, 13), "lr": lr, "train_loss": loss}))
    assert found["blowup"] == lr[8]
    assert lr[3] <= found["steepest"] <= lr[4] and found["lowest"] in (lr[6], lr[7])


@pytest.mark.slow
def test_the_command_stores_the_test_and_writes_its_report(tmp_path, capsys):
    args = ["lr-range", "--problem", "quadratic", "--optimizer", "sgd,adam", "--steps", "30",
            "--results", str(tmp_path / "r.sqlite"), "--report-dir", str(tmp_path / "reports"), "--workers", "1"]
    assert main(args) == 0
    text = (tmp_path / "reports" / "lr-range" / "README.md").read_text()
    assert re.search(r"\| quadratic +\| adam +\|", text) and re.search(r"\| quadratic +\| sgd +\|", text)
    assert main(args) == 0
    assert "2 already stored, ran 0" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--min-lr", "1", "--max-lr", "0.1"], "0 < low < high"),
    (["--steps", "2"], "at least 3 steps"),
])
def test_bad_ranges_are_one_line_errors(tmp_path, capsys, flags, message):
    code = main(["lr-range", "--problem", "quadratic", *flags, "--results", str(tmp_path / "r.sqlite")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
