"""What ``optbench list`` shows: every optimizer, problem, schedule and plugin, and where each came from."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from bench_core.catalog import Catalog
from bench_core.fingerprint import Fingerprints
from bench_core.specs import ProblemSpec


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def catalog_rows(catalog: Catalog) -> dict[str, list[dict[str, Any]]]:
    """The catalog as plain rows (also the ``--json`` output).

    Optimizers and problems carry the fingerprint their trials are stored with
    (:mod:`bench_core.fingerprint`); the terminal tables leave it out, it is too wide for them.
    """
    fingerprints = Fingerprints(catalog)
    optimizers = [
        {"name": name, "plugin": catalog.origin[("optimizer", name)], "defaults": spec.defaults(),
         "description": spec.description, "fingerprint": fingerprints.get("optimizer", name)}
        for name, spec in sorted(catalog.optimizers.items())
    ]
    problems = [
        {"name": name, "plugin": catalog.origin[("problem", name)], "options": dict(spec.options),
         "batch_size": spec.batch_size, "budget": f"{spec.budget.amount} {spec.budget.unit}",
         "description": spec.description, "fingerprint": fingerprints.get("problem", name),
         "data": data_status(spec)}
        for name, spec in sorted(catalog.problems.items())
    ]
    schedules = [
        {"name": name, "plugin": catalog.origin[("schedule", name)], "options": dict(spec.options),
         "description": spec.description}
        for name, spec in sorted(catalog.schedules.items())
    ]
    searches = [
        {"name": name, "plugin": catalog.origin[("search strategy", name)], "adaptive": spec.adaptive,
         "description": spec.description}
        for name, spec in sorted(catalog.searches.items())
    ]
    plugins = [
        {"name": info.name, "source": info.source, "distribution": info.distribution,
         "version": info.version, "hooks": list(info.hooks),
         "contract": info.contract}
        for info in catalog.plugins.values()
    ]
    return {"optimizers": optimizers, "problems": problems, "schedules": schedules, "searches": searches,
            "report_sections": report_section_rows(catalog), "plugins": plugins,
            "issues": list(catalog.issues)}


def data_status(spec: ProblemSpec) -> dict[str, Any] | None:
    """``{"found": True, "where": folder}`` or ``{"found": False, "message": ...}`` for a problem that reads
    data files; ``None`` for one that does not. A failing lookup is reported, never raised."""
    if spec.data is None:
        return None
    try:
        return {"found": True, "where": str(spec.data())}
    except Exception as exc:  # a plugin's lookup: whatever it raises is its answer
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        return {"found": False, "message": message, "hint": str(getattr(exc, "hint", message))}


def report_section_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """The built-in report sections in report order, then every plugin that implements one."""
    from bench_core.report_sections import DEFAULT_SECTIONS, PLUGIN_PREFIX

    rows = [{"name": PLUGIN_PREFIX + name, "plugin": "optbench (built-in)"} for name in DEFAULT_SECTIONS]
    rows += [{"name": info.name, "plugin": info.source} for info in catalog.plugins.values()
             if "optbench_report_section" in info.hooks]
    return rows


def _kv(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in mapping.items())


def render_listing(rows: dict[str, list[dict[str, Any]]]) -> str:
    """Plain-text tables for the terminal."""
    sections = [
        ("Optimizers", [[r["name"], _kv(r["defaults"]), r["plugin"], r["description"]]
                        for r in rows["optimizers"]], ["name", "defaults", "plugin", "description"]),
        ("Problems", [[r["name"], _kv(r["options"]), r["batch_size"], r["budget"], r["plugin"], r["description"]]
                      for r in rows["problems"]],
         ["name", "options", "batch", "budget", "plugin", "description"]),
        ("Schedules", [[r["name"], _kv(r["options"]), r["plugin"], r["description"]] for r in rows["schedules"]],
         ["name", "options", "plugin", "description"]),
        ("Search strategies", [[r["name"], "yes" if r["adaptive"] else "no", r["plugin"], r["description"]]
                               for r in rows["searches"]], ["name", "adaptive", "plugin", "description"]),
        ("Data sets", [[r["name"], "found" if r["data"]["found"] else "not found",
                        r["data"]["where"] if r["data"]["found"] else r["data"]["hint"]]
                       for r in rows["problems"] if r.get("data")], ["problem", "data", "where / how to get it"]),
        ("Report sections", [[r["name"], r["plugin"]] for r in rows["report_sections"]], ["name", "plugin"]),
        ("Plugins", [[r["name"], r["version"] or "", r["source"], ", ".join(r["hooks"])] for r in rows["plugins"]],
         ["name", "version", "source", "hooks"]),
    ]
    return "\n\n".join(f"{title}\n{tabulate(body, headers, tablefmt='simple')}" for title, body, headers in sections)
