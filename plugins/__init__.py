"""smoothcache.plugins: the pluggy hook specs and the adapter registry (entry points), nothing else."""

from .hookspecs import PROJECT, hookimpl, hookspec
from .registry import (
    BUILTIN_DISTRIBUTION,
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    AdapterRegistry,
    RegisteredAdapter,
    registry,
)

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "PROJECT",
    "AdapterRegistry",
    "RegisteredAdapter",
    "hookimpl",
    "hookspec",
    "registry",
]
