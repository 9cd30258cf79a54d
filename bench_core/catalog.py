"""Plugin discovery and the catalog of optimizers, problems and schedules they provide.

Plugins come from the ``optbench`` entry-point group and from ``--plugins`` paths. Each
is loaded and asked on its own, so one broken plugin is reported by name and the others
still work. ``OPTBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` keeps only the built-in entry points
(those of the optbench distribution itself), which isolates test runs from whatever else
is installed; ``OPTBENCH_TRACE_HOOKS=1`` prints every hook call on stderr.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from bench_core import hookspecs
from bench_core.errors import UserError
from bench_core.interrupts import raised_by_code
from bench_core.specs import OptimizerSpec, ProblemSpec, ScheduleSpec, SearchSpec

ENV_DISABLE_AUTOLOAD = "OPTBENCH_DISABLE_PLUGIN_AUTOLOAD"
ENV_TRACE = "OPTBENCH_TRACE_HOOKS"
BUILTIN_DISTRIBUTION = "optbench"
#: Module names of plugin files loaded by path (``--plugins``) start with this.
LOCAL_MODULE_PREFIX = "optbench_local_"

#: catalog hook name -> (kind shown to users, spec class a plugin must return)
CATALOG_HOOKS: dict[str, tuple[str, type]] = {
    "optbench_optimizers": ("optimizer", OptimizerSpec),
    "optbench_problems": ("problem", ProblemSpec),
    "optbench_schedules": ("schedule", ScheduleSpec),
    "optbench_search_strategies": ("search strategy", SearchSpec),
}


@dataclass(frozen=True)
class PluginInfo:
    """Where a registered plugin came from, for ``optbench list`` and error messages."""

    name: str
    source: str
    distribution: str | None = None
    version: str | None = None
    hooks: tuple[str, ...] = ()
    contract: int | None = None


@dataclass
class Catalog:
    """Everything the installed and given plugins provide, by name."""

    manager: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    optimizers: dict[str, OptimizerSpec] = field(default_factory=dict)
    problems: dict[str, ProblemSpec] = field(default_factory=dict)
    schedules: dict[str, ScheduleSpec] = field(default_factory=dict)
    searches: dict[str, SearchSpec] = field(default_factory=dict)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)
    plugin_paths: tuple[str, ...] = ()
    #: One line per name two plugins outside optbench both offer (also in ``issues``). Which one got the name
    #: depends on the order the plugins were given in, and a trial's id names the optimizer or problem by name
    #: alone, so a result stored under one would be served for the other: the CLI refuses to go on.
    conflicts: list[str] = field(default_factory=list)

    def entries(self, kind: str) -> dict[str, Any]:
        return {"optimizer": self.optimizers, "problem": self.problems, "schedule": self.schedules,
                "search strategy": self.searches}[kind]

    def get(self, kind: str, name: str) -> Any:
        """The spec called ``name``, or a :class:`UserError` that lists what exists."""
        entries = self.entries(kind)
        if name in entries:
            return entries[name]
        known = ", ".join(sorted(entries)) or "none"
        hint = f"; note: {len(self.issues)} plugin(s) failed to load" if self.issues else ""
        raise UserError(f"unknown {kind} {name!r} (known: {known}){hint}")

    def notify_trial_finished(self, config: Any, result: Any) -> list[str]:
        """Call every observer; return one message per observer that raised."""
        answers = call_each(self.manager, "optbench_trial_finished", config=config, result=result)
        return [f"plugin {plugin!r}: optbench_trial_finished raised {_one_line(answer)}"
                for plugin, answer in answers if isinstance(answer, Exception)]


def load_catalog(plugin_paths: Sequence[str | os.PathLike] = (), autoload: bool | None = None) -> Catalog:
    """Discover plugins, ask each for its specs and index them by name.

    :param plugin_paths: ``.py`` files or folders of them to load as local plugins.
    :param autoload: load third-party entry points; by default, unless
        ``OPTBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set. Built-in entry points always load.
    :raises UserError: when a given path does not exist.
    """
    if autoload is None:
        autoload = not os.environ.get(ENV_DISABLE_AUTOLOAD)
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    if os.environ.get(ENV_TRACE):
        _trace_hook_calls(manager)
    catalog = Catalog(manager=manager, plugin_paths=tuple(str(Path(p).resolve()) for p in plugin_paths))

    # Built-ins register first, so they keep their names when a third party reuses one.
    for is_builtin, dist_name, entry_point in sorted(_entry_points(), key=_builtins_first):
        dist = entry_point.dist
        if not (autoload or is_builtin):
            continue
        source = f"entry point {entry_point.value}" + (f" ({dist_name} {dist.version})" if dist else "")
        info = PluginInfo(entry_point.name, source, dist_name or None, dist.version if dist else None)
        _register(catalog, info, entry_point.load)

    for path in _expand_paths(plugin_paths):
        info = PluginInfo(str(path), f"file {path}")
        _register(catalog, info, lambda path=path: _import_file(path))

    _report_unknown_hooks(catalog)
    for hook_name, (kind, spec_class) in CATALOG_HOOKS.items():
        _collect(catalog, hook_name, kind, spec_class)
    return catalog


def _entry_points() -> list[tuple[bool, str, importlib.metadata.EntryPoint]]:
    found = []
    for entry_point in importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME):
        dist_name = entry_point.dist.metadata["Name"] if entry_point.dist is not None else ""
        found.append((dist_name.lower() == BUILTIN_DISTRIBUTION, dist_name, entry_point))
    return found


def _builtins_first(item: tuple[bool, str, importlib.metadata.EntryPoint]) -> tuple[bool, str, str]:
    is_builtin, dist_name, entry_point = item
    return (not is_builtin, dist_name, entry_point.name)


def _register(catalog: Catalog, info: PluginInfo, load: Callable[[], Any]) -> None:
    try:
        plugin = load()
    except Exception as exc:  # a broken plugin must not take the others down
        catalog.issues.append(f"plugin {info.name!r} ({info.source}) failed to load: {_one_line(exc)}")
        return
    except (SystemExit, KeyboardInterrupt) as exc:  # sys.exit() at import: the plugin is skipped, not optbench
        if not raised_by_code(exc):
            raise  # the user's Ctrl-C while plugins load
        catalog.issues.append(f"plugin {info.name!r} ({info.source}) failed to load: it raised {exc!r}")
        return
    contract, problem = _declared_contract(plugin)
    if problem:
        catalog.issues.append(f"plugin {info.name!r} ({info.source}) {problem}")
        return
    if info.name in catalog.plugins or catalog.manager.is_registered(plugin):
        catalog.issues.append(f"plugin {info.name!r} ({info.source}) is already registered; ignored")
        return
    try:
        catalog.manager.register(plugin, name=info.name)
    except Exception as exc:
        catalog.issues.append(f"plugin {info.name!r} ({info.source}) is invalid: {_one_line(exc)}")
        return
    hooks = tuple(sorted(name for name, caller in vars(catalog.manager.hook).items()
                         if any(impl.plugin_name == info.name for impl in caller.get_hookimpls())))
    catalog.plugins[info.name] = PluginInfo(info.name, info.source, info.distribution, info.version, hooks, contract)


def _declared_contract(plugin: Any) -> tuple[int | None, str]:
    """The contract version a plugin declares (None if it declares none) and why it cannot load, if it cannot."""
    declared = getattr(plugin, hookspecs.CONTRACT_ATTRIBUTE, None)
    if declared is None:
        return None, ""
    supported = ", ".join(str(v) for v in sorted(hookspecs.SUPPORTED_CONTRACTS))
    if isinstance(declared, bool) or not isinstance(declared, int):
        return None, (f"declares {hookspecs.CONTRACT_ATTRIBUTE} = {declared!r}; expected an integer "
                      f"(this optbench supports {supported})")
    if declared in hookspecs.SUPPORTED_CONTRACTS:
        return declared, ""
    if declared > max(hookspecs.SUPPORTED_CONTRACTS):
        advice = "upgrade optbench, or use a release of the plugin written for it"
    else:
        advice = "that version is no longer supported: upgrade the plugin"
    return None, (f"was written for plugin contract {declared}, this optbench supports {supported}; {advice}")


def _expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            files.extend(p for p in sorted(path.glob("*.py")) if not p.name.startswith("_"))
        elif path.is_file() and path.suffix == ".py":
            files.append(path)
        else:
            raise UserError(f"--plugins {raw}: no such .py file or folder")
    return files


def _import_file(path: Path) -> ModuleType:
    # A name derived from the path, so worker processes that load the same file agree on it.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    module_name = f"{LOCAL_MODULE_PREFIX}{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _report_unknown_hooks(catalog: Catalog) -> None:
    for hook_name, caller in vars(catalog.manager.hook).items():
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            catalog.issues.append(f"plugin {impl.plugin_name!r} implements unknown hook {hook_name!r}")


def _collect(catalog: Catalog, hook_name: str, kind: str, spec_class: type) -> None:
    """Index every plugin's specs by name: a bad spec or a taken name is reported and skipped alone.

    Plugins are called through pluggy; names are then given out in registration order, so a
    built-in keeps its name whichever plugin answers first.
    """
    entries = catalog.entries(kind)
    rank = {name: position for position, (name, _) in enumerate(catalog.manager.list_name_plugin())}
    answers = sorted(call_each(catalog.manager, hook_name), key=lambda pair: rank.get(pair[0], len(rank)))
    for plugin, answer in answers:
        where = f"plugin {plugin!r} ({catalog.plugins[plugin].source})"
        if isinstance(answer, BaseException):
            catalog.issues.append(f"{where}: {hook_name} raised {_one_line(answer)}")
            continue
        if answer is None:
            continue
        if not isinstance(answer, list | tuple):
            catalog.issues.append(
                f"{where}: {hook_name} must return a list of {spec_class.__name__}, got {type(answer).__name__}"
            )
            continue
        for spec in answer:
            if not isinstance(spec, spec_class):
                catalog.issues.append(
                    f"{where}: {hook_name} returned {type(spec).__name__}, expected {spec_class.__name__}"
                )
                continue
            try:
                getattr(spec, "validate", lambda: None)()
            except ValueError as exc:
                catalog.issues.append(f"{where}: {' '.join(str(exc).split())}; skipped")
                continue
            if spec.name in entries:
                owner = catalog.origin[(kind, spec.name)]
                catalog.issues.append(
                    f"{where}: {kind} {spec.name!r} is already provided by plugin {owner!r}; ignored"
                )
                if not _is_builtin(catalog.plugins[owner]):
                    catalog.conflicts.append(
                        f"{kind} {spec.name!r} is offered by two plugins, {owner!r} ({catalog.plugins[owner].source}) "
                        f"and {plugin!r} ({catalog.plugins[plugin].source}): rename one, or load only one")
                continue
            entries[spec.name] = spec
            catalog.origin[(kind, spec.name)] = plugin


def _is_builtin(info: PluginInfo) -> bool:
    """Whether a plugin ships with optbench: such a plugin keeps its names whatever order plugins are given in."""
    return (info.distribution or "").lower() == BUILTIN_DISTRIBUTION


def call_each(manager: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call a hook's implementations through pluggy in pluggy's order, each on its own (every hook goes here).

    pluggy calls ``tryfirst`` implementations first, ``trylast`` ones last and, within
    each group, the last registered first; a ``wrapper`` wraps every call. Calling each
    implementation through its own subset of the hook keeps that order while making a
    failure attributable: returns ``(plugin name, answer)`` pairs, with the exception in
    place of the answer of an implementation that raised.
    """
    impls = [impl for impl in reversed(getattr(manager.hook, hook_name).get_hookimpls())
             if not (impl.wrapper or impl.hookwrapper)]
    answers = []
    for impl in impls:
        others = [other.plugin for other in impls if other is not impl]
        try:
            results = manager.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)
            answer = results[0] if results else None
        except Exception as exc:
            answer = exc
        answers.append((impl.plugin_name, answer))
    return answers


def _trace_hook_calls(manager: pluggy.PluginManager) -> None:
    """Print every hook call and its answer on stderr, through pluggy's call monitoring (``OPTBENCH_TRACE_HOOKS``)."""
    def after(outcome: Any, hook_name: str, hook_impls: Sequence[Any], kwargs: dict[str, Any]) -> None:
        plugins = ", ".join(impl.plugin_name for impl in hook_impls if not (impl.wrapper or impl.hookwrapper))
        if outcome.exception is not None:
            answer: Any = outcome.exception
        else:
            results = outcome.get_result()
            answer = results[0] if isinstance(results, list) and len(results) == 1 else results
        print(f"optbench: hook {hook_name} -> {plugins}: {_describe(answer)}", file=sys.stderr)

    manager.add_hookcall_monitoring(lambda hook_name, hook_impls, kwargs: None, after)


def _describe(answer: Any) -> str:
    if isinstance(answer, BaseException):
        return f"raised {_one_line(answer)}"
    if isinstance(answer, list | tuple):
        return "[" + ", ".join(getattr(item, "name", repr(item)) for item in answer) + "]"
    return repr(answer)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
