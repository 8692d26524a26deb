"""Hook specifications for smoothcache plugins (pluggy, project name ``smoothcache``).

A plugin is any module or object with functions marked ``@smoothcache.hookimpl``, found through the
entry-point group ``smoothcache.adapters``::

    # my_adapter.py
    import smoothcache

    @smoothcache.hookimpl
    def smoothcache_adapters():
        return [MyAdapter()]

    # pyproject.toml
    [project.entry-points."smoothcache.adapters"]
    my-model = "my_adapter"

smoothcache's own adapters are registered exactly this way, from its own pyproject.
"""

from __future__ import annotations

import pluggy

PROJECT = "smoothcache"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def smoothcache_adapters() -> list:  # type: ignore[empty-body]  # a specification: plugins implement it
    """Return the :class:`~smoothcache_core.ModelAdapter` instances this plugin provides.

    Called once when the registry first loads. Each adapter's ``name`` must be unique across all
    plugins; a name already taken is reported and the later adapter ignored (built-ins load first).
    """
