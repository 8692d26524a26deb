"""smoothcache.schedules: schedules and error profiles shipped with the package.

Each shipped name has a schedule (``<name>.json``, format v1) and the error profile it was derived
from (``<name>.profile.safetensors``), so another speed is one line away::

    from smoothcache import schedules
    schedule = schedules.load("digits-dit-ddim-50")                        # the shipped trade-off
    faster = schedules.profile("digits-dit-ddim-50").schedule(speedup=2.5)  # or any other

They were made by ``scripts/make_schedules.py`` with our own calibration; each schedule's provenance
records the calibration (workload, sampler, steps, seeds) and the target it was derived for.
"""

from __future__ import annotations

from importlib import resources

from smoothcache_core import ErrorProfile, Schedule, ScheduleError

__all__ = ["load", "names", "profile"]


def names() -> list[str]:
    """The shipped schedule names, sorted."""
    return sorted(entry.name[: -len(".json")] for entry in resources.files(__name__).iterdir() if entry.name.endswith(".json"))


def _file(name: str, suffix: str):
    entry = resources.files(__name__) / f"{name}{suffix}"
    if not entry.is_file():
        raise ScheduleError(f"no shipped schedule named {name!r}; available: {', '.join(names()) or 'none'}")
    return entry


def load(name: str) -> Schedule:
    """The shipped schedule ``name`` (see :func:`names`)."""
    with resources.as_file(_file(name, ".json")) as path:
        return Schedule.load(path)


def profile(name: str) -> ErrorProfile:
    """The error profile the shipped schedule ``name`` was derived from: ``.schedule(speedup=...)`` on it
    gives the same model and sampler other trade-offs."""
    with resources.as_file(_file(name, ".profile.safetensors")) as path:
        return ErrorProfile.load(path)
