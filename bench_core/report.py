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
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import LogNorm, Normalize
from tabulate import tabulate

from bench_core.stats import distinguishable, mean_interval, performance_profile, profile_summary, tuned_cost
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
    from bench_core.lr_range import is_range_test, write_range_report

    trials = store.trials(suite)
    if is_range_test(trials):
        return write_range_report(store, suite, out_dir)
    folder = Path(out_dir) / suite
    folder.mkdir(parents=True, exist_ok=True)
    curves = store.curves(suite)
    runs = store.runs(suite)
    parts = [f"# optbench report: {suite}", ""]
    if len(runs):
        latest = runs.iloc[-1]
        description = _suite_description(latest)
        if description:
            parts += [description, ""]
    parts += _status_section(trials)
    parts += _summary_section(trials, folder)
    for problem, rows in trials.groupby("problem", sort=True):
        parts += _problem_section(problem, rows, curves, folder, catalog)
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


def selection_metric(trials: pd.DataFrame) -> str:
    """The column configurations are selected on: validation loss, or training loss without a validation split."""
    return "final.valid_loss" if trials.get("final.valid_loss", pd.Series(dtype=float)).notna().any() \
        else "final.train_loss"


def best_configurations(trials: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer, the configuration with the lowest mean selection metric over seeds.

    Diverged and errored trials count as infinitely bad, so a configuration that failed on
    any seed loses to one that finished on all of them.
    """
    metric = selection_metric(trials)
    config = _config_columns(trials)
    scored = trials.assign(_score=trials[metric].where(trials["status"] == "ok", math.inf).fillna(math.inf))
    keys = ["optimizer", *config]
    means = scored.groupby(keys, dropna=False)["_score"].mean().reset_index()
    best = means.loc[means.groupby("optimizer")["_score"].idxmin()]
    return best.drop(columns="_score").reset_index(drop=True)


def rows_of(trials: pd.DataFrame, config: pd.Series) -> pd.DataFrame:
    """The trials (every seed) of one configuration; a NaN in ``config`` matches NaN."""
    mask = pd.Series(True, index=trials.index)
    for column, value in config.items():
        column_values = trials[column]
        mask &= column_values.isna() if pd.isna(value) else column_values == value
    return trials[mask]


def mean_std(values: pd.Series, digits: int = 4) -> str:
    """``mean ± std`` over seeds for a table cell (one value alone, ``–`` for none)."""
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


def _problem_section(problem: str, trials: pd.DataFrame, curves: pd.DataFrame, folder: Path,
                     catalog: Catalog | None = None) -> list[str]:
    metric = selection_metric(trials)
    best = best_configurations(trials)
    test_columns = [c for c in ("final.test_loss", "final.test_accuracy") if c in trials and trials[c].notna().any()]
    headline = test_columns[-1] if test_columns else metric
    headers = ["optimizer", "selected configuration", f"{metric.removeprefix('final.')} (select)",
               *[c.removeprefix("final.") for c in test_columns], f"95% CI of {headline.removeprefix('final.')}",
               "steps to target", "seconds to target", "diverged"]
    table, selected = [], {}
    for _, config in best.iterrows():
        rows = rows_of(trials, config)
        ok = rows[rows["status"] == "ok"]
        selected[config["optimizer"]] = ok[metric]
        reached = ok["steps_to_target"].dropna()
        target = f"{reached.median():g} ({len(reached)}/{len(rows)})" if len(reached) else f"– (0/{len(rows)})"
        seconds = ok["seconds_to_target"].dropna() if "seconds_to_target" in ok else pd.Series(dtype=float)
        all_of_optimizer = trials[trials["optimizer"] == config["optimizer"]]
        n_diverged = int((all_of_optimizer["status"] == "diverged").sum())
        diverged = f"{n_diverged}/{len(all_of_optimizer)} ({n_diverged / len(all_of_optimizer):.0%})"
        table.append([config["optimizer"], _describe_config(config, trials), mean_std(ok[metric]),
                      *[mean_std(ok[c]) for c in test_columns], _interval(ok[headline]), target,
                      f"{seconds.median():.3g}" if len(seconds) else "–", diverged])
    table.sort(key=lambda row: _sort_key(row[2]))
    notes = _mark_indistinguishable(table, selected)
    parts = [f"## {problem}", "",
             f"Best configuration per optimizer, selected on mean `{metric.removeprefix('final.')}` over seeds; "
             "values are mean ± std over seeds, and the 95% interval is Student's t over seeds. *Steps to "
             "target*: median over seeds that reached the problem's target (how many did); *seconds*: the same "
             "in training time. *Diverged*: over all of the optimizer's trials. The configuration lists the "
             f"learning rate, the batch size and whatever else the sweep varied.{notes}", "",
             tabulate(table, headers, tablefmt="github"), ""]
    curve_png = _plot_curves(problem, trials, best, curves, folder)
    if curve_png:
        parts += [f"![learning curves on {problem}]({curve_png})", ""]
    lr_png = _plot_lr(problem, trials, folder)
    if lr_png:
        parts += [f"![final loss against learning rate on {problem}]({lr_png})", ""]
    parts += _sensitivity_section(problem, trials, folder)
    parts += _settings_section(trials)
    parts += _heatmap_section(problem, trials, folder)
    parts += _batch_size_section(problem, trials, folder)
    parts += _trajectory_section(problem, trials, curves, folder, catalog)
    return parts


def _interval(values: pd.Series) -> str:
    mean, low, high = mean_interval(values)
    if math.isnan(mean):
        return "–"
    if low == high:
        return f"{mean:.4g} (one seed)"
    return f"[{low:.4g}, {high:.4g}]"


def _mark_indistinguishable(table: list[list[str]], selected: dict[str, pd.Series]) -> str:
    """Mark rows whose selection metric is within seed noise of the leader's; return the note explaining it."""
    if len(table) < 2:
        return ""
    leader = table[0][0]
    marked = False
    for row in table[1:]:
        if distinguishable(selected[leader], selected[row[0]]) is False:
            row[0] += " ≈"
            marked = True
    if not marked:
        seeds = min(len(v.dropna()) for v in selected.values())
        return "" if seeds >= 2 else " With fewer than two seeds per configuration, seed noise cannot be judged."
    return (f" **≈**: not distinguishable from the leader ({leader}) across seeds on the selection metric "
            "(Welch's t-test, p ≥ 0.05).")


def _sensitivity_section(problem: str, trials: pd.DataFrame, folder: Path) -> list[str]:
    """How wide each optimizer's good learning-rate range is: the less tuning it needs, the wider."""
    heading = ["### Learning-rate sensitivity", ""]
    if "hp.lr" not in trials or trials["hp.lr"].nunique() < 2:
        return [*heading, "One learning rate in this sweep: sweep `--lr` over a grid to see how sensitive each "
                "optimizer is to it.", ""]
    others = [c for c in _config_columns(trials) if c != "hp.lr"]
    table, ranges = [], {}
    for optimizer, rows in trials.groupby("optimizer"):
        lrs = sorted(rows["hp.lr"].unique())
        reached = [lr for lr, group in rows.groupby("hp.lr")
                   if math.isfinite(tuned_cost(group, config_columns=others).iloc[0, 0])]
        ranges[optimizer] = (lrs, reached)
        failed = sorted(rows.loc[rows["status"] != "ok", "hp.lr"].unique())
        if reached:
            decades = math.log10(max(reached) / min(reached))
            good = f"{min(reached):g} – {max(reached):g} ({len(reached)}/{len(lrs)}; {decades:.1f} decades)"
        else:
            good = f"none (0/{len(lrs)})"
        table.append([optimizer, len(reached), ", ".join(f"{lr:g}" for lr in lrs), good,
                      ", ".join(f"{lr:g}" for lr in failed) or "–"])
    table.sort(key=lambda row: -row[1])
    return [*heading,
            "Learning rates at which each optimizer reaches the target (at its best other settings, median over "
            "seeds): the wider the range, the less tuning it needs. *Diverged at*: learning rates with a "
            "diverged or errored trial.", "",
            tabulate([[row[0], *row[2:]] for row in table],
                     ["optimizer", "learning rates tried", "reaching the target", "diverged at"], tablefmt="github"),
            "", f"![tuneability on {problem}]({_plot_tuneability(problem, ranges, folder)})", ""]


def _plot_tuneability(problem: str, ranges: dict[str, tuple[list[float], list[float]]], folder: Path) -> str:
    """One row per optimizer: the learning rates tried (dots) and those reaching the target (filled, joined)."""
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(ranges) + 1.6))
    for row, (_, (tried, reached)) in enumerate(sorted(ranges.items())):
        ax.scatter(tried, [row] * len(tried), facecolors="none", edgecolors="grey", zorder=2)
        if reached:
            ax.plot([min(reached), max(reached)], [row, row], lw=6, alpha=0.35, color="tab:green", zorder=1)
            ax.scatter(reached, [row] * len(reached), color="tab:green", zorder=3)
    ax.set_yticks(range(len(ranges)), sorted(ranges))
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", title=f"{problem}: learning rates reaching the target (green)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    name = f"{problem}_tuneability.png"
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return name


def _settings_section(trials: pd.DataFrame) -> list[str]:
    """What each setting the sweep varied besides lr and batch size (momentum, betas, schedule) buys.

    For every value of the setting: the optimizer's best over the remaining settings, so a
    momentum value is judged at its own best learning rate.
    """
    metric = selection_metric(trials)
    varied = [c for c in _config_columns(trials) if c not in ("hp.lr", "batch_size")
              and trials.groupby("optimizer")[c].nunique().max() > 1]
    if not varied:
        return []
    parts = ["### Momentum, schedules and other settings", "",
             f"For each value of a setting the sweep varied: the best mean `{metric.removeprefix('final.')}` over "
             "the other settings (the learning rate included, so each value is judged at its own best learning "
             "rate) and the steps to target there.", ""]
    for column in varied:
        others = [c for c in _config_columns(trials) if c != column]
        table = []
        for (optimizer, value), group in trials.groupby(["optimizer", column]):
            if trials.loc[trials["optimizer"] == optimizer, column].nunique() < 2:
                continue
            chosen = best_configurations(group).iloc[0]
            rows = rows_of(group, chosen)
            ok = rows[rows["status"] == "ok"]
            cost = tuned_cost(group, config_columns=others).iloc[0, 0]
            table.append([optimizer, f"{value:g}" if isinstance(value, float) else value, mean_std(ok[metric]),
                          f"{cost:g}" if math.isfinite(cost) else "not reached",
                          f"{chosen['hp.lr']:g}" if "hp.lr" in chosen else "–"])
        name = column.removeprefix("hp.")
        parts += [tabulate(table, ["optimizer", name, metric.removeprefix("final."), "steps to target",
                                   "at lr"], tablefmt="github"), ""]
    return parts


def _heatmap_section(problem: str, trials: pd.DataFrame, folder: Path) -> list[str]:
    """Final loss over the learning rate x batch size grid, one panel per optimizer."""
    if "hp.lr" not in trials or "batch_size" not in trials or trials["hp.lr"].nunique() < 2 \
            or trials["batch_size"].nunique() < 2:
        return []
    metric = selection_metric(trials)
    scored = trials.assign(_score=trials[metric].where(trials["status"] == "ok"))
    others = [c for c in _config_columns(trials) if c not in ("hp.lr", "batch_size")]
    optimizers = sorted(trials["optimizer"].unique())
    fig, axes = plt.subplots(1, len(optimizers), figsize=(3.4 * len(optimizers), 3.4), squeeze=False)
    finite = scored["_score"].dropna()
    vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    log = vmin > 0 and vmax > 10 * vmin
    norm = LogNorm(vmin, vmax) if log else Normalize(vmin, vmax)
    for ax, optimizer in zip(axes[0], optimizers, strict=True):
        rows = scored[scored["optimizer"] == optimizer]
        grid = (rows.groupby(["batch_size", "hp.lr", *others], dropna=False)["_score"].median()
                .groupby(level=["batch_size", "hp.lr"]).min().unstack("hp.lr"))
        image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis_r", norm=norm, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [f"{lr:g}" for lr in grid.columns], rotation=45, fontsize="small")
        ax.set_yticks(range(grid.shape[0]), [f"{int(b)}" for b in grid.index], fontsize="small")
        for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
            dark = not math.isnan(value) and norm(value) > 0.5
            ax.text(j, i, "×" if math.isnan(value) else f"{value:.2g}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
        ax.set(title=optimizer, xlabel="learning rate")
    axes[0][0].set_ylabel("batch size")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label=metric.removeprefix("final."))
    fig.suptitle(f"{problem}: final {metric.removeprefix('final.')} over learning rate × batch size "
                 "(median over seeds; ×: diverged)", y=1.04)
    name = f"{problem}_heatmap.png"
    fig.savefig(folder / name, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [f"![learning rate x batch size on {problem}]({name})", ""]


def _batch_size_section(problem: str, trials: pd.DataFrame, folder: Path) -> list[str]:
    """Steps to target, best learning rate and throughput against batch size, with the scaling rules."""
    sizes = sorted(trials["batch_size"].dropna().unique()) if "batch_size" in trials else []
    if len(sizes) < 2:
        if len(sizes) == 1:  # a stochastic problem run at one batch size
            return ["### Batch size", "", f"One batch size ({int(sizes[0])}) in this sweep: sweep `--batch-size` "
                    "to see how it trades steps against samples.", ""]
        return []
    config = [c for c in _config_columns(trials) if c != "batch_size"]
    rows = []
    for (optimizer, batch_size), group in trials.groupby(["optimizer", "batch_size"]):
        cost = tuned_cost(group, config_columns=config).iloc[0, 0]
        chosen = best_configurations(group).iloc[0]
        ok = group[group["status"] == "ok"]
        rows.append({"optimizer": optimizer, "batch_size": int(batch_size), "steps": cost,
                     "lr": chosen.get("hp.lr", math.nan),
                     "throughput": ok["samples_per_second"].median() if len(ok) else math.nan})
    data = pd.DataFrame(rows)
    table = [[r.optimizer, r.batch_size, f"{r.steps:g}" if math.isfinite(r.steps) else "not reached",
              f"{r.lr:g}", f"{r.throughput:.3g}" if math.isfinite(r.throughput) else "–"]
             for r in data.itertuples()]
    parts = ["### Batch size", "",
             "At each batch size, each optimizer's best configuration: *steps to target* is the lowest, over the "
             "other settings, median over seeds (a seed that missed counts as never); *best lr* is selected on the "
             "selection metric. Perfect scaling halves the steps when the batch doubles (Shallue et al. 2018) up "
             "to a critical batch size; the linear scaling rule doubles the learning rate with it (Goyal et al. "
             "2017); throughput is training samples per second.", "",
             tabulate(table, ["optimizer", "batch size", "steps to target", "best lr", "samples/s"],
                      tablefmt="github"), ""]
    png = _plot_batch_size(problem, data, folder)
    return [*parts, f"![batch size on {problem}]({png})", ""]


def _plot_batch_size(problem: str, data: pd.DataFrame, folder: Path) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for optimizer, rows in data.groupby("optimizer"):
        rows = rows.sort_values("batch_size")
        reached = rows[np.isfinite(rows["steps"])]
        (line,) = axes[0].plot(reached["batch_size"], reached["steps"], marker="o", label=optimizer)
        if len(reached):
            first = reached.iloc[0]
            axes[0].plot(rows["batch_size"], first["steps"] * first["batch_size"] / rows["batch_size"], ls=":",
                         color=line.get_color())
        lrs = rows.dropna(subset=["lr"])
        axes[1].plot(lrs["batch_size"], lrs["lr"], marker="o", color=line.get_color(), label=optimizer)
        if len(lrs):
            first = lrs.iloc[0]
            axes[1].plot(rows["batch_size"], first["lr"] * rows["batch_size"] / first["batch_size"], ls=":",
                         color=line.get_color())
        measured = rows.dropna(subset=["throughput"])
        axes[2].plot(measured["batch_size"], measured["throughput"], marker="o", color=line.get_color(),
                     label=optimizer)
    titles = [("steps to target (dotted: perfect scaling)", "steps"),
              ("best learning rate (dotted: linear scaling)", "learning rate"),
              ("throughput", "samples / second")]
    for ax, (title, ylabel) in zip(axes, titles, strict=True):
        ax.set(xlabel="batch size", ylabel=ylabel, title=title)
        if any(len(line.get_xdata()) for line in ax.get_lines()):
            ax.set(xscale="log", yscale="log")
        else:
            ax.text(0.5, 0.5, "no data: no configuration got there", ha="center", va="center",
                    transform=ax.transAxes)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{problem}: batch size")
    fig.tight_layout()
    name = f"{problem}_batch_size.png"
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return name


def _trajectory_section(problem: str, trials: pd.DataFrame, curves: pd.DataFrame, folder: Path,
                        catalog: Catalog | None) -> list[str]:
    """Each optimizer's path (best configuration, first seed) over the contours of a 2-D function."""
    if curves.empty or "point_x" not in curves:
        return []
    points = curves[curves["trial_id"].isin(trials["trial_id"])].dropna(subset=["point_x", "point_y"])
    if points.empty:
        return []
    paths = {}
    for _, config in best_configurations(trials).iterrows():
        first = rows_of(trials, config).sort_values("seed").iloc[0]
        path = points[points["trial_id"] == first["trial_id"]].sort_values("step")
        if len(path):
            paths[config["optimizer"]] = path[["point_x", "point_y"]].to_numpy()
    if not paths:
        return []
    built = _build_problem(problem, trials, catalog)
    minimisers = built.minimisers.cpu().numpy() if built is not None else np.empty((0, 2))
    starts = np.array([path[0] for path in paths.values()])
    anchors = np.vstack([starts, minimisers])
    low, high = anchors.min(0), anchors.max(0)
    span = np.maximum(high - low, 1.0)
    # show where the paths went, but not a diverged one's trip to infinity
    visited = np.vstack([path[np.isfinite(path).all(1)] for path in paths.values()])
    low = np.maximum(np.minimum(low, visited.min(0)), low - 2 * span) - 0.1 * span
    high = np.minimum(np.maximum(high, visited.max(0)), high + 2 * span) + 0.1 * span
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    if built is not None:
        gx, gy = np.meshgrid(np.linspace(low[0], high[0], 241), np.linspace(low[1], high[1], 241))
        with torch.no_grad():
            grid = built.f(torch.tensor(np.stack([gx, gy], -1), dtype=torch.float64)).numpy()
        ax.contour(gx, gy, np.log10(grid - grid.min() + 1e-3), levels=25, cmap="Greys", linewidths=0.6)
        ax.scatter(minimisers[:, 0], minimisers[:, 1], marker="*", s=160, color="gold", edgecolor="black",
                   zorder=5, label="minimum")
    for optimizer, path in paths.items():
        (line,) = ax.plot(path[:, 0], path[:, 1], marker=".", lw=1.2, label=optimizer)
        ax.scatter(path[-1:, 0], path[-1:, 1], marker="o", s=40, color=line.get_color(), zorder=4)
    ax.scatter(starts[:1, 0], starts[:1, 1], marker="s", s=50, color="black", zorder=4, label="start")
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    name = _save(fig, ax, folder, f"{problem}_trajectories.png", "x", "y",
                 f"{problem}: path of each best configuration (first seed)", log_y=False)
    return [f"![trajectories on {problem}]({name})", ""]


def _build_problem(problem: str, trials: pd.DataFrame, catalog: Catalog | None) -> Any:
    """The problem as the trials ran it (their stored options), or None without a catalog that knows it."""
    if catalog is None or problem not in catalog.problems:
        return None
    spec = catalog.problems[problem]
    first = trials.iloc[0]
    options = dict(spec.options)
    for column in trials.columns:
        if column.startswith("opt.") and pd.notna(first[column]):
            default = options.get(column[4:])
            value = first[column]
            options[column[4:]] = int(value) if isinstance(default, int) and not isinstance(default, bool) else value
    try:
        return spec.build(device="cpu", **options)
    except Exception:  # a report must not fail because a problem no longer builds
        return None


def _summary_section(trials: pd.DataFrame, folder: Path) -> list[str]:
    """Performance profiles over every problem with a target, and a ranking by them."""
    parts = ["## Summary across problems", ""]
    with_target = trials.groupby("problem")["steps_to_target"].apply(lambda s: s.notna().any())
    if trials["problem"].nunique() < 2 or trials["optimizer"].nunique() < 2:
        return [*parts, "Performance profiles need at least two problems and two optimizers; this suite has "
                f"{trials['problem'].nunique()} and {trials['optimizer'].nunique()}.", ""]
    costs = tuned_cost(trials, config_columns=_config_columns(trials))
    solved_any = int(with_target.sum())
    summary = profile_summary(costs)
    table = [[name, f"{row.wins:.0%}", f"{row.within_2x:.0%}", f"{row.solved:.0%}"]
             for name, row in summary.iterrows()]
    parts += ["Cost of an optimizer on a problem: steps to target at its best configuration (median over seeds; "
              "a seed that missed counts as never). The performance profile (Dolan & Moré 2002) of an optimizer "
              "is the fraction of problems it solves within a factor τ of the fastest optimizer on each; at τ = 1 "
              f"it counts wins. {len(costs)} problems, {solved_any} of which some trial solved.", "",
              tabulate(table, ["optimizer", "wins (τ = 1)", "within 2x (τ = 2)", "solved"], tablefmt="github"),
              ""]
    ratios = costs.div(costs.min(axis=1), axis=0).to_numpy().ravel()
    finite = ratios[np.isfinite(ratios)]
    if len(finite):
        top = max(2.0, float(finite.max()) * 1.2)
        taus = np.exp(np.linspace(0, math.log(top), 200))
        profile = performance_profile(costs, taus)
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name in summary.index:
            ax.step(profile.index, profile[name], where="post", label=name)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        png = _save(fig, ax, folder, "performance_profile.png", "τ (ratio to the fastest)",
                    "fraction of problems solved", "Performance profiles: steps to target", log_y=False)
        parts += [f"![performance profiles]({png})", ""]
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
        ids = rows_of(trials, config)["trial_id"]
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
    """Final training loss against learning rate, one colour per optimizer and one line style per batch size."""
    if "hp.lr" not in trials or trials["hp.lr"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    finite = trials.loc[trials["status"] == "ok", "final.train_loss"].dropna()
    ceiling = finite.max() * 2 if len(finite) else 1.0
    sizes = sorted(trials["batch_size"].dropna().unique()) if "batch_size" in trials else []
    styles = dict(zip(sizes, ["-", "--", ":", "-."] * (len(sizes) // 4 + 1), strict=False))
    colors = {}
    for (optimizer, batch_size), rows in trials.groupby(["optimizer", trials.get("batch_size", pd.Series(
            0, index=trials.index)).fillna(0)]):
        ok = rows[rows["status"] == "ok"]
        # Best over the other hyperparameters, median over seeds: the loss this lr can reach.
        others = [c for c in _config_columns(rows) if c not in ("hp.lr", "batch_size")]
        per_config = ok.groupby(["hp.lr", *others], dropna=False)["final.train_loss"].median()
        curve = per_config.groupby(level=0).min()
        label = optimizer if len(sizes) < 2 else f"{optimizer}, batch {int(batch_size)}"
        (line,) = ax.plot(curve.index, curve.values, marker="o", label=label, color=colors.get(optimizer),
                          ls=styles.get(batch_size, "-"))
        colors.setdefault(optimizer, line.get_color())
        failed = [lr for lr in rows.loc[rows["status"] != "ok", "hp.lr"].unique() if lr not in curve.index]
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
