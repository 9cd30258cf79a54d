"""What code produced a trial: fingerprints of optimizer and problem specs.

A trial's id hashes its configuration only, so after the class behind an optimizer name
changes, the same configuration maps to the same stored row. The driver stores, with every
trial, the fingerprint of the code behind its optimizer and its problem, and re-runs a
stored trial whose fingerprint no longer matches (see :mod:`bench_core.driver`).

A fingerprint is a sorted, comma-separated list of components, one per piece of code:

- ``torch==2.13.0``: a module from an installed, non-editable distribution is named by the
  distribution and its version (its files cannot change without the version changing);
- ``myopt.py@3f2a9c1b0d4e`` (a plugin file loaded by path) or
  ``bench_core.plugins.lion@3f2a9c1b0d4e`` (a module of an editable install or a plain module
  on ``sys.path``): a short sha256 of the module's source file, which can change at any
  time. Files are named by their base name, modules by their dotted name: never an
  absolute path, so moving a plugin file to another folder keeps its fingerprint;
- ``python==3.11`` for the standard library, and ``settings@...`` for the data of a spec that
  shapes the run but is not in the trial's configuration (``fixed`` arguments, a closure).

What counts as a spec's code: for an optimizer, the callable and every class of its method
resolution order, and ``to_kwargs``; for a problem, ``build`` and the class it is annotated
to return. The harness itself (``bench_core``, apart from its built-in plugins and problems)
is named by optbench's version alone: it is one program, recorded per run in the
environment, and hashing it would re-run every trial of a checkout after any edit to it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import json
import re
import sys
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import bench_core
from bench_core.catalog import LOCAL_MODULE_PREFIX, Catalog
from bench_core.specs import OptimizerSpec, ProblemSpec
from bench_core.trial import TrialConfig

__all__ = ["FINGERPRINT_KEYS", "Fingerprints", "describe_change", "optimizer_fingerprint", "problem_fingerprint"]

#: What a trial's stored fingerprint holds, one entry per kind of spec.
FINGERPRINT_KEYS = ("optimizer", "problem")
#: Hex digits of sha256 kept per hashed file: plenty to tell versions of one file apart.
HASH_DIGITS = 12
#: Hex digits of a hash shown in messages.
SHOWN_DIGITS = 6
#: Modules of the harness that are plugins like any other, fingerprinted by their source.
BUILTIN_PLUGIN_PACKAGES = ("bench_core.plugins", "bench_core.problems")
SEPARATOR = ", "


def optimizer_fingerprint(spec: OptimizerSpec) -> str:
    """The fingerprint of the code behind an optimizer: its callable (with base classes), ``to_kwargs``, settings."""
    parts = _callable_components(spec.optimizer)
    if spec.to_kwargs is not None:
        parts |= _callable_components(spec.to_kwargs)
    settings: dict[str, Any] = {}
    if spec.fixed:
        settings["fixed"] = dict(spec.fixed)
    if spec.needs_closure:
        settings["needs_closure"] = True
    if settings:
        parts.add(f"settings@{_value_digest(settings)}")
    return _join(parts)


def problem_fingerprint(spec: ProblemSpec) -> str:
    """The fingerprint of the code behind a problem: ``build`` and the class it is annotated to return."""
    parts = _callable_components(spec.build)
    returned = _returned_class(spec.build)
    if returned is not None:
        parts |= _class_components(returned)
    return _join(parts)


class Fingerprints:
    """The current fingerprints of a catalog's optimizers and problems, computed once per name."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._known: dict[tuple[str, str], str] = {}

    def get(self, kind: str, name: str) -> str:
        """The fingerprint of the ``kind`` (``optimizer`` or ``problem``) called ``name``."""
        key = (kind, name)
        if key not in self._known:
            spec = self.catalog.get(kind, name)
            self._known[key] = optimizer_fingerprint(spec) if kind == "optimizer" else problem_fingerprint(spec)
        return self._known[key]

    def of(self, config: TrialConfig) -> dict[str, str]:
        """What a trial of ``config`` run now is stored with: ``{"optimizer": ..., "problem": ...}``."""
        return {"optimizer": self.get("optimizer", config.optimizer), "problem": self.get("problem", config.problem)}

    def changed(self, config: TrialConfig, stored: dict[str, str]) -> list[str]:
        """The kinds (of :data:`FINGERPRINT_KEYS`) whose code changed since a trial stored with ``stored`` ran.

        Empty for a trial stored before fingerprints (``{}``): what ran it is unknown, not changed.
        """
        current = self.of(config)
        return [kind for kind in FINGERPRINT_KEYS if stored.get(kind) and stored[kind] != current[kind]]


def describe_change(old: str, new: str) -> str:
    """What differs between two fingerprints, in words: ``plugin file myopt.py: source hash 3f2a9c… -> 9c1b0d…``."""
    before, after = _parse(old), _parse(new)
    words = []
    for label in sorted(before.keys() | after.keys()):
        was, now = before.get(label), after.get(label)
        if was == now:
            continue
        what = _what(label, (was or now)[0])
        if was is None:
            words.append(f"now also {what}")
        elif now is None:
            words.append(f"no longer {what}")
        elif now[0] == "==":
            words.append(f"{what} {was[1]} -> {now[1]}")
        elif label in ("settings", "partial"):
            words.append(f"{what} changed")
        else:
            words.append(f"{what}: source hash {_short(was[1])} -> {_short(now[1])}")
    return "; ".join(words) or "code changed"


# -- components ------------------------------------------------------------------------------


def _join(parts: Iterable[str]) -> str:
    return SEPARATOR.join(sorted(set(parts)))


def _parse(fingerprint: str) -> dict[str, tuple[str, str]]:
    """Component label -> (``==`` or ``@``, version or hash)."""
    out = {}
    for part in filter(None, fingerprint.split(SEPARATOR)):
        if "==" in part:
            label, _, value = part.partition("==")
            out[label] = ("==", value)
        else:
            label, _, value = part.rpartition("@")
            out[label or part] = ("@", value)
    return out


def _what(label: str, kind: str) -> str:
    if kind == "==":
        return label
    if label == "settings":
        return "spec settings (fixed arguments, closure)"
    if label == "partial":
        return "bound arguments"
    return f"plugin file {label}" if label.endswith(".py") else f"module {label}"


def _short(digest: str) -> str:
    return digest[:SHOWN_DIGITS] + "…" if len(digest) > SHOWN_DIGITS else digest


def _callable_components(obj: Callable[..., Any]) -> set[str]:
    """The components of every piece of code a callable runs that can be named cheaply."""
    if isinstance(obj, functools.partial):
        parts = _callable_components(obj.func)
        if obj.args or obj.keywords:
            parts.add(f"partial@{_value_digest([list(obj.args), obj.keywords])}")
        return parts
    if inspect.isclass(obj):
        return _class_components(obj)
    if inspect.ismethod(obj):
        owner = obj.__self__
        return _callable_components(obj.__func__) | _class_components(owner if inspect.isclass(owner) else type(owner))
    if inspect.isroutine(obj):
        module = getattr(obj, "__module__", None)
        return {module_component(module)} if module else set()
    return _class_components(type(obj))  # a callable instance: its class holds the code


def _class_components(cls: type) -> set[str]:
    """The modules of a class and of its bases; standard-library bases (``ABC``, ``Generic``) are type machinery."""
    return {module_component(klass.__module__) for klass in cls.__mro__
            if klass.__module__.partition(".")[0] not in (*sys.stdlib_module_names, "builtins")}


def _returned_class(build: Callable[..., Any]) -> type | None:
    """The class ``build`` is annotated to return, if the annotation resolves to a class; else ``None``."""
    target = build.func if isinstance(build, functools.partial) else build
    if inspect.isclass(target):
        return None  # the class itself is the code, already named
    try:
        returned = typing.get_type_hints(target).get("return")
    except Exception:  # an annotation that does not resolve is not worth failing a sweep for
        return None
    return returned if inspect.isclass(returned) else None


def module_component(name: str) -> str:
    """The component naming module ``name``: its distribution and version, or a hash of its source file."""
    top = name.partition(".")[0]
    if top in sys.stdlib_module_names:
        return f"python=={sys.version_info.major}.{sys.version_info.minor}"
    if top == "bench_core" and not name.startswith(BUILTIN_PLUGIN_PACKAGES):
        return f"optbench=={bench_core.__version__}"
    file = getattr(sys.modules.get(name), "__file__", None)
    label = name
    if file is None:
        return f"{label}@unknown"
    path = Path(file).resolve()
    if name.startswith(LOCAL_MODULE_PREFIX) or name == "__main__":
        label = path.name  # a file's name, not its folder: a moved plugin file keeps its fingerprint
    owner = _installed_owner(top, path)
    if owner is not None:
        return owner
    return f"{label}@{_file_hash(path)}"


def _installed_owner(top: str, path: Path) -> str | None:
    """``name==version`` of the regular (non-editable) installed distribution that holds ``path``, else ``None``."""
    for dist_name in dict.fromkeys(_package_distributions().get(top, [])):
        for dist in importlib.metadata.distributions(name=dist_name):
            name = dist.metadata["Name"]
            if not name or _is_editable(dist):
                continue
            root = Path(dist.locate_file("")).resolve()
            if path.is_relative_to(root) and path.relative_to(root).as_posix() in _recorded_files(name, str(root)):
                return f"{name}=={dist.version}"
    return None


@functools.cache
def _package_distributions() -> dict[str, list[str]]:
    """Top-level package -> distributions providing it; scanning every installed distribution once."""
    return importlib.metadata.packages_distributions()


def _is_editable(dist: importlib.metadata.Distribution) -> bool:
    """Whether ``dist`` is an editable install (PEP 610 ``direct_url.json`` with ``dir_info.editable``)."""
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    try:
        return bool(json.loads(text).get("dir_info", {}).get("editable"))
    except (ValueError, AttributeError):
        return False


@functools.cache
def _recorded_files(name: str, root: str) -> frozenset[str]:
    """The files an installed distribution's ``RECORD`` lists, relative to ``root``.

    Only a ``RECORD`` counts: it is what an installer writes. A source checkout's ``egg-info``
    lists its sources too, but they are edited in place, so they are hashed instead.
    """
    for dist in importlib.metadata.distributions(name=name):
        if str(Path(dist.locate_file("")).resolve()) == root and dist.read_text("RECORD") is not None:
            return frozenset(str(file) for file in dist.files or ())
    return frozenset()


_hashes: dict[tuple[str, int, int], str] = {}


def _file_hash(path: Path) -> str:
    """A short sha256 of a source file, line endings normalised; computed once per file version in a process.

    The cache is keyed by the file's modification time and size as well, so an edit is seen
    (a ``touch`` only costs one more read: the content, not the time, is hashed).
    """
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in _hashes:
            _hashes[key] = hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()[:HASH_DIGITS]
        return _hashes[key]
    except OSError:
        return "unreadable"


def _value_digest(value: Any) -> str:
    """A short hash of plain data, stable across processes (object addresses in reprs are dropped)."""
    text = json.dumps(value, sort_keys=True, default=_stable_repr)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_DIGITS]


def _stable_repr(value: Any) -> str:
    if inspect.isclass(value) or inspect.isfunction(value):
        return f"{value.__module__}.{value.__qualname__}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))
