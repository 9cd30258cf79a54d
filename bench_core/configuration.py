"""What "one configuration" is, and how configurations are scored and selected.

A **configuration** is a trial's full configuration minus its seed: the problem and its
options, the optimizer and every hyperparameter, the batch size, the schedule and its
options, the budget, the evaluation count and the device. Trials that differ only in their
seed are samples of the same configuration; nothing else is ever averaged together.

A **variant** is what every optimizer of a comparison must share: the problem with its
options, the budget, the evaluation count, the device and whether trials stop at the
target. A suite that varies a problem option or the budget has several variants of one
problem; reports show each on its own and never pool them.

Reports, ``report --compare``, adaptive searches and batch-size transfer all select
through this module, so "the best configuration" means the same thing everywhere: the
lowest mean selection score over seeds, where the score is the final validation loss (the
training loss on problems without a validation split) and a diverged or errored seed
scores infinity, so a configuration that failed on any seed loses to one that finished on
all of them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from bench_core.trial import Status, TrialConfig

__all__ = ["SELECTION_METRICS", "best_configurations", "best_setting", "configuration_id", "selection_metric",
           "setting_columns", "trial_score", "trial_scores", "tuned_cost", "variant_id", "variant_options",
           "with_identity"]

#: The metrics configurations are selected on, in order of preference.
SELECTION_METRICS = ("valid_loss", "train_loss")
#: Keys of a trial's canonical configuration that a variant consists of.
VARIANT_KEYS = ("problem", "problem_options", "budget", "evals", "device", "stop_at_target")
#: Frame columns of a configuration that may differ between the optimizers' settings within a variant.
SETTING_COLUMNS = ("batch_size", "schedule")


def _canonical(config: TrialConfig | Mapping[str, Any] | str) -> dict[str, Any]:
    if isinstance(config, TrialConfig):
        return config.canonical()
    if isinstance(config, str):
        return json.loads(config)
    return dict(config)


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def configuration_id(config: TrialConfig | Mapping[str, Any] | str) -> str:
    """A stable hash of a trial's configuration without its seed: equal for every seed of it."""
    data = _canonical(config)
    data.pop("seed", None)
    return _digest(data)


def variant_id(config: TrialConfig | Mapping[str, Any] | str) -> str:
    """A stable hash of the problem variant a trial ran on (see the module docstring)."""
    data = _canonical(config)
    return _digest({key: data.get(key) for key in VARIANT_KEYS})


def variant_options(config: TrialConfig | Mapping[str, Any] | str) -> dict[str, Any]:
    """The variant's defining values as ``name: value``: problem options, budget, evals, device, stop at target."""
    data = _canonical(config)
    budget = data.get("budget") or {}
    out = {f"{key}": value for key, value in sorted((data.get("problem_options") or {}).items())}
    if budget:
        out[str(budget["unit"])] = budget["amount"]
    out["evals"] = data.get("evals")
    out["device"] = data.get("device")
    out["stop_at_target"] = bool(data.get("stop_at_target", False))
    return out


def with_identity(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` (as ``Store.trials`` returns them) with ``config_id``, ``variant_id`` and ``variant`` columns.

    ``variant`` is a readable label: the problem's name where the suite ran one variant of
    it, else the name followed by the values that tell its variants apart, such as
    ``quadratic (noise=0.5)`` or ``digits_mlp (epochs=5)``.
    """
    trials = trials.copy()
    if "config" in trials and len(trials):
        canonicals = [json.loads(text) for text in trials["config"]]
    else:
        canonicals = [_config_from_columns(row) for _, row in trials.iterrows()]
    trials["config_id"] = [configuration_id(c) for c in canonicals]
    trials["variant_id"] = [variant_id(c) for c in canonicals]
    options = {vid: variant_options(c) for vid, c in zip(trials["variant_id"], canonicals, strict=True)}
    labels: dict[str, str] = {}
    for problem, ids in trials.groupby("problem", sort=True)["variant_id"]:
        unique = list(dict.fromkeys(ids))
        if len(unique) == 1:
            labels[unique[0]] = str(problem)
            continue
        every_key = dict.fromkeys(k for v in unique for k in options[v])
        keys = [k for k in every_key if len({_text(options[v].get(k)) for v in unique}) > 1]
        shown = {vid: [f"{k}={_text(options[vid][k])}" for k in keys if options[vid].get(k) is not None]
                 for vid in unique}
        for vid, parts in shown.items():  # values that print alike (1 and 1.0) must not merge two variants
            if list(shown.values()).count(parts) > 1:
                parts = [*parts, f"variant {vid[:6]}"]
            labels[vid] = f"{problem} ({', '.join(parts)})"
    trials["variant"] = trials["variant_id"].map(labels) if len(trials) else pd.Series(dtype=object)
    return trials


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _config_from_columns(row: pd.Series) -> dict[str, Any]:
    """A canonical-like config from frame columns, for frames built without the ``config`` column."""
    def pick(prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: row[k] for k in row.index if k.startswith(prefix) and not _missing(row[k])}
    data = {"problem": row.get("problem"), "optimizer": row.get("optimizer"), "hyperparams": pick("hp."),
            "schedule_options": pick("sched."), "problem_options": pick("opt."),
            "batch_size": None if _missing(row.get("batch_size")) else row.get("batch_size"),
            "schedule": row.get("schedule", "constant"), "device": row.get("device", "cpu"),
            "evals": row.get("evals"), "seed": row.get("seed")}
    if "budget_unit" in row:
        data["budget"] = {"unit": row["budget_unit"], "amount": row["budget_amount"]}
    return json.loads(json.dumps(data, default=_plain))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def setting_columns(trials: pd.DataFrame) -> list[str]:
    """Frame columns of an optimizer's setting within a variant: ``hp.*``, batch size, schedule, ``sched.*``."""
    hps = [c for c in trials.columns if c.startswith("hp.")]
    scheduled = [c for c in trials.columns if c.startswith("sched.")]
    return hps + [c for c in SETTING_COLUMNS if c in trials.columns] + scheduled


def selection_metric(trials: pd.DataFrame) -> str:
    """The column configurations are selected on: ``final.valid_loss``, else ``final.train_loss``."""
    for name in SELECTION_METRICS[:-1]:
        column = f"final.{name}"
        if column in trials and trials[column].notna().any():
            return column
    return f"final.{SELECTION_METRICS[-1]}"


def trial_scores(trials: pd.DataFrame) -> pd.Series:
    """Each trial's selection score: the selection metric if ``ok`` and finite, else ``inf``."""
    metric = selection_metric(trials)
    values = trials[metric] if metric in trials else pd.Series(math.inf, index=trials.index)
    values = values.where(trials["status"] == Status.OK).astype(float)
    return values.where(values.abs() < math.inf).fillna(math.inf)


def trial_score(status: str, final: Mapping[str, Any]) -> float:
    """One trial's selection score from its status and final metrics (what adaptive searches minimise)."""
    if status != Status.OK:
        return math.inf
    for name in SELECTION_METRICS:
        if final.get(name) is not None:
            value = float(final[name])
            return value if math.isfinite(value) else math.inf
    return math.inf


def best_configurations(trials: pd.DataFrame) -> pd.DataFrame:
    """Per variant and optimizer, the configuration with the lowest mean score over seeds.

    ``trials`` must carry the identity columns (:func:`with_identity`). Returns one row per
    (variant, optimizer): ``variant, optimizer, config_id, score`` (the mean score, ``inf``
    when some seed failed) and the setting columns of the chosen configuration. Ties go to
    the configuration stored first.
    """
    if trials.empty:
        return pd.DataFrame(columns=["variant", "optimizer", "config_id", "score"])
    scored = trials.assign(_score=trial_scores(trials))
    means = scored.groupby(["variant", "optimizer", "config_id"], sort=False)["_score"].mean().reset_index()
    chosen = means.loc[means.groupby(["variant", "optimizer"], sort=True)["_score"].idxmin()]
    firsts = trials.drop_duplicates("config_id").set_index("config_id")[setting_columns(trials)]
    chosen = chosen.rename(columns={"_score": "score"}).join(firsts, on="config_id")
    return chosen.sort_values(["variant", "optimizer"]).reset_index(drop=True)


def tuned_cost(trials: pd.DataFrame, cost: str = "steps_to_target", by: Sequence[str] = ("variant", "optimizer"),
               ) -> pd.Series:
    """The cost of each group (default: variant and optimizer) at its best configuration.

    For every configuration, the median over seeds of ``cost``, where a seed that failed
    (did not reach the target, diverged, errored) counts as infinite; then the minimum over
    the group's configurations. ``inf`` means no configuration reached the target on most seeds.
    """
    values = trials[cost].where(trials["status"] == Status.OK).astype(float).fillna(math.inf)
    medians = trials.assign(_cost=values).groupby([*by, "config_id"], dropna=False)["_cost"].median()
    return medians.groupby(level=list(range(len(by)))).min()


def best_setting(configs: Sequence[TrialConfig], scores: Sequence[float]) -> TrialConfig | None:
    """A trial of the configuration with the lowest mean score over seeds; ``None`` if every one failed.

    The selection rule of :func:`best_configurations`, for trials not stored yet as a frame
    (batch-size transfer picks its setting with it). Ties go to the configuration seen first.
    """
    totals: dict[str, list[float]] = {}
    first: dict[str, TrialConfig] = {}
    for config, value in zip(configs, scores, strict=True):
        key = configuration_id(config)
        totals.setdefault(key, []).append(value)
        first.setdefault(key, config)
    if not totals:
        return None
    means = {key: sum(v) / len(v) for key, v in totals.items()}
    key = min(means, key=lambda k: means[k])
    return first[key] if math.isfinite(means[key]) else None
