"""``optbench report --compare A B``: two stored result sets side by side, changes beyond seed noise flagged.

The typical use is an optimizer before and after a change: run the same suite into two
results files and compare. For every problem and optimizer present in both, each side's
best configuration is selected on its own (as in a report), and the per-seed selection
metric of the two is compared with Welch's t-test.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench_core.analysis import leaderboard
from bench_core.configuration import selection_metric, with_identity
from bench_core.report import value_cell
from bench_core.stats import distinguishable
from bench_core.store import Store

__all__ = ["compare_results", "write_comparison"]


def compare_results(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per (problem variant, optimizer) in both trial frames: each side's selected result and the verdict.

    A problem variant (problem, options, budget, evaluations, device) is matched across the
    two files by its identity, so a change of budget or option is never compared as if it
    were the same problem. ``verdict`` is ``better`` or ``worse`` (B against A, lower
    selection metric is better) when the difference is beyond seed noise, ``same`` when it
    is not, and ``unknown`` with fewer than two finished seeds on a side.
    """
    a, b = with_identity(a), with_identity(b)
    rows = []
    labels = dict(zip(a["variant_id"], a["variant"], strict=True))
    for vid in sorted(set(a["variant_id"]) & set(b["variant_id"]), key=lambda v: labels[v]):
        side_a, side_b = a[a["variant_id"] == vid], b[b["variant_id"] == vid]
        metric = selection_metric(side_a)
        entries_a = {e.optimizer: e for e in leaderboard(side_a)}
        entries_b = {e.optimizer: e for e in leaderboard(side_b)}
        for optimizer in sorted(set(entries_a) & set(entries_b)):
            values = {"a": entries_a[optimizer].selected, "b": entries_b[optimizer].selected}
            steps = {"a": entries_a[optimizer].median_reached, "b": entries_b[optimizer].median_reached}
            different = distinguishable(values["a"], values["b"])
            if different is None:
                verdict = "unknown"
            elif not different:
                verdict = "same"
            else:
                verdict = "better" if values["b"].mean() < values["a"].mean() else "worse"
            rows.append({"problem": labels[vid], "optimizer": optimizer, "metric": metric.removeprefix("final."),
                         "a": value_cell(values["a"]), "b": value_cell(values["b"]),
                         "a_mean": values["a"].mean(), "b_mean": values["b"].mean(),
                         "steps_a": steps["a"], "steps_b": steps["b"], "verdict": verdict})
    return pd.DataFrame(rows, columns=["problem", "optimizer", "metric", "a", "b", "a_mean", "b_mean", "steps_a",
                                       "steps_b", "verdict"])


def write_comparison(path_a: Path, path_b: Path, out_dir: Path) -> Path:
    """Write ``out_dir/compare/README.md`` comparing every suite of two results files; return its path."""
    with Store(path_a, create=False) as store_a, Store(path_b, create=False) as store_b:
        table = compare_results(store_a.trials(), store_b.trials())
    folder = Path(out_dir) / "compare"
    folder.mkdir(parents=True, exist_ok=True)
    marks = {"better": "**better**", "worse": "**worse**", "same": "no significant change",
             "unknown": "too few seeds to judge"}
    lines = [f"# optbench comparison: A = `{path_a}`, B = `{path_b}`", ""]
    if table.empty:
        lines += ["The two result sets share no problem and optimizer: nothing to compare.", ""]
    else:
        lines += ["Per problem and optimizer, each side's best configuration (selected on validation, as in a "
                  "report; a problem's variants, such as another budget or option, are compared only with "
                  "themselves); values are mean ± std over seeds of the selection metric, lower is better. B is "
                  "flagged *better* or *worse* when Welch's t-test over seeds gives p < 0.05.", ""]
        rows = [[r.problem, r.optimizer, r.metric, r.a, r.b, _steps(r.steps_a), _steps(r.steps_b), marks[r.verdict]]
                for r in table.itertuples()]
        lines += [tabulate(rows, ["problem", "optimizer", "metric", "A", "B", "steps to target A",
                                  "steps to target B", "B vs A"], tablefmt="github"), ""]
        counts = table["verdict"].value_counts()
        lines += [", ".join(f"{counts.get(v, 0)} {marks[v].strip('*')}" for v in marks) + ".", ""]
    out = folder / "README.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _steps(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:g}"
