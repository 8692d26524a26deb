"""smoothcache: training-free caching for Diffusion Transformers (SmoothCache, arXiv 2411.10510).

Two lines in a diffusers pipeline::

    import smoothcache
    handle = smoothcache.wrap(pipe.transformer, schedule="dit50.json")

This module is the public face; the engine lives in ``smoothcache_core``, the model families in
``smoothcache.builtin`` (registered like any plugin) and the plugin registry in ``smoothcache.plugins``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

from torch import nn

from smoothcache.plugins import hookimpl, registry
from smoothcache_core import (
    AdapterError,
    CacheHandle,
    CalibrationError,
    Component,
    ErrorProfile,
    ForwardArgument,
    GenerationError,
    GroupAdapter,
    MacReport,
    ModelAdapter,
    ModelGroup,
    ProfileError,
    Schedule,
    ScheduleError,
    SmoothCacheError,
    WrapError,
    at_unit,
    attach,
    check_components,
    count_macs,
    record,
)
from smoothcache_core import (
    probe as probe_steps,
)
from smoothcache_core.grid import GridPlanner
from smoothcache_core.planning import mac_budget
from smoothcache_core.sensitivity import select_schedule as choose_schedule

try:
    __version__ = metadata.version("smoothcache")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AdapterError",
    "CacheHandle",
    "CalibrationError",
    "Component",
    "ErrorProfile",
    "ForwardArgument",
    "GenerationError",
    "MacReport",
    "ModelAdapter",
    "ModelGroup",
    "ProfileError",
    "Schedule",
    "ScheduleError",
    "SmoothCacheError",
    "WrapError",
    "adapters",
    "calibrate",
    "hookimpl",
    "mac_report",
    "probe",
    "register_plugin",
    "resolve_adapter",
    "select_schedule",
    "wrap",
]


def adapters() -> list[str]:
    """Sorted names of every registered adapter (built-in and from installed plugin packages)."""
    return registry().names()


def register_plugin(plugin: Any, name: str | None = None) -> None:
    """Register a plugin (a module or object with ``@smoothcache.hookimpl`` functions) at runtime."""
    registry().register(plugin, name)


#: A pipeline's denoisers, in the order its generation uses them (Wan 2.2 A14B: high noise, then low).
DENOISERS = ("transformer", "transformer_2")


def _uncompiled(model: nn.Module) -> nn.Module:
    """A ``torch.compile``-d module's original: gates go on its sub-modules and the compiled wrapper traces them."""
    return getattr(model, "_orig_mod", model)


def _as_model(model: Any) -> nn.Module:
    """Accept a module, a ``torch.compile``-d module, or a pipeline: its ``transformer``, or a
    :class:`ModelGroup` of ``transformer`` and ``transformer_2`` when it has both."""
    if not isinstance(model, nn.Module):
        denoisers = {name: _uncompiled(module) for name in DENOISERS if isinstance(module := getattr(model, name, None), nn.Module)}
        if len(denoisers) > 1:
            return ModelGroup(denoisers)
        model = getattr(model, "transformer", model)
    if isinstance(model, nn.Module):
        return _uncompiled(model)
    raise WrapError(f"expected a torch.nn.Module (e.g. pipe.transformer), got {type(model).__name__}")


def resolve_adapter(model: nn.Module, adapter: str | ModelAdapter | None) -> ModelAdapter:
    """An adapter by name, an adapter instance, or auto-detection when ``None``; checked to fit the model.

    For a :class:`ModelGroup` each member gets its adapter (by the same name, or detected)."""
    if isinstance(model, ModelGroup) and not isinstance(adapter, GroupAdapter):
        return GroupAdapter({name: resolve_adapter(member, adapter) for name, member in model.members.items()})
    if adapter is None:
        return registry().detect(model)
    if isinstance(adapter, str):
        chosen = registry().get(adapter)
    elif isinstance(adapter, ModelAdapter):
        chosen = adapter
    else:
        raise AdapterError(f"adapter must be a registered name, a ModelAdapter or None, got {type(adapter).__name__}")
    if not chosen.matches(model):
        raise AdapterError(
            f"adapter {chosen.name!r} does not match {type(model).__name__}; "
            "pass adapter=None to auto-detect, or an adapter written for this model"
        )
    return chosen


def _as_schedule(schedule: Schedule | Mapping | str | os.PathLike | None) -> Schedule | None:
    if schedule is None or isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, Mapping):
        return Schedule.from_dict(schedule)
    if isinstance(schedule, (str, os.PathLike)):
        return Schedule.load(schedule)
    raise ScheduleError(f"schedule must be a Schedule, a dict, a path to a .json file or None, got {type(schedule).__name__}")


def wrap(
    model: nn.Module | Any,
    adapter: str | ModelAdapter | None = None,
    schedule: Schedule | Mapping | str | os.PathLike | None = None,
    *,
    sync_free: bool = False,
    branches: int = 1,
    unit: str | None = None,
    profile: ErrorProfile | str | os.PathLike | None = None,
    macs: float | None = None,
    speedup: float | None = None,
    fill: str = "quadratic",
) -> CacheHandle:
    """Cache ``model``'s components across sampling steps as ``schedule`` says.

    ``adapter``: a registered name (see :func:`adapters`), an adapter instance, or ``None`` to
    auto-detect. ``schedule``: a :class:`Schedule`, a dict (format v1 or the original SmoothCache
    JSON), a path to a ``.json`` file, or ``None`` to compute everything (counts only). If anything
    is wrong, an error says what and the model is left exactly as it was.

    Given a pipeline (``wrap(pipe)``), every pipeline call also starts a new generation (its
    scheduler's ``set_timesteps`` is watched), even after an interrupted one.

    ``sync_free=True`` never reads the timestep on the host (no device synchronisation, for CUDA
    graphs or ``torch.cuda.set_sync_debug_mode("error")``): every model evaluation is the next
    step, ``branches`` calls per step (2 for guidance as two calls), and a generation ends after the
    schedule's steps; call ``handle.reset()`` after an interrupted generation.

    ``unit``: what is cached, ``"component"`` (attention and feed-forward outputs) or ``"block"``
    (whole blocks' residuals); by default the unit the schedule was made for.

    ``profile`` (an :class:`ErrorProfile` or its file) with ``macs`` or ``speedup`` instead of a
    schedule: every generation gets a plan for the grid it runs on, whatever its step count and
    sampler (read from the pipeline's scheduler, or given by ``handle.plan_for(timesteps)``), made
    in milliseconds the first time a grid is met (see :func:`smoothcache_core.grid.plan_for_grid`);
    ``fill`` is what its skipped steps return.
    """
    module = _as_model(model)
    parsed = _as_schedule(schedule)
    planner = _planner(profile, parsed, macs, speedup, fill)
    if planner is not None:
        unit = unit or planner.profile.unit
    handle = attach(module, _at_unit(resolve_adapter(module, adapter), unit, parsed), parsed, sync_free, branches, planner)
    _watch_pipeline(model, handle)
    return handle


def _planner(
    profile: ErrorProfile | str | os.PathLike | None, schedule: Schedule | None, macs: float | None, speedup: float | None, fill: str
) -> GridPlanner | None:
    """The per-grid planner of ``wrap(..., profile=...)``, or None for a fixed schedule."""
    if profile is None:
        if macs is not None or speedup is not None:
            raise WrapError("macs= and speedup= are the budget of a profile's plans: pass profile= too, or a schedule made at that budget")
        return None
    if schedule is not None:
        raise WrapError("give a schedule or a profile to plan from, not both")
    if not isinstance(profile, ErrorProfile):
        if not isinstance(profile, (str, os.PathLike)):
            raise WrapError(f"profile must be an ErrorProfile or a path to its .safetensors file, got {type(profile).__name__}")
        profile = ErrorProfile.load(profile)
    if macs is None and speedup is None:
        raise WrapError("a profile plans at a budget: give macs= (fraction of MACs kept) or speedup=")
    return GridPlanner(profile, macs=macs, speedup=speedup, fill=fill)


def _at_unit(adapter: ModelAdapter, unit: str | None, schedule: Schedule | None) -> ModelAdapter:
    """``adapter`` caching ``unit``, or the unit ``schedule`` was made for when ``unit`` is None."""
    if unit is None:
        unit = schedule.unit if schedule is not None else "component"
    return at_unit(adapter, unit)


def _watch_pipeline(model: Any, handle: Any) -> None:
    """Given a pipeline, every call of it starts a new generation (its scheduler sets its timesteps)."""
    if not isinstance(model, nn.Module):
        handle.watch_pipeline(model)


def calibrate(
    model: nn.Module | Any,
    run: Callable[[], Any],
    adapter: str | ModelAdapter | None = None,
    lookahead: int = 3,
    solver: str | None = None,
    on_evaluation: Callable[[], None] | None = None,
    unit: str = "component",
    *,
    sensitivity: bool = False,
    scheduler: Any = None,
) -> ErrorProfile:
    """Measure how much every component's output changes between steps while ``run()`` generates.

    ``run`` performs one or more generations with the model (e.g. ``lambda: pipe(prompts)``);
    every generation adds its samples. Errors are per sample, for lags ``1..lookahead``. The model
    is unwrapped afterwards, also when ``run`` raises or is interrupted. ``solver`` names the
    sampler for the profile's provenance (taken from ``pipe.scheduler`` when a pipeline is given).
    ``on_evaluation`` is called at the start of every model evaluation (a progress bar's update).
    ``unit="block"`` measures whole blocks' residuals instead of attention and feed-forward outputs:
    schedules from that profile skip whole blocks (see :mod:`smoothcache_core.blocks`).

    The profile records where its steps sit on the noise schedule of ``scheduler`` (by default
    ``pipe.scheduler`` when a pipeline is given), so that it plans for any step count and sampler:
    ``profile.schedule(macs=0.5, timesteps=...)``, or ``wrap(pipe, profile=profile, macs=0.5)``.
    ``sensitivity=True`` also measures how much the final sample moves per step, in one more pass
    of ``run()`` (every sample reuses at one step of its own), which those plans weigh steps by:
    ``run`` must then return its samples (e.g. ``pipe(..., output_type="pt").images``, or a list
    of those) and generate the same ones each time (seeded generators).
    """
    module = _as_model(model)
    if scheduler is None:
        scheduler = getattr(model, "scheduler", None)
    if solver is None and scheduler is not None:
        solver = type(scheduler).__name__
    chosen = at_unit(resolve_adapter(module, adapter), unit)
    return record(
        module,
        chosen,
        run,
        lookahead,
        solver,
        on_evaluation,
        lambda r: _watch_pipeline(model, r),
        sensitivity=sensitivity,
        scheduler=scheduler,
    )


def probe(
    model: nn.Module | Any,
    profile: ErrorProfile,
    generate: Callable[[], Any],
    adapter: str | ModelAdapter | None = None,
    probes: int | None = None,
    on_probe: Callable[[], None] | None = None,
    run_lengths: int = 1,
    fill: str = "reuse",
) -> ErrorProfile:
    """``profile`` with the step sensitivity measured: how much the final output moves when every
    component reuses for ``1..run_lengths`` steps from one step.

    With ``run_lengths=1``, ``profile.schedule(..., weighting="sensitivity")`` spends reuse where the
    output tolerates it (``profile.step_weights()`` shows the measured weights); with ``run_lengths=2``
    or more, ``profile.schedule(macs=..., method="runs")`` plans the runs of reuse on these measurements.

    ``generate()`` runs one seeded generation of the profile's steps and returns the output tensor
    (e.g. ``lambda: pipe(..., generator=torch.Generator().manual_seed(0), output_type="pt").images``);
    it runs twice uncached and ``run_lengths`` times per probed step (fewer near the end): every
    interior step, or ``probes`` evenly spaced ones (costs are interpolated between them). ``on_probe``
    is called after each probe generation. ``fill="linear"`` probes runs that extrapolate the last two
    computed values instead of reusing the last one; ``method="runs"`` schedules then fill the same way.
    """
    module = _as_model(model)
    return probe_steps(module, resolve_adapter(module, adapter), profile, generate, probes, on_probe, run_lengths, fill)


def select_schedule(
    model: nn.Module | Any,
    profile: ErrorProfile,
    generate: Callable[[], Any],
    *,
    macs: float | None = None,
    speedup: float | None = None,
    adapter: str | ModelAdapter | None = None,
) -> Schedule:
    """The schedule at ``macs`` (or ``speedup``) whose output moves least on ``generate()`` among the
    plans the profile allows, each measured once (see :func:`smoothcache_core.sensitivity.select_schedule`).

    ``generate()`` runs one seeded generation of the profile's step count and returns its output, as
    for :func:`probe`; use seeds the evaluation will not use.
    """
    budget = mac_budget(macs, speedup)
    module = _as_model(model)
    return choose_schedule(module, resolve_adapter(module, adapter), profile, generate, budget)


def mac_report(
    model: nn.Module | Any,
    schedule: Schedule | Mapping | str | os.PathLike,
    evaluate: Callable[[], Any],
    adapter: str | ModelAdapter | None = None,
) -> MacReport:
    """MACs of ``schedule`` on ``model``: without cache, with it, the fraction and the ideal speedup.

    ``evaluate`` runs one model evaluation (meta-device tensors make this free for large models).
    """
    module = _as_model(model)
    chosen = resolve_adapter(module, adapter)
    parsed = _as_schedule(schedule)
    if parsed is None:
        raise ScheduleError("mac_report needs a schedule: a Schedule, a mapping of 0/1 lists, or a schedule file")
    chosen = _at_unit(chosen, None, parsed)
    components = check_components(module, chosen)
    return count_macs(components, evaluate).for_schedule(parsed.compile(components), components)
