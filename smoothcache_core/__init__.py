"""smoothcache_core: the modality-agnostic engine (imports torch, safetensors and einops only)."""

from .adapter import (
    UNITS,
    Component,
    ComponentSpec,
    ForwardArgument,
    ModelAdapter,
    StepSource,
    class_names,
    install_on_forward,
    unit_of,
)
from .blocks import BlockAdapter, Streams, at_unit
from .engine import Attachment, CacheHandle, attach, check_components, handle_of, model_fingerprint
from .errors import (
    AdapterError,
    CalibrationError,
    GenerationError,
    ProfileError,
    ScheduleError,
    SmoothCacheError,
    WrapError,
)
from .group import GroupAdapter, ModelGroup
from .macs import MacCount, MacReport, count_macs
from .profile import ErrorProfile
from .recorder import record
from .schedule import CompiledSchedule, Schedule
from .sensitivity import probe
from .tracker import StepTracker

__all__ = [
    "UNITS",
    "AdapterError",
    "Attachment",
    "BlockAdapter",
    "CacheHandle",
    "CalibrationError",
    "CompiledSchedule",
    "Component",
    "ComponentSpec",
    "ErrorProfile",
    "ForwardArgument",
    "GenerationError",
    "GroupAdapter",
    "MacCount",
    "MacReport",
    "ModelAdapter",
    "ModelGroup",
    "ProfileError",
    "Schedule",
    "ScheduleError",
    "SmoothCacheError",
    "StepSource",
    "StepTracker",
    "Streams",
    "WrapError",
    "at_unit",
    "attach",
    "check_components",
    "class_names",
    "count_macs",
    "handle_of",
    "install_on_forward",
    "model_fingerprint",
    "probe",
    "record",
    "unit_of",
]
