"""The adapter registry: one pluggy plugin manager fed from the ``smoothcache.adapters`` entry points.

Built-in adapters come from smoothcache's own distribution through the same entry points as any
third-party package. ``SMOOTHCACHE_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the built-ins. A plugin
that fails to import or to list its adapters (raises, or returns something other than a list) is
reported by name and skipped whole; an adapter with a bad name or missing methods is reported and
skipped alone. Either way the others load.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy
from torch import nn

from smoothcache_core import AdapterError, ModelAdapter

from . import hookspecs

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "smoothcache.adapters"
DISABLE_AUTOLOAD_ENV = "SMOOTHCACHE_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_DISTRIBUTION = "smoothcache"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _Rejected(Exception):
    """Why a plugin or one of its adapters is skipped, worded for the problem line."""


def _describe(value: Any) -> str:
    """``repr(value)`` on one short line; a plugin's broken ``__repr__`` must not break loading."""
    try:
        text = " ".join(repr(value).split())
    except Exception:
        text = f"<{type(value).__name__} whose __repr__ raises>"
    return text if len(text) <= 120 else text[:117] + "..."


def _a(value: Any) -> str:
    """``value``'s type name with its article, for messages: "an int", "a dict"."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _adapter_list(returned: Any) -> list[Any]:
    """What one ``smoothcache_adapters`` call returned, read to the end now: a plugin whose generator
    raises part-way must add nothing rather than half its adapters."""
    if returned is None:
        return []
    if isinstance(returned, (str, bytes, Mapping)) or not isinstance(returned, Iterable):
        raise _Rejected(f"smoothcache_adapters() returned {_a(returned)}, not a list; return a list of adapters (or None for none)")
    return list(returned)


def _checked_name(adapter: Any) -> str:
    """The adapter's registered name, read once; ``_Rejected`` if it cannot serve as ``adapter=<name>``."""
    try:
        name = adapter.name
    except AttributeError:
        raise _Rejected(f"returned {_describe(adapter)}, which has no name") from None
    except Exception as error:
        raise _Rejected(f"returned an adapter whose name raises {_describe(error)}") from error
    if not isinstance(name, str):
        raise _Rejected(f"returned {_describe(adapter)}, whose name is {_a(name)}, not a str")
    if not name or any(character.isspace() for character in name):
        raise _Rejected(f"returned an adapter named {name!r}; a name must be non-empty without whitespace, e.g. 'my-model'")
    try:
        is_adapter = isinstance(adapter, ModelAdapter)
    except Exception as error:  # a property among matches/components/step_source that raises
        raise _Rejected(f"returned adapter {name!r}, whose attributes raise {_describe(error)}") from error
    if not is_adapter:
        raise _Rejected(f"returned {_describe(adapter)}, which is not a ModelAdapter (needs name, matches, components, step_source)")
    return name


@dataclass(frozen=True)
class RegisteredAdapter:
    """An adapter and where it came from (``built-in``, ``package-name 1.0``, or ``runtime``)."""

    adapter: ModelAdapter
    source: str


class AdapterRegistry:
    """Loads plugins once, on first use, and answers which adapters exist and which fit a model."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self._adapters: dict[str, RegisteredAdapter] = {}
        self._loaded = False
        #: One line per plugin that could not be loaded, naming it and the reason.
        self.problems: list[str] = []

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in ("", "0", "false", "no")
        seen: set[tuple[str, str]] = set()
        entry_points = sorted(
            metadata.entry_points(group=ENTRY_POINT_GROUP),
            key=lambda ep: (not self._is_builtin(ep), ep.name),
        )
        for entry_point in entry_points:
            if (entry_point.name, entry_point.value) in seen:
                continue
            seen.add((entry_point.name, entry_point.value))
            builtin = self._is_builtin(entry_point)
            if not builtin and not autoload:
                logger.info("not loading plugin %s: %s is set", entry_point.name, DISABLE_AUTOLOAD_ENV)
                continue
            source = "built-in" if builtin else self._distribution_label(entry_point)
            try:
                plugin = entry_point.load()
            except Exception as error:  # a broken plugin must not break the others
                self._report(f"plugin {entry_point.name!r} ({source}) failed to import: {error!r}")
                continue
            self._register(plugin, entry_point.name, source)

    @staticmethod
    def _is_builtin(entry_point: metadata.EntryPoint) -> bool:
        dist = getattr(entry_point, "dist", None)
        return dist is not None and _normalized(dist.name) == BUILTIN_DISTRIBUTION

    @staticmethod
    def _distribution_label(entry_point: metadata.EntryPoint) -> str:
        dist = getattr(entry_point, "dist", None)
        return f"{dist.name} {dist.version}" if dist is not None else f"entry point {entry_point.value}"

    def _report(self, problem: str) -> None:
        self.problems.append(problem)
        warnings.warn(problem, stacklevel=4)

    def _register(self, plugin: Any, name: str, source: str) -> None:
        plugin_label = f"plugin {name!r} ({source})"
        try:
            if self.manager.is_registered(plugin):
                return
            self.manager.register(plugin, name=f"{name}@{source}")
            adapters = [
                adapter
                for impl in self.manager.hook.smoothcache_adapters.get_hookimpls()
                if impl.plugin is plugin
                for adapter in _adapter_list(impl.function())
            ]
        except Exception as error:  # whatever a plugin does wrong, the others still load
            if self.manager.is_registered(plugin):
                self.manager.unregister(plugin)
            reason = str(error) if isinstance(error, _Rejected) else _describe(error)
            self._report(f"{plugin_label} failed to provide adapters: {reason}")
            return
        for adapter in adapters:
            self._add(adapter, plugin_label, source)

    def _add(self, adapter: Any, plugin_label: str, source: str) -> None:
        try:
            name = _checked_name(adapter)
        except _Rejected as rejection:
            self._report(f"{plugin_label} {rejection}; skipping that adapter")
            return
        taken = self._adapters.get(name)
        if taken is not None:
            self._report(f"adapter name {name!r} from {plugin_label} is already taken by {taken.source}; ignoring the second one")
            return
        self._adapters[name] = RegisteredAdapter(adapter, source)

    # -- public -----------------------------------------------------------------------------
    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object or module at runtime (no package needed)."""
        self._ensure_loaded()
        self._register(plugin, name or str(getattr(plugin, "__name__", type(plugin).__name__)), "runtime")

    def entries(self) -> list[RegisteredAdapter]:
        """Every registered adapter with its source, sorted by name."""
        self._ensure_loaded()
        return [self._adapters[name] for name in sorted(self._adapters)]

    def names(self) -> list[str]:
        """Registered names, sorted (as checked at registration; an adapter's ``name`` is not read again)."""
        self._ensure_loaded()
        return sorted(self._adapters)

    def get(self, name: str) -> ModelAdapter:
        self._ensure_loaded()
        if name not in self._adapters:
            hint = "" if self._adapters else " (none: is smoothcache installed with pip so its entry points exist?)"
            raise AdapterError(f"unknown adapter {name!r}; registered adapters: {self.names()}{hint}")
        return self._adapters[name].adapter

    def detect(self, model: nn.Module) -> ModelAdapter:
        """The one adapter whose ``matches`` accepts ``model``; an error if none or several do.

        An adapter with ``fallback = True`` (the generic ``diffusers`` one) is chosen only when no
        other adapter matches, so a family's or a third party's adapter always wins over it."""
        self._ensure_loaded()
        matching: dict[str, ModelAdapter] = {}
        for name in sorted(self._adapters):
            adapter = self._adapters[name].adapter
            try:
                if adapter.matches(model):
                    matching[name] = adapter
            except Exception:  # matches() must not raise; treat a failing one as "no match"
                logger.debug("adapter %s raised in matches()", name, exc_info=True)
        specific = {name: adapter for name, adapter in matching.items() if getattr(adapter, "fallback", False) is not True}
        matching = specific or matching
        if len(matching) == 1:
            return next(iter(matching.values()))
        if not matching:
            raise AdapterError(
                f"no registered adapter matches {type(model).__name__}; registered adapters: {self.names()}. "
                "Pass adapter=<name>, or write an adapter for this model (see docs/adapters.md)"
            )
        raise AdapterError(f"several adapters match {type(model).__name__}: {list(matching)}; pass adapter=<name>")


_REGISTRY: AdapterRegistry | None = None


def registry() -> AdapterRegistry:
    """The process-wide registry (created, and its plugins loaded, on first use)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = AdapterRegistry()
    return _REGISTRY
