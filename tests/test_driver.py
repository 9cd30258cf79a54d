"""The driver: time estimates before large sweeps, and what it counts."""

from __future__ import annotations

import dataclasses

import pytest

from bench_core import driver
from bench_core.driver import estimate, run_sweep
from bench_core.store import Store
from bench_core.suite import expand
from bench_core.trial import TrialResult

SETTINGS = {"name": "s", "problems": ["quadratic"], "optimizers": ["sgd"], "lr": [0.001, 0.002, 0.003, 0.004],
            "steps": 10, "evals": 2, "device": "cpu"}


def _store_with_timings(path, trials, seconds):
    store = Store(path)
    for config, wall in zip(trials, seconds, strict=True):
        store.save(config, TrialResult(config.trial_id, "ok", steps=10, final={"train_loss": 1.0},
                                       wall_seconds=wall, curve=[{"step": 0, "train_loss": 1.0}]))
    return store


def test_the_estimate_scales_stored_look_alikes_by_the_trials_to_run_and_the_workers(catalog, tmp_path):
    trials = expand(SETTINGS, catalog).trials
    with _store_with_timings(tmp_path / "r.sqlite", trials[:2], [2.0, 4.0]) as store:
        todo = [dataclasses.replace(t, seed=7) for t in trials] * 30  # 120 trials like the stored ones
        assert estimate(todo, store, workers=2) == ("120 trials to run with 2 worker(s); about 3 min judging by "
                                                    "stored trials of the same problems")  # 120 * 3 s / 2
        other = [dataclasses.replace(t, batch_size=None, budget=dataclasses.replace(t.budget, amount=99))
                 for t in todo[:5]]
        assert "5 of them with no stored look-alike" in estimate(todo[:5] + other, store, workers=1)
        assert "no stored trials like these" in estimate(other, store, workers=1)


def test_a_large_sweep_announces_its_size_and_estimate_before_starting(catalog, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(driver, "LARGE_SWEEP", 4)
    with Store(tmp_path / "r.sqlite") as store:
        run_sweep(expand(SETTINGS, catalog), catalog, store, workers=1, progress=False)
        assert "4 trials to run with 1 worker(s); no stored trials like these" in capsys.readouterr().err
        run_sweep(expand({**SETTINGS, "seeds": [1]}, catalog), catalog, store, workers=1, progress=False)
        assert "4 trials to run with 1 worker(s); about" in capsys.readouterr().err
        run_sweep(expand({**SETTINGS, "lr": [0.001, 0.002]}, catalog), catalog, store, workers=1, progress=False)
        assert "trials to run" not in capsys.readouterr().err  # small sweeps just start


def test_the_outcome_counts_stored_and_new_trials(catalog, tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        first = run_sweep(expand({**SETTINGS, "lr": [0.001, 0.5]}, catalog), catalog, store, workers=1,
                          progress=False)
        assert (first.total, first.skipped, first.counts["ok"], first.counts["diverged"]) == (2, 0, 1, 1)
        wider = run_sweep(expand(SETTINGS, catalog), catalog, store, workers=1, progress=False)
        assert (wider.total, wider.skipped, sum(wider.counts.values())) == (4, 1, 3)
        assert wider.summary() == "4 trials: 1 already stored, ran 3 (3 ok, 0 diverged, 0 error)"


@pytest.mark.slow
def test_the_cli_takes_a_seconds_budget_and_stop_at_target(tmp_path, fake_clock):
    from bench_core.cli import main

    results = tmp_path / "r.sqlite"
    base = ["run", "--problem", "quadratic", "--optimizer", "adam", "--lr", "0.1", "--results", str(results),
            "--no-report", "--workers", "1", "--name", "b"]
    assert main([*base, "--seconds", "1"]) == 0
    assert main([*base, "--steps", "2000", "--evals", "100", "--stop-at-target"]) == 0
    with Store(results) as store:
        trials = store.trials("b").set_index("budget_unit")
    timed, stopped = trials.loc["seconds"], trials.loc["steps"]
    # the trial ran in this process on the fake clock: it stopped just past its 1 s budget
    assert timed["budget_amount"] == 1 and 1.0 <= timed["train_seconds"] < 1.0 + 5 * fake_clock.tick
    assert stopped["steps"] == stopped["steps_to_target"] < 2000
