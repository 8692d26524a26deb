"""Exceptions raised by smoothcache. Every message names the problem and the fix."""

from __future__ import annotations


class SmoothCacheError(Exception):
    """Base class of every error smoothcache raises on purpose."""


class AdapterError(SmoothCacheError, LookupError):
    """No adapter, an unknown adapter, or an adapter that does not fit the model."""


class ScheduleError(SmoothCacheError, ValueError):
    """A schedule that is malformed or does not fit the wrapped model."""


class WrapError(SmoothCacheError, RuntimeError):
    """The model cannot be wrapped (already wrapped, not a module, ...); nothing was changed."""


class GenerationError(SmoothCacheError, RuntimeError):
    """A generation does not fit the schedule or the component calls are not what caching assumes."""


class CalibrationError(SmoothCacheError, RuntimeError):
    """Calibration could not produce a profile (no generation, mixed step counts, NaN outputs, ...)."""


class ProfileError(SmoothCacheError, ValueError):
    """An error profile that is corrupt, or profiles that cannot be combined."""
