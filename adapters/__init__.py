"""smoothcache.builtin: smoothcache's own adapters, one module per model family.

Each module registers through the ``smoothcache.adapters`` entry-point group exactly as a third
party's package would (see ``pyproject.toml``); nothing here is imported by the registry directly.
"""
