"""The adapter registry: one pluggy plugin manager fed from the ``smoothcache.adapters`` entry points.

Built-in adapters come from smoothcache's own distribution through the same entry points as any
third-party package. ``SMOOTHCACHE_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the built-ins. A plugin
that fails to import or to list its adapters is reported by name and skipped; the others load.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
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
        try:
            if self.manager.is_registered(plugin):
                return
            self.manager.register(plugin, name=f"{name}@{source}")
            results = [
                impl.function()
                for impl in self.manager.hook.smoothcache_adapters.get_hookimpls()
                if impl.plugin is plugin
            ]
        except Exception as error:
            if self.manager.is_registered(plugin):
                self.manager.unregister(plugin)
            self._report(f"plugin {name!r} ({source}) failed to provide adapters: {error!r}")
            return
        for adapters in results:
            for adapter in adapters or ():
                self._add(adapter, name, source)

    def _add(self, adapter: Any, plugin_name: str, source: str) -> None:
        if not isinstance(adapter, ModelAdapter) or not isinstance(getattr(adapter, "name", None), str):
            self._report(
                f"plugin {plugin_name!r} ({source}) returned {adapter!r}, which is not a ModelAdapter "
                "(needs name, matches, components, step_source)"
            )
            return
        taken = self._adapters.get(adapter.name)
        if taken is not None:
            self._report(
                f"adapter name {adapter.name!r} from plugin {plugin_name!r} ({source}) is already taken "
                f"by {taken.source}; ignoring the second one"
            )
            return
        self._adapters[adapter.name] = RegisteredAdapter(adapter, source)

    # -- public -----------------------------------------------------------------------------
    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object or module at runtime (no package needed)."""
        self._ensure_loaded()
        self._register(plugin, name or getattr(plugin, "__name__", type(plugin).__name__), "runtime")

    def entries(self) -> list[RegisteredAdapter]:
        """Every registered adapter with its source, sorted by name."""
        self._ensure_loaded()
        return [self._adapters[name] for name in sorted(self._adapters)]

    def names(self) -> list[str]:
        return [entry.adapter.name for entry in self.entries()]

    def get(self, name: str) -> ModelAdapter:
        self._ensure_loaded()
        if name not in self._adapters:
            hint = "" if self._adapters else " (none: is smoothcache installed with pip so its entry points exist?)"
            raise AdapterError(f"unknown adapter {name!r}; registered adapters: {self.names()}{hint}")
        return self._adapters[name].adapter

    def detect(self, model: nn.Module) -> ModelAdapter:
        """The one adapter whose ``matches`` accepts ``model``; an error if none or several do."""
        matching = []
        for entry in self.entries():
            try:
                if entry.adapter.matches(model):
                    matching.append(entry.adapter)
            except Exception:  # matches() must not raise; treat a failing one as "no match"
                logger.debug("adapter %s raised in matches()", entry.adapter.name, exc_info=True)
        if len(matching) == 1:
            return matching[0]
        if not matching:
            raise AdapterError(
                f"no registered adapter matches {type(model).__name__}; registered adapters: {self.names()}. "
                "Pass adapter=<name>, or write an adapter for this model (see the README)"
            )
        raise AdapterError(
            f"several adapters match {type(model).__name__}: {[a.name for a in matching]}; pass adapter=<name>"
        )


_REGISTRY: AdapterRegistry | None = None


def registry() -> AdapterRegistry:
    """The process-wide registry (created, and its plugins loaded, on first use)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = AdapterRegistry()
    return _REGISTRY
