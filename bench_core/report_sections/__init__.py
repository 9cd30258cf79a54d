"""The built-in report sections, each a plugin implementing ``optbench_report_section``.

They are optbench's default plugins for reports, registered on the catalog's plugin
manager when a report is written (workers that only train never import them) and called
through pluggy like a third party's sections: in the order of :data:`DEFAULT_SECTIONS`,
before plugin sections without a marker; a plugin's ``tryfirst`` section comes before
them and the environment, marked ``trylast``, closes the report. Each section receives the
:class:`bench_core.report.ReportContext` as ``report`` and returns Markdown or ``None``.
"""

from __future__ import annotations

import hashlib
import importlib
import re

import pluggy

from bench_core import hookspecs

#: Built-in sections in report order (modules of this package).
DEFAULT_SECTIONS = ("findings", "trials", "summary", "leaderboard", "curves", "sensitivity", "settings",
                    "batch_size", "trajectories", "environment")
PLUGIN_PREFIX = "optbench.report."


def section_manager(catalog: object | None = None) -> pluggy.PluginManager:
    """The catalog's plugin manager (a bare one without a catalog) with the built-in sections registered."""
    manager = getattr(catalog, "manager", None)
    if manager is None:
        manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        manager.add_hookspecs(hookspecs)
    # pluggy calls the last registered first: register in reverse to be called in DEFAULT_SECTIONS order.
    for name in reversed(DEFAULT_SECTIONS):
        if manager.get_plugin(PLUGIN_PREFIX + name) is None:
            manager.register(importlib.import_module(f"{__name__}.{name}"), name=PLUGIN_PREFIX + name)
    return manager


#: Longest figure file stem: with the kind and ``.png`` well inside the 255 bytes file systems allow.
MAX_STEM = 120


def file_name(label: str, kind: str) -> str:
    """A figure's file name for a variant label: ``quadratic (noise=0.5)`` -> ``quadratic_noise_0.5_<kind>.png``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_.") or "problem"
    if len(stem) > MAX_STEM:  # a long option value must not make a name the file system refuses (255 bytes)
        stem = f"{stem[:MAX_STEM - 13]}_{hashlib.sha256(label.encode()).hexdigest()[:12]}"
    return f"{stem}_{kind}.png"
