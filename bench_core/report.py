"""Markdown reports from stored results alone: ``reports/<suite>/README.md`` with PNG figures.

A report is a title, the suite's description and a list of sections. Every section, the
built-in ones included, is an implementation of the ``optbench_report_section`` hook called
through pluggy (see :mod:`bench_core.report_sections`), so ``tryfirst``/``trylast`` order a
plugin's section among them, and a section that raises becomes a one-line note while the
rest of the report is still written.

Sections receive a :class:`ReportContext`: the suite's trials with their configuration
identity (:mod:`bench_core.configuration`), the curves, one plotting style per optimizer
and the helpers every section shares (cells that show seeds honestly, intervals inside
each metric's range, figures drawn through matplotlib's object-oriented API, never a
global backend switch).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from bench_core.configuration import with_identity
from bench_core.errors import UserError
from bench_core.specs import default_metric_range
from bench_core.stats import identical, mean_interval
from bench_core.store import Store, replacing
from bench_core.styles import Style, optimizer_styles, style_at

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bench_core.catalog import Catalog

T = TypeVar("T")

__all__ = ["ReportContext", "anchor", "heading", "interval_cell", "mixed_code_warnings", "number", "seeds_cell", "slug",
           "value_cell", "write_report"]


@dataclass
class ReportContext:
    """What every report section sees (the ``report`` argument of ``optbench_report_section``)."""

    suite: str
    #: One row per trial (``Store.trials``) plus ``config_id``, ``variant_id`` and ``variant``.
    trials: pd.DataFrame
    #: Learning curves, one row per evaluation (``Store.curves``).
    curves: pd.DataFrame
    #: The suite's runs (``Store.runs``): settings and environment.
    runs: pd.DataFrame
    folder: Path
    catalog: Catalog | None = None
    #: One style per optimizer of the suite, the same in every figure.
    styles: dict[str, Style] = field(default_factory=dict)
    #: Whether the suite is a learning-rate range test (sweep sections then stay out).
    range_test: bool = False
    _built: dict[str, Any] = field(default_factory=dict, repr=False)
    _by_variant: dict[str, pd.DataFrame] | None = field(default=None, repr=False)
    _analysed: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    @property
    def sweep(self) -> bool:
        """Whether there are sweep results to report (trials, and not a range test): what most sections need."""
        return not self.range_test and not self.trials.empty

    def variants(self) -> list[tuple[str, pd.DataFrame]]:
        """``(label, trials)`` per problem variant, sorted by label: the unit every comparison is made within."""
        if self._by_variant is None:
            self._by_variant = {} if self.trials.empty else {
                str(label): rows for label, rows in self.trials.groupby("variant", sort=True)}
        return list(self._by_variant.items())

    def analysed(self, function: Callable[..., T], variant: str | None, *args: Any) -> T:
        """``function(trials, *args)`` on one variant's trials (every trial for ``None``), once per report.

        The leaderboards, batch-size tables and setting effects that several sections and the
        findings read are computed on first use and shared, so a finding and the table it cites
        stand on the very same numbers. Treat the answer as read-only.
        """
        key = (function.__module__, function.__qualname__, variant, args)
        if key not in self._analysed:
            trials = self.trials if variant is None else dict(self.variants())[variant]
            self._analysed[key] = function(trials, *args)
        return self._analysed[key]

    def style(self, optimizer: str) -> Style:
        """The optimizer's style; a name outside the suite gets the next free one, leaving the others as they are."""
        if optimizer not in self.styles:
            self.styles[optimizer] = style_at(len(self.styles))
        return self.styles[optimizer]

    def figure(self, width: float = 7.0, height: float = 4.2, **kwargs: Any) -> Figure:
        """A new matplotlib ``Figure`` (object-oriented API: the user's pyplot backend is left alone)."""
        from matplotlib.figure import Figure

        return Figure(figsize=(width, height), **kwargs)

    def save(self, figure: Figure, name: str, **kwargs: Any) -> str:
        """Save ``figure`` as ``name`` in the report folder; return the name to link in Markdown.

        :raises ValueError: for a name that is not a plain file name inside the report folder
            (``../x.png``, ``/tmp/x.png``): a figure never lands outside ``--report-dir``.
        """
        target = (self.folder / name).resolve()
        if target.parent != self.folder.resolve() or Path(name).name != name:
            raise ValueError(f"figure name {name!r} is not a file name inside the report folder")
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": True}):  # ticks drawn now: mathtext, as matplotlib writes them
            _ticks_in_mathtext(figure)
            figure.savefig(target, dpi=110, **kwargs)
        return name

    def metric_range(self, trials: pd.DataFrame, metric: str) -> tuple[float, float]:
        """The range a metric can take, as the runner recorded it for these trials, else by its name."""
        name = metric.removeprefix("final.").removeprefix("best.")
        if "metric_ranges" in trials:
            for ranges in trials["metric_ranges"]:
                if isinstance(ranges, dict) and name in ranges:
                    low, high = ranges[name]
                    return float(low), float(high)
        return default_metric_range(name)

    def initial_losses(self) -> pd.Series:
        """Each trial's training loss at step 0, by trial id (for the "ended above its start" mark)."""
        if self.curves.empty or "train_loss" not in self.curves:
            return pd.Series(dtype=float)
        first = self.curves.sort_values("step").drop_duplicates("trial_id")
        return first.set_index("trial_id")["train_loss"]

    def build_problem(self, trials: pd.DataFrame) -> Any:
        """The problem as these trials ran it (their stored options), or ``None`` if the catalog cannot build it."""
        if self.catalog is None or trials.empty:
            return None
        first = trials.iloc[0]
        key = str(first["variant_id"])
        if key not in self._built:
            self._built[key] = None
            spec = self.catalog.problems.get(first["problem"])
            if spec is not None:
                options = json.loads(first["config"]).get("problem_options", {}) if "config" in first else {}
                try:
                    self._built[key] = spec.build(device="cpu", **(dict(spec.options) | options))
                except Exception:  # a report must not fail because a problem no longer builds
                    self._built[key] = None
        return self._built[key]


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def heading(title: str, variant: str) -> str:
    """A section's sub-heading for one problem variant; unique in the report, so links to it are stable."""
    return f"### {title}: {variant}"


def anchor(title: str, variant: str) -> str:
    """The link target of :func:`heading` (``#...``), for findings that cite a table."""
    return "#" + slug(f"{title}: {variant}")


def value_cell(values: pd.Series, digits: int = 4) -> str:
    """A metric over seeds: ``mean ± std``, the value alone when the seeds agree or there is one, ``–`` for none."""
    values = pd.Series(values, dtype=float).dropna()
    if values.empty:
        return "–"
    if len(values) == 1 or identical(values):
        return f"{values.mean():.{digits}g}"
    return f"{values.mean():.{digits}g} ± {values.std(ddof=1):.2g}"


def seeds_cell(values: pd.Series, runs: int) -> str:
    """How many seeds a cell stands on: ``3/3``, ``3/3, identical``, ``1/2``."""
    values = pd.Series(values, dtype=float).dropna()
    text = f"{len(values)}/{runs}"
    return f"{text}, identical" if identical(values) else text


def interval_cell(values: pd.Series, bounds: tuple[float, float], confidence: float = 0.95) -> str:
    """The confidence interval of the mean over seeds, inside ``bounds``; says why when there is none."""
    values = pd.Series(values, dtype=float).dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return "– (one seed)"
    if identical(values):
        return "– (seeds identical)"
    _, low, high = mean_interval(values, confidence, bounds)
    return f"[{low:.4g}, {high:.4g}]"


def write_report(store: Store, suite: str, out_dir: Path, catalog: Catalog | None = None) -> Path:
    """Write the report of ``suite`` into ``out_dir/<suite>/README.md``; return its path.

    The sections are those of :mod:`bench_core.report_sections` and of every plugin in
    ``catalog`` implementing ``optbench_report_section``. A suite whose trials are all
    learning-rate range tests gets the range-test report (with the same plugin sections).
    An output that cannot be written (disk full, file-size limit, no permission) is one
    :class:`UserError` naming the path; a README cut short never replaces the old one.
    """
    folder = report_folder(Path(out_dir), suite)
    try:
        return _write_report(store, suite, folder, catalog)
    except OSError as exc:
        where = exc.filename or folder
        if str(where).endswith(".partial"):  # the README's temporary file: name the README itself
            where = folder / "README.md"
        raise UserError(f"cannot write the report to {where}: {exc.strerror or exc} (the results are stored; "
                        f"run 'optbench report --suite {suite}' again once it can be written)") from exc


def _write_report(store: Store, suite: str, folder: Path, catalog: Catalog | None) -> Path:
    """:func:`write_report` without the one-line error: the README replaces the old one only once complete."""
    from bench_core.lr_range import is_range_test, range_test_sections

    trials = store.trials(suite)
    folder.mkdir(parents=True, exist_ok=True)
    range_test = is_range_test(trials)
    context = ReportContext(suite=suite, trials=with_identity(trials), curves=store.curves(suite),
                            runs=store.runs(suite), folder=folder, catalog=catalog,
                            styles=optimizer_styles(trials["optimizer"]) if len(trials) else {}, range_test=range_test)
    title = f"# optbench learning-rate range test: {suite}" if range_test else f"# optbench report: {suite}"
    parts = [title, ""]
    description = _suite_description(context.runs)
    if description:
        parts += [description, ""]
    warnings = mixed_code_warnings(context.trials)
    if warnings:
        parts += [*warnings, ""]
    with _plain_text():
        if range_test:
            parts += range_test_sections(context)
        parts += report_sections(context)
    parts += [f"Regenerate with `optbench report --suite {suite}`; every number above comes from the stored "
              "results."]
    path = folder / "README.md"
    with replacing(path) as temporary:
        temporary.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def report_folder(out_dir: Path, suite: str) -> Path:
    """``out_dir/<suite>``, or a :class:`UserError` if the suite name would put it anywhere else.

    Suite names are checked when a sweep starts (:func:`bench_core.suite_files.check_suite_name`);
    this guards results files written before that check, or by other tools: a name such as
    ``../../x`` or ``/tmp/x`` must not write a README outside the output folder.
    """
    from bench_core.errors import UserError

    folder = Path(out_dir) / suite
    if not suite or "/" in suite or "\\" in suite or folder.resolve().parent != Path(out_dir).resolve():
        raise UserError(f"suite {suite!r}: not a folder name inside {out_dir} (no '/', '\\', '..' or absolute "
                        "paths); cannot write its report there")
    return folder


@contextlib.contextmanager
def _plain_text() -> Iterator[None]:
    """Create every text as typed, never as mathtext: names and option values come from users and plugins, and a
    ``$`` in one (``x$\\frac{$``) would otherwise be parsed as TeX and fail the figure or garble it. Tick labels
    are the exception (:func:`_ticks_in_mathtext`)."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}):
        yield


def _ticks_in_mathtext(figure: Figure) -> None:
    """Let tick labels be mathtext again: matplotlib's log-axis formatter writes them in it (``$10^{-2}$``), and as
    plain text they would show that source. Only tick labels: their text comes from the formatter, never a user."""
    from matplotlib.text import Text

    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            for text in axis.findobj(Text):
                if text is not axis.label:
                    text.set_parse_math(True)


def mixed_code_warnings(trials: pd.DataFrame) -> list[str]:
    """One line per optimizer whose trials within one problem variant were produced by different code.

    A trial stored under several suites is re-run, when its code changes, by whichever suite
    runs next, so another suite may then hold old and new results side by side; pooling them
    silently would compare code with itself. Trials without a fingerprint (stored before
    fingerprints existed) cannot be told apart and are left out.
    """
    if trials.empty or "fingerprint" not in trials:
        return []
    known = trials[trials["fingerprint"].map(lambda value: isinstance(value, dict) and bool(value))]
    versions = known["fingerprint"].map(lambda value: json.dumps(value, sort_keys=True))
    lines = []
    for optimizer, rows in known.groupby("optimizer", sort=True):
        mixed, pooled, older = [], 0, 0
        for variant, cell in rows.groupby("variant", sort=True):
            code = versions.loc[cell.index]
            if code.nunique() > 1:
                mixed.append(str(variant))
                pooled += len(cell)
                older += int((code != code.loc[cell["finished_at"].idxmax()]).sum())
        if mixed:
            lines.append(f"> **Warning:** {optimizer} pools trials that different code (of the optimizer or the "
                         f"problem) produced on {', '.join(mixed)}: {older} of its {pooled} trials there ran code "
                         "older than the latest; run the suite again to re-run them with the current code.")
    return lines


def report_sections(context: ReportContext) -> list[str]:
    """Every section's Markdown, built-in and plugin, in pluggy's call order; a failed section is a one-line note."""
    from bench_core.catalog import call_each
    from bench_core.report_sections import section_manager

    manager = section_manager(context.catalog)
    kwargs = {"suite": context.suite, "trials": context.trials, "curves": context.curves, "folder": context.folder,
              "report": context}
    parts = []
    for plugin, answer in call_each(manager, "optbench_report_section", **kwargs):
        if isinstance(answer, Exception):
            text = " ".join(f"{type(answer).__name__}: {answer}".split())
            parts += [f"> Report section `{plugin}` failed: {text}", ""]
        elif isinstance(answer, str):
            if answer.strip():
                parts += [answer.strip(), ""]
        elif answer is not None:
            parts += [f"> Report section `{plugin}` returned {type(answer).__name__}, expected Markdown text", ""]
    return parts


def _suite_description(runs: pd.DataFrame) -> str:
    if runs.empty:
        return ""
    config = runs.iloc[-1].get("suite_config")
    if isinstance(config, str):
        config = json.loads(config)
    return str((config or {}).get("description", "")).strip()


def number(value: float, digits: int = 3) -> str:
    """A number for a table cell; ``–`` for NaN."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def timing_note(trials: pd.DataFrame, columns: str) -> str:
    """A note for a table whose ``columns`` (e.g. "seconds to target") are timings, where some of ``trials`` ran
    in vectorised groups (empty where every trial ran alone).

    A trial run in a group of K is timed as its share of the group's time, which is what it cost, not how long
    it would take alone: such timings compare with those of trials run in groups of the same size only.
    """
    if "group_size" not in trials:
        return ""
    sizes = trials.dropna(subset=["group_size"])
    grouped = sizes[sizes["group_size"] > 1]
    if grouped.empty:
        return ""
    described = ", ".join(f"{optimizer} ({_group_sizes(rows['group_size'])})"
                          for optimizer, rows in grouped.groupby("optimizer", sort=True))
    alone = sorted(set(trials["optimizer"]) - set(grouped["optimizer"]))
    return (f"**Timings of vectorised trials:** {described} ran in vectorised groups of trials; their {columns} are "
            "each trial's share of its group's time (what it cost), not the time it would take alone, and compare "
            "only with trials run in groups of the same size"
            + (f" ({', '.join(alone)} ran alone)" if alone else "")
            + ". Run with `--no-vectorize` for per-trial timings.")


def _group_sizes(sizes: pd.Series) -> str:
    values = sorted({int(size) for size in sizes})
    return f"groups of {values[0]}" if len(values) == 1 else f"groups of {values[0]}-{values[-1]}"
