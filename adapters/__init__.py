"""smoothcache.adapters: one module per model family, each registered through an entry point.

The package is also callable: ``smoothcache.adapters()`` returns the sorted names of every registered
adapter (the public API promises that call, and the attribute ``smoothcache.adapters`` is this package
as soon as any adapter module is imported, so the package itself answers it).
"""

from __future__ import annotations

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self) -> list[str]:
        """Sorted names of every registered adapter (built-in and from installed plugin packages)."""
        from smoothcache.plugins import registry

        return registry().names()


sys.modules[__name__].__class__ = _CallablePackage
