"""Smith's learning-rate range test: one short run with the learning rate growing exponentially.

The loss first barely moves (lr too small), then falls fastest, then turns and blows up
(lr too large). Where it falls fastest is a good learning rate to start a sweep from; where
it turns is the edge of stability. It costs one run per optimizer instead of a grid.

The test is an ordinary suite whose trials use the ``lr_range`` schedule (an exponential
ramp from ``start`` to 1 times the base learning rate, which is the top of the range) and
evaluate at every step, so it is stored, resumed and reported like any sweep.
``optbench lr-range`` builds that suite from flags; a suite file with
``schedule = "lr_range"`` is the same test. Unlike Smith's version, which smooths the noisy
mini-batch loss, each point here is the loss on the whole training set.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench_core.trial import Status

if TYPE_CHECKING:
    from bench_core.report import ReportContext

SCHEDULE = "lr_range"
#: The loss counts as blown up past this multiple of its lowest value (Smith's stopping rule).
BLOWUP_FACTOR = 4.0
#: Span of the exponential moving average that smooths the curve before slopes are taken.
SMOOTHING_SPAN = 5


def range_settings(problems: list[str], optimizers: list[str] | None, low: float, high: float, steps: int,
                   name: str = "lr-range") -> dict[str, Any]:
    """Suite settings for a range test from ``low`` to ``high`` over ``steps`` steps."""
    if not 0 < low < high:
        raise ValueError(f"the range needs 0 < low < high, got [{low:g}, {high:g}]")
    settings: dict[str, Any] = {
        "name": name, "problems": problems, "lr": high, "schedule": SCHEDULE, "steps": steps, "evals": steps,
        "schedule_options": {SCHEDULE: {"start": low / high}},
        "description": f"Learning-rate range test: lr from {low:g} to {high:g} over {steps} steps.",
    }
    if optimizers:
        settings["optimizers"] = optimizers
    return settings


def analyse(curve: pd.DataFrame) -> dict[str, float]:
    """Read one range-test curve (columns ``lr`` and ``train_loss``, in step order).

    :returns: ``steepest``, the lr where the smoothed loss falls fastest per decade of lr
        (the suggestion); ``lowest``, the lr at the lowest smoothed loss; ``blowup``, the
        first lr past the lowest loss where the loss exceeds :data:`BLOWUP_FACTOR` times it
        (NaN if the range never got there).
    """
    points = curve[curve["step"] > 0].sort_values("step")
    all_lr = points["lr"].to_numpy(float)
    all_loss = points["train_loss"].to_numpy(float)
    finite = np.isfinite(all_loss)
    cut = len(all_loss) if finite.all() else int(np.argmin(finite))  # the first non-finite loss ends the curve
    lr, loss = all_lr[:cut], all_loss[:cut]
    if len(loss) < 3:
        return {"steepest": math.nan, "lowest": math.nan, "blowup": all_lr[0] if len(all_lr) else math.nan}
    smooth = pd.Series(loss).ewm(span=SMOOTHING_SPAN).mean().to_numpy()
    best = int(np.argmin(smooth))
    slopes = np.gradient(smooth, np.log10(lr))
    steepest = int(np.argmin(slopes[:best + 1])) if best > 0 else 0
    above = np.nonzero(loss[best:] > BLOWUP_FACTOR * smooth[best])[0]
    blowup = math.nan  # the range never got there
    if len(above):
        blowup = lr[best + above[0]]
    elif cut < len(all_lr):
        blowup = all_lr[cut]
    return {"steepest": float(lr[steepest]), "lowest": float(lr[best]), "blowup": float(blowup)}


def is_range_test(trials: pd.DataFrame) -> bool:
    """Whether a suite's trials form a range test (every one uses the ``lr_range`` schedule)."""
    return len(trials) > 0 and bool((trials["schedule"] == SCHEDULE).all())


def range_test_sections(report: ReportContext) -> list[str]:
    """The range test's table of suggested learning rates and a loss-vs-lr figure per problem (Markdown lines)."""
    trials, curves = report.trials, report.curves
    curve_of = {trial_id: curve for trial_id, curve in curves.groupby("trial_id")} if len(curves) else {}
    found = {trial_id: analyse(curve) for trial_id, curve in curve_of.items()}
    nothing = {"steepest": math.nan, "lowest": math.nan, "blowup": math.nan}  # a trial that stored no curve
    rows = []
    for _, trial in trials.sort_values(["problem", "optimizer", "batch_size", "seed"]).iterrows():
        read = found.get(trial["trial_id"], nothing)
        status = trial["status"] if trial["status"] != Status.ERROR else "⚠ error"
        rows.append([trial["problem"], trial["optimizer"], _batch(trial["batch_size"]), trial["seed"], status,
                     *(f"{read[k]:.3g}" for k in ("steepest", "lowest", "blowup"))])
    parts = ["Each run raises the learning rate exponentially, one step at a time, and records the training "
             "loss. **Steepest** is where the loss falls fastest per decade of learning rate: a good value to "
             f"start from, or the centre of a sweep. **Lowest** is where the loss bottoms out, and **blow-up** "
             f"where it climbs past {BLOWUP_FACTOR:g}x its lowest value: learning rates beyond it diverge. "
             "(Smith, 2017, \"Cyclical Learning Rates for Training Neural Networks\".) A run that blows up is "
             "stored as diverged: that is how a range test ends, and its curve up to there is read as usual.", "",
             tabulate(rows, ["problem", "optimizer", "batch", "seed", "status", "steepest lr", "lowest-loss lr",
                             "blow-up lr"], tablefmt="github"), ""]
    for problem, rows_of_problem in trials.groupby("problem", sort=True):
        figure = _plot(report, problem, rows_of_problem, curve_of, found)
        parts += [f"## {problem}", "", f"![loss against learning rate on {problem}]({figure})", ""]
    return parts


def _batch(value: Any) -> str:
    return "full" if pd.isna(value) else str(int(value))


def _plot(report: ReportContext, problem: str, trials: pd.DataFrame, curve_of: dict[str, pd.DataFrame],
          found: dict[str, dict[str, float]]) -> str:
    figure = report.figure()
    axes = figure.subplots()
    sizes = sorted(trials["batch_size"].dropna().unique())
    line_styles = dict(zip(sizes, ["-", "--", ":", "-."] * (len(sizes) // 4 + 1), strict=False))
    for (optimizer, batch_size), rows in trials.groupby(["optimizer", "batch_size"], dropna=False, sort=True):
        label = f"{optimizer}" + ("" if pd.isna(batch_size) else f" (batch {int(batch_size)})")
        style = report.style(optimizer)
        for k, trial_id in enumerate(t for t in rows["trial_id"] if t in curve_of):
            curve = curve_of[trial_id]
            curve = curve[curve["step"] > 0]
            axes.plot(curve["lr"], curve["train_loss"], label=label if k == 0 else None,
                      **style.line(lw=1.2, linestyle=line_styles.get(batch_size, "-"),
                                   markevery=max(1, len(curve) // 8), markersize=4))
            if math.isfinite(found[trial_id]["steepest"]):
                axes.axvline(found[trial_id]["steepest"], color=style.color, ls=":", lw=0.8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    axes.set_title(f"{problem}: range test (dotted: steepest descent)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return report.save(figure, f"lr_range_{problem}.png")
