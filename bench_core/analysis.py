"""The numbers behind a report's tables and findings, computed once per variant of a problem.

Pure functions of the trial frame (with the identity columns of
:func:`bench_core.configuration.with_identity`), so a finding sentence and the table it
cites read the same numbers, and each can be tested against a hand computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from bench_core.configuration import best_configurations, selection_metric, setting_columns, tuned_cost
from bench_core.trial import Status

__all__ = ["Entry", "batch_scaling", "critical_batch_size", "evaluations_to_target", "gradient_evaluations",
           "leaderboard", "more_than_one_evaluation_per_step", "setting_effects", "speed_label", "target_costs",
           "varied_settings"]


def gradient_evaluations(trials: pd.DataFrame) -> pd.Series:
    """Forward/backward passes each trial's training made; one per step where it was not recorded.

    Trials stored before schema 3 (and frames without the column) have no count: every
    optimizer then was stepped without a closure, so one evaluation per step is exact for them.
    """
    steps = trials["steps"].astype(float)
    if "gradient_evaluations" not in trials:
        return steps
    return trials["gradient_evaluations"].astype(float).fillna(steps)


def evaluations_to_target(trials: pd.DataFrame) -> pd.Series:
    """Gradient evaluations each trial made until it reached the target (NaN: never); steps where unrecorded."""
    steps = trials["steps_to_target"].astype(float)
    if "gradient_evaluations_to_target" not in trials:
        return steps
    return trials["gradient_evaluations_to_target"].astype(float).fillna(steps)


def target_costs(trials: pd.DataFrame) -> pd.Series:
    """What comparing optimizers' speed across a report counts: each variant x optimizer at its best configuration.

    Gradient evaluations to target, which equal steps to target for every optimizer that
    evaluates the gradient once a step; an optimizer that evaluates it more often (L-BFGS)
    pays for each evaluation, so a cheap-looking step count does not win it a race.
    """
    return tuned_cost(trials.assign(_evaluations_to_target=evaluations_to_target(trials)),
                      cost="_evaluations_to_target")


def speed_label(trials: pd.DataFrame) -> str:
    """How reports name the speed :func:`target_costs` measures: steps, unless some optimizer's steps differ."""
    return "gradient evaluations to target" if more_than_one_evaluation_per_step(trials) else "steps to target"


def more_than_one_evaluation_per_step(trials: pd.DataFrame) -> bool:
    """Whether some trial evaluated the gradient more often than it stepped (a closure optimizer such as L-BFGS).

    Only then do steps understate some optimizer's cost, and only then do reports show the evaluations.
    """
    return bool((gradient_evaluations(trials) > trials["steps"].astype(float)).any())


@dataclass
class Entry:
    """One optimizer's best configuration on one variant, and how its trials went."""

    optimizer: str
    config_id: str
    #: Mean selection score over seeds (``inf`` when some seed failed): what the ranking uses.
    score: float
    setting: pd.Series
    #: The chosen configuration's trials, every seed.
    runs: pd.DataFrame
    #: Every trial of the optimizer on the variant (for failure counts).
    all_runs: pd.DataFrame
    #: Per-seed selection metric of the chosen configuration's finished (``ok``) seeds.
    selected: pd.Series

    @cached_property
    def ok(self) -> pd.DataFrame:
        """The chosen configuration's finished (``ok``) seeds."""
        return self.runs[self.runs["status"] == Status.OK]

    def count(self, status: str) -> int:
        """Trials of the optimizer on this variant (all configurations) with ``status``."""
        return int((self.all_runs["status"] == status).sum())

    @property
    def reached(self) -> int:
        """Finished seeds that reached the target."""
        return int(self.ok["steps_to_target"].notna().sum())

    @property
    def evaluations_per_step(self) -> float:
        """Median over the finished seeds of gradient evaluations per step: what a step costs; NaN for none."""
        ok = self.ok[self.ok["steps"] > 0]
        return float((gradient_evaluations(ok) / ok["steps"]).median()) if len(ok) else math.nan

    @property
    def median_evaluations_to_target(self) -> float:
        """Median gradient evaluations to target over the seeds that reached it; NaN when none did."""
        reached = evaluations_to_target(self.ok).dropna()
        return float(reached.median()) if len(reached) else math.nan

    @property
    def median_reached(self) -> float:
        """Median steps to target over the seeds that reached it; NaN when none did."""
        reached = self.ok["steps_to_target"].dropna()
        return float(reached.median()) if len(reached) else math.nan


def leaderboard(trials: pd.DataFrame) -> list[Entry]:
    """Each optimizer's best configuration on one variant, best (lowest mean selection score) first."""
    metric = selection_metric(trials)
    entries = []
    for _, best in best_configurations(trials).iterrows():
        runs = trials[trials["config_id"] == best["config_id"]]
        ok = runs[runs["status"] == Status.OK]
        selected = ok[metric].astype(float) if metric in ok else pd.Series(dtype=float)
        entries.append(Entry(best["optimizer"], best["config_id"], float(best["score"]), best, runs,
                             trials[trials["optimizer"] == best["optimizer"]], selected.dropna()))
    return sorted(entries, key=lambda e: (e.score, e.selected.mean() if len(e.selected) else math.inf, e.optimizer))


def batch_scaling(trials: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer and batch size on one variant: steps to target at the best setting, best lr, throughput.

    ``steps`` is the lowest, over the configurations at that batch size, median over seeds
    (a missed seed counts as never); ``lr`` the learning rate of the configuration selected
    on the selection metric there; ``throughput`` the median training samples per second.
    """
    rows = []
    for (optimizer, batch_size), group in trials.dropna(subset=["batch_size"]).groupby(["optimizer", "batch_size"]):
        steps = float(tuned_cost(group).iloc[0])
        chosen = best_configurations(group).iloc[0]
        ok = group[group["status"] == Status.OK]
        rows.append({"optimizer": optimizer, "batch_size": int(batch_size), "steps": steps,
                     "lr": chosen.get("hp.lr", math.nan), "score": float(chosen["score"]),
                     "throughput": float(ok["samples_per_second"].median()) if len(ok) else math.nan})
    return pd.DataFrame(rows, columns=["optimizer", "batch_size", "steps", "lr", "score", "throughput"])


def critical_batch_size(rows: pd.DataFrame, efficiency: float = 0.5) -> int | None:
    """Where more batch stops paying, for one optimizer's :func:`batch_scaling` rows.

    Going from batch ``b`` to ``b' > b``, perfect scaling divides the steps to target by
    ``b'/b`` (Shallue et al. 2018). The critical batch size is the largest batch size
    reached through steps whose speed-up is at least ``efficiency`` of perfect; ``None`` when
    fewer than two batch sizes reached the target.
    """
    reached = rows[rows["steps"].map(math.isfinite)].sort_values("batch_size")
    if len(reached) < 2:
        return None
    critical = int(reached.iloc[0]["batch_size"])
    for (_, small), (_, large) in zip(reached.iloc[:-1].iterrows(), reached.iloc[1:].iterrows(), strict=True):
        speedup = small["steps"] / large["steps"]
        if speedup < efficiency * large["batch_size"] / small["batch_size"]:
            break
        critical = int(large["batch_size"])
    return critical


def setting_effects(trials: pd.DataFrame, column: str) -> pd.DataFrame:
    """For each optimizer and value of ``column``: its best configuration with that value on one variant.

    Judging a value at its own best over every other setting (the learning rate included)
    is what makes "momentum 0.9 beats 0.5" a statement about momentum, not about a learning
    rate that suits one of them. Rows: ``optimizer, value, config_id, score, steps, lr``
    and ``selected``, the per-seed selection metric of the finished seeds.
    """
    metric = selection_metric(trials)
    rows = []
    for optimizer, of_optimizer in trials.groupby("optimizer"):
        if of_optimizer[column].nunique(dropna=False) < 2:
            continue
        for value, group in of_optimizer.groupby(column, dropna=False):
            chosen = best_configurations(group).iloc[0]
            runs = group[group["config_id"] == chosen["config_id"]]
            ok = runs[runs["status"] == Status.OK]
            rows.append({"optimizer": optimizer, "value": value, "config_id": chosen["config_id"],
                         "score": float(chosen["score"]), "steps": float(tuned_cost(group).iloc[0]),
                         "lr": chosen.get("hp.lr", math.nan), "selected": ok[metric].dropna().astype(float)})
    return pd.DataFrame(rows, columns=["optimizer", "value", "config_id", "score", "steps", "lr", "selected"])


def varied_settings(trials: pd.DataFrame) -> list[str]:
    """Setting columns besides lr and batch size that some optimizer ran with more than one value."""
    return [c for c in setting_columns(trials) if c not in ("hp.lr", "batch_size")
            and trials.groupby("optimizer")[c].nunique(dropna=False).max() > 1]
