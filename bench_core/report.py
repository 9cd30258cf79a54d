"""Markdown reports from stored results alone: ``reports/<suite>/README.md`` with PNG figures.

Per problem, each optimizer's best configuration is selected on the validation loss
(the training loss where a problem has no validation split), averaged over seeds, and
reported on test metrics as mean ± std over seeds. A configuration with a diverged seed
is never selected while another one finished. Figures: learning curves of the selected
configurations with min-max bands over seeds, and final loss against learning rate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from tabulate import tabulate

from bench_core.store import Store

if TYPE_CHECKING:
    from bench_core.catalog import Catalog

CONFIG_PREFIXES = ("hp.",)
CONFIG_COLUMNS = ("batch_size", "schedule")


def write_report(store: Store, suite: str, out_dir: Path, catalog: Catalog | None = None) -> Path:
    """Write the report of ``suite`` into ``out_dir/<suite>/README.md``; return its path.

    With a ``catalog``, plugins implementing ``optbench_report_section`` add their sections
    after the built-in ones.
    """
    folder = Path(out_dir) / suite
    folder.mkdir(parents=True, exist_ok=True)
    trials = store.trials(suite)
    curves = store.curves(suite)
    runs = store.runs(suite)
    parts = [f"# optbench report: {suite}", ""]
    if len(runs):
        latest = runs.iloc[-1]
        description = _suite_description(latest)
        if description:
            parts += [description, ""]
    parts += _status_section(trials)
    for problem, rows in trials.groupby("problem", sort=True):
        parts += _problem_section(problem, rows, curves, folder)
    if catalog is not None:
        for section in catalog.report_sections(suite=suite, trials=trials, curves=curves, folder=folder):
            parts += [section, ""]
    parts += _environment_section(runs)
    parts += ["", f"Regenerate with `optbench report --suite {suite}`; every number above comes from the "
              "stored results."]
    path = folder / "README.md"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def _suite_description(run: pd.Series) -> str:
    config = run.get("suite_config")
    if isinstance(config, str):
        config = json.loads(config)
    return str((config or {}).get("description", "")).strip()


def _status_section(trials: pd.DataFrame) -> list[str]:
    counts = trials.pivot_table(index="problem", columns="status", values="trial_id", aggfunc="count",
                                fill_value=0)
    for status in ("ok", "diverged", "error"):
        if status not in counts:
            counts[status] = 0
    counts = counts[["ok", "diverged", "error"]]
    counts.loc["**all**"] = counts.sum()
    table = tabulate(counts.reset_index().values.tolist(), ["problem", "ok", "diverged", "error"],
                     tablefmt="github")
    return ["## Trials", "", table, ""]


def _config_columns(trials: pd.DataFrame) -> list[str]:
    hps = [c for c in trials.columns if c.startswith(CONFIG_PREFIXES)]
    return hps + [c for c in CONFIG_COLUMNS if c in trials.columns]


def _selection_metric(trials: pd.DataFrame) -> str:
    return "final.valid_loss" if trials.get("final.valid_loss", pd.Series(dtype=float)).notna().any() \
        else "final.train_loss"


def best_configurations(trials: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer, the configuration with the lowest mean selection metric over seeds.

    Diverged and errored trials count as infinitely bad, so a configuration that failed on
    any seed loses to one that finished on all of them.
    """
    metric = _selection_metric(trials)
    config = _config_columns(trials)
    scored = trials.assign(_score=trials[metric].where(trials["status"] == "ok", math.inf).fillna(math.inf))
    keys = ["optimizer", *config]
    means = scored.groupby(keys, dropna=False)["_score"].mean().reset_index()
    best = means.loc[means.groupby("optimizer")["_score"].idxmin()]
    return best.drop(columns="_score").reset_index(drop=True)


def _rows_of(trials: pd.DataFrame, config: pd.Series) -> pd.DataFrame:
    mask = pd.Series(True, index=trials.index)
    for column, value in config.items():
        column_values = trials[column]
        mask &= column_values.isna() if pd.isna(value) else column_values == value
    return trials[mask]


def _mean_std(values: pd.Series, digits: int = 4) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}g}"
    return f"{values.mean():.{digits}g} ± {values.std(ddof=1):.2g}"


def _describe_config(config: pd.Series, trials: pd.DataFrame) -> str:
    """The selected values of lr, batch size and of every setting the sweep varied for this optimizer."""
    rows = trials[trials["optimizer"] == config["optimizer"]]
    parts = []
    for column, value in config.items():
        if column == "optimizer" or pd.isna(value):
            continue
        if column not in ("hp.lr", "batch_size") and rows[column].nunique(dropna=False) < 2:
            continue
        name = column.removeprefix("hp.")
        parts.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    return ", ".join(parts)


def _problem_section(problem: str, trials: pd.DataFrame, curves: pd.DataFrame, folder: Path) -> list[str]:
    metric = _selection_metric(trials)
    best = best_configurations(trials)
    test_columns = [c for c in ("final.test_loss", "final.test_accuracy") if c in trials and trials[c].notna().any()]
    headers = ["optimizer", "selected configuration", f"{metric.removeprefix('final.')} (select)",
               *[c.removeprefix("final.") for c in test_columns], "steps to target", "diverged"]
    table = []
    for _, config in best.iterrows():
        rows = _rows_of(trials, config)
        ok = rows[rows["status"] == "ok"]
        reached = ok["steps_to_target"].dropna()
        target = f"{reached.median():g} ({len(reached)}/{len(rows)})" if len(reached) else f"– (0/{len(rows)})"
        all_of_optimizer = trials[trials["optimizer"] == config["optimizer"]]
        diverged = f"{(all_of_optimizer['status'] == 'diverged').sum()}/{len(all_of_optimizer)}"
        table.append([config["optimizer"], _describe_config(config, trials), _mean_std(ok[metric]),
                      *[_mean_std(ok[c]) for c in test_columns], target, diverged])
    table.sort(key=lambda row: _sort_key(row[2]))
    parts = [f"## {problem}", "",
             f"Best configuration per optimizer, selected on mean `{metric.removeprefix('final.')}` over seeds; "
             "values are mean ± std over seeds. *Steps to target*: median over seeds that reached the "
             "problem's target (how many did). *Diverged*: over all of the optimizer's trials. The "
             "configuration lists the learning rate, the batch size and whatever else the sweep varied.", "",
             tabulate(table, headers, tablefmt="github"), ""]
    curve_png = _plot_curves(problem, trials, best, curves, folder)
    if curve_png:
        parts += [f"![learning curves on {problem}]({curve_png})", ""]
    lr_png = _plot_lr(problem, trials, folder)
    if lr_png:
        parts += [f"![final loss against learning rate on {problem}]({lr_png})", ""]
    return parts


def _sort_key(text: str) -> float:
    try:
        return float(text.split(" ")[0])
    except ValueError:
        return math.inf


def _plot_curves(problem: str, trials: pd.DataFrame, best: pd.DataFrame, curves: pd.DataFrame,
                 folder: Path) -> str | None:
    if curves.empty or "train_loss" not in curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for _, config in best.iterrows():
        ids = _rows_of(trials, config)["trial_id"]
        points = curves[curves["trial_id"].isin(ids)]
        if points.empty:
            continue
        by_step = points.groupby("step")["train_loss"]
        mean, low, high = by_step.mean(), by_step.min(), by_step.max()
        (line,) = ax.plot(mean.index, mean.values, label=config["optimizer"])
        ax.fill_between(mean.index, low.values, high.values, alpha=0.2, color=line.get_color())
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    values = curves.loc[curves["trial_id"].isin(trials["trial_id"]), "train_loss"].dropna()
    return _save(fig, ax, folder, f"{problem}_curves.png", "optimizer step", "training loss",
                 f"{problem}: best configuration per optimizer (band: min-max over seeds)", log_y=(values > 0).all())


def _plot_lr(problem: str, trials: pd.DataFrame, folder: Path) -> str | None:
    if "hp.lr" not in trials or trials["hp.lr"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    finite = trials.loc[trials["status"] == "ok", "final.train_loss"].dropna()
    ceiling = finite.max() * 2 if len(finite) else 1.0
    for optimizer, rows in trials.groupby("optimizer"):
        ok = rows[rows["status"] == "ok"]
        # Best over the other hyperparameters, median over seeds: the loss this lr can reach.
        per_config = ok.groupby(["hp.lr", *[c for c in _config_columns(rows) if c != "hp.lr"]],
                                dropna=False)["final.train_loss"].median()
        curve = per_config.groupby(level=0).min()
        (line,) = ax.plot(curve.index, curve.values, marker="o", label=optimizer)
        failed = rows.loc[rows["status"] != "ok", "hp.lr"].unique()
        failed = [lr for lr in failed if lr not in curve.index]
        if failed:
            ax.scatter(failed, [ceiling] * len(failed), marker="x", color=line.get_color())
    ax.set_xscale("log")
    return _save(fig, ax, folder, f"{problem}_lr.png", "learning rate", "final training loss (median over seeds)",
                 f"{problem}: learning-rate sensitivity (x: every run diverged)", log_y=(finite > 0).all())


def _save(fig: plt.Figure, ax: plt.Axes, folder: Path, name: str, xlabel: str, ylabel: str, title: str,
          log_y: bool) -> str:
    """Label, save and close a figure; return its file name for the Markdown link."""
    if log_y:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return name


def _environment_section(runs: pd.DataFrame) -> list[str]:
    if runs.empty:
        return []
    env = runs.iloc[-1].get("environment")
    if isinstance(env, str):
        env = json.loads(env)
    env = dict(env or {})
    plugins = env.pop("plugins", {})
    rows = [[key, value] for key, value in env.items()]
    rows.append(["plugins", ", ".join(f"{k} {v}" for k, v in plugins.items())])
    return ["## Environment", "", "Of the latest run of this suite.", "",
            tabulate(rows, ["", "value"], tablefmt="github"), ""]
