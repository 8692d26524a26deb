"""smoothcache_core: the modality-agnostic engine (imports torch, safetensors and einops only)."""

from .adapter import Component, ForwardArgument, ModelAdapter, StepSource, class_names, install_on_forward
from .engine import CacheHandle, attach, handle_of, model_fingerprint
from .errors import AdapterError, GenerationError, ScheduleError, SmoothCacheError, WrapError
from .schedule import CompiledSchedule, Schedule
from .tracker import StepTracker

__all__ = [
    "AdapterError",
    "CacheHandle",
    "CompiledSchedule",
    "Component",
    "ForwardArgument",
    "GenerationError",
    "ModelAdapter",
    "Schedule",
    "ScheduleError",
    "SmoothCacheError",
    "StepSource",
    "StepTracker",
    "WrapError",
    "attach",
    "class_names",
    "handle_of",
    "install_on_forward",
    "model_fingerprint",
]
