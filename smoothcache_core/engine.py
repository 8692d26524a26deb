"""The engine: gates on every component, one step tracker per model, exact unwrap.

:class:`Attachment` installs a step source and one gate per component atomically and removes them
exactly. :class:`CacheHandle` is the attachment used for inference: each gate asks the compiled
schedule (plain Python booleans indexed by the tracker's step) whether to compute or to reuse, and
keeps at most one value per (component, branch) — two with the linear fill — only while a later
step will use it.
Calibration's recorder (``recorder.py``) is the same attachment with recording gates. Nothing here
reads a tensor: the only host read per model evaluation is the step source's timestep.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .adapter import Component, GateFactory, ModelAdapter, ModuleInstaller, Uninstall, install_on_forward, timestep_value, unit_of
from .errors import AdapterError, GenerationError, ScheduleError, WrapError
from .gates import GateContext, component_gate, first_tensor, follower_gate, version_of
from .grid import KEPT_PLANS, GridPlanner
from .group import ModelGroup
from .schedule import ALWAYS_COMPUTE, CompiledSchedule, Decision, Schedule
from .tracker import StepTracker

logger = logging.getLogger(__name__)

#: Models and component modules currently attached, to refuse attaching them twice.
_ATTACHED_MODELS: weakref.WeakKeyDictionary[nn.Module, Attachment] = weakref.WeakKeyDictionary()
_GATED_MODULES: weakref.WeakSet[nn.Module] = weakref.WeakSet()
#: MACs of one component call per (component key, input signature), per model: measured once, kept
#: across wraps of the same model.
_MEASURED_MACS: weakref.WeakKeyDictionary[nn.Module, dict[str, dict[tuple | None, int]]] = weakref.WeakKeyDictionary()


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the architecture (class, parameter and buffer names and shapes), not the weights."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in model.state_dict(keep_vars=True).items():
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
    return digest.hexdigest()[:16]


#: A tensor argument as seen at one call: the tensor and its in-place modification counter.
_Seen = tuple[torch.Tensor, "int | None"]


def _seen(tensor: torch.Tensor) -> _Seen:
    return tensor, version_of(tensor)


def _same_values(now: torch.Tensor, earlier: _Seen) -> bool:
    """Whether ``now`` holds the values ``earlier`` held when it was seen: the same unmodified
    tensor needs no device read; an equal-looking other tensor is compared (one host read)."""
    tensor, version = earlier
    if now is tensor:
        return version_of(now) == version
    if (now.shape, now.dtype, now.device) != (tensor.shape, tensor.dtype, tensor.device) or version_of(tensor) != version:
        return False
    return bool(torch.equal(now, tensor))


def _call_tensors(call: tuple[tuple, dict], timestep: Any) -> tuple[_Seen | None, dict[Any, _Seen]]:
    """The latent (the first tensor argument that is not the timestep) and the other tensor
    arguments by position or name (the conditioning) of one model call. Floating-point tensors of
    at most one value per sample are left out of the conditioning: they are timesteps or noise
    levels passed beside the step source's (a wrapper's ``t``), which change at every step."""
    args, kwargs = call
    tensors = [
        (key, value) for key, value in (*enumerate(args), *kwargs.items()) if isinstance(value, torch.Tensor) and value is not timestep
    ]
    if not tensors:
        return None, {}
    latent = tensors[0][1]
    samples = latent.shape[0] if latent.dim() else 1
    conditioning = {key: _seen(value) for key, value in tensors[1:] if not (value.is_floating_point() and value.numel() <= samples)}
    return _seen(latent), conditioning


#: diffusers hook modules that cache outputs across steps: two caches on one model would decide apart.
_FOREIGN_CACHE_HOOKS = ("first_block_cache", "faster_cache", "mag_cache", "pyramid_attention_broadcast", "taylorseer_cache", "sea_cache")


def foreign_caches(model: nn.Module) -> list[str]:
    """Where another step cache is active on ``model`` (diffusers' cache hooks, cache-dit's cached
    block units), by module path."""
    found = ["the model (enable_cache)"] if getattr(model, "is_cache_enabled", False) is True else []
    if getattr(model, "_is_cached", False) is True:
        found.append("the model (cache-dit's enable_cache)")
    for path, module in model.named_modules():
        if type(module).__module__.startswith("cache_dit."):
            found.append(f"{path or 'the model'} ({type(module).__name__}, cache-dit)")
        hooks = getattr(getattr(module, "_diffusers_hook", None), "hooks", None) or {}
        for hook in hooks.values():
            if type(hook).__module__.rsplit(".", 1)[-1] in _FOREIGN_CACHE_HOOKS:
                found.append(f"{path or 'the model'} ({type(hook).__name__})")
    return found


def check_components(model: nn.Module, adapter: ModelAdapter) -> list[Component]:
    """The adapter's components for ``model``, checked before anything is installed."""
    if not isinstance(model, nn.Module):
        raise WrapError(f"expected a torch.nn.Module (e.g. pipe.transformer), got {type(model).__name__}")
    members = model.members.values() if isinstance(model, ModelGroup) else ()
    if model in _ATTACHED_MODELS or any(member in _ATTACHED_MODELS for member in members):
        raise WrapError("this model is already wrapped by smoothcache; call unwrap() on its handle first")
    foreign = foreign_caches(model)
    if foreign:
        raise WrapError(
            f"another step cache is active on this model: {', '.join(foreign[:3])}; two caches would make "
            "different decisions for the same step: call transformer.disable_cache() (or remove those hooks) "
            "before smoothcache.wrap, or use only one of them"
        )
    if model.training:
        warnings.warn(
            f"{type(model).__name__} is in training mode (dropout, gradients): reused outputs would be wrong "
            "for training; call model.eval() for inference",
            stacklevel=4,
        )
    components = list(adapter.components(model))
    if not components:
        raise AdapterError(f"adapter {adapter.name!r} found no cacheable components in {type(model).__name__}")
    keys = [c.key for c in components]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise AdapterError(f"adapter {adapter.name!r} gave duplicate component keys {duplicates}")
    modules = [module for c in components for module in c.modules]
    if len({id(m) for m in modules}) != len(modules):
        raise AdapterError(f"adapter {adapter.name!r} lists one module as two components (or as a follower too); each needs its own")
    if any(module in _GATED_MODULES for module in modules):
        raise WrapError("a component of this model is already wrapped (through another model); unwrap that first")
    return components


#: Instance attributes that ``copy`` and ``pickle`` look up before the class's: set while wrapped.
_COPY_METHODS = ("__deepcopy__", "__reduce_ex__")


def _refuse_copies(module: nn.Module) -> Uninstall:
    """Make ``copy.deepcopy``, ``pickle`` and ``torch.save`` of ``module`` (or of anything holding
    it) raise a clear error while it is wrapped: a copy would carry gates bound to the original
    model, and pickle cannot store them at all."""

    def refuse(*_args: Any) -> Any:
        raise WrapError(
            f"this {type(module).__name__} is wrapped by smoothcache: a copy would keep gates bound to the "
            "original model, and pickle cannot store them; call handle.unwrap() first, copy or save, then "
            "wrap each copy (saving weights with state_dict() or save_pretrained() needs no unwrap)"
        )

    for name in _COPY_METHODS:
        object.__setattr__(module, name, refuse)

    def allow() -> None:
        for name in _COPY_METHODS:
            module.__dict__.pop(name, None)

    return allow


class _Site:
    """One gated module: where it sits in the model, so that a module put in its place after wrap
    (a LoRA layer wrapping it, a quantised copy) is gated instead, and how to undo the gate."""

    __slots__ = ("allow_copies", "install_on", "make_gate", "module", "path", "root", "undo")

    def __init__(self, root: nn.Module | None, path: str | None, module: nn.Module, install_on: ModuleInstaller, make_gate: GateFactory):
        self.root, self.path, self.module, self.install_on, self.make_gate = root, path, module, install_on, make_gate
        self.undo = install_on(module)(make_gate)
        self.allow_copies = _refuse_copies(module)
        _GATED_MODULES.add(module)

    def remove(self) -> None:
        self.undo()  # raises if something else replaced the forward on top: the site stays, pending
        self.allow_copies()
        _GATED_MODULES.discard(self.module)

    def follow(self) -> nn.Module | None:
        """Move the gate to the module now at this site's place, if it is another one; return it."""
        if self.root is None or self.path is None:
            return None
        try:
            now = self.root.get_submodule(self.path)
        except AttributeError as error:
            raise GenerationError(
                f"{self.path!r} was removed from the model after smoothcache wrapped it; unwrap before changing the model's structure"
            ) from error
        if now is self.module:
            return None
        if now in _GATED_MODULES:
            raise GenerationError(f"the module now at {self.path!r} is already gated by another handle; unwrap that one first")
        self.remove()
        self.undo = self.install_on(now)(self.make_gate)
        self.allow_copies = _refuse_copies(now)
        _GATED_MODULES.add(now)
        self.module = now
        return now


class Attachment:
    """A step source and one gate per component on a model; installed atomically, removed exactly."""

    def __init__(
        self, model: nn.Module, adapter: ModelAdapter, components: Sequence[Component], count_steps: int | None = None, branches: int = 1
    ) -> None:
        self.model = model
        self.adapter = adapter
        self.components = tuple(components)
        #: Leading size of the step source's first tensor in the current evaluation.
        self.batch: int | None = None
        self._tracker = StepTracker(self._generation_starts, count_steps, branches)
        #: Undo steps, last installed last; a step that fails stays here for the next unwrap.
        self._uninstalls: list[Uninstall] = []
        self._sites: list[_Site] = []
        self._active = False
        #: The thread whose root call is running (set before, cleared after it returns or raises).
        self._evaluating: int | None = None
        #: Root calls that never returned nor raised to us (``KeyboardInterrupt`` skips torch's
        #: ``always_call`` hooks), found when the same thread calls the model again.
        self.interrupted = 0
        #: The arguments of the root call in progress, for the step-start checks; None when the
        #: evaluation did not pass through the root's hooks (DiT's ``forward_with_cfg``).
        self._call_inputs: tuple[tuple, dict] | None = None
        #: The pipeline whose calls start generations (held weakly), and the scheduler watched for it.
        self._pipeline: weakref.ref | None = None
        self._scheduler: Any = None
        self._unwatch: Uninstall = lambda: None
        #: Calls of every component (and of every follower) in the current evaluation so far.
        self._calls = [0] * len(self.components)
        self._follower_calls: list[list[int]] = [[0] * len(c.followers) for c in self.components]

    @property
    def _starts_known(self) -> bool:
        """Whether a pipeline's calls tell where generations start."""
        return self._pipeline is not None

    def _gate_factory(self, index: int) -> GateFactory:
        raise NotImplementedError

    def _follower_gate_factory(self, index: int, follower: int) -> GateFactory:
        """The gate of a module that only feeds component ``index`` (see :class:`Component`)."""
        return lambda original: original

    def _generation_starts(self, previous_steps: int) -> None:
        """The tracker's callback: gates follow modules replaced since the last generation, then
        :meth:`_on_new_generation` runs."""
        for site in self._sites:
            moved = site.follow()
            if moved is not None:
                logger.info("%s was replaced after wrap (%s); its gate moved to the new module", site.path, type(moved).__name__)
        self._on_new_generation(previous_steps)

    def _on_new_generation(self, previous_steps: int) -> None:
        """Called when a generation starts (``previous_steps``: the last one's length)."""

    def _refuse_export(self) -> None:
        """``torch.export`` traces one evaluation: a cache (or a recorder) acting across steps is refused."""
        if not self._acts_across_steps():
            return
        raise GenerationError(
            "torch.export of a model that smoothcache caches would freeze one step's decisions into the graph; "
            "export the model unwrapped (handle.unwrap() first) and wrap the exported module's original, or wrap "
            "with a schedule that computes everything"
        )

    @torch.compiler.disable
    def _before_evaluation(self, _module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Runs before every root call: a call of this thread while its previous one is still marked
        running means that one was interrupted without our hooks seeing it (``KeyboardInterrupt``),
        so the generation it belonged to is over and the next evaluation starts a new one."""
        if torch.compiler.is_exporting():
            self._refuse_export()
            return
        thread = threading.get_ident()
        if self._evaluating == thread:
            self.interrupted += 1
            self.new_generation()
        if self._evaluating is None and self._may_evaluate(thread):
            self._evaluating = thread
        self._call_inputs = (args, kwargs)

    def _may_evaluate(self, thread: int) -> bool:
        """Whether ``thread`` may start an evaluation (no other thread's generation is part-way)."""
        return True

    def _acts_across_steps(self) -> bool:
        """Whether an evaluation's result depends on earlier ones (a cache that reuses, a recorder)."""
        return True

    @torch.compiler.disable
    def _after_evaluation(self, _module: nn.Module, _args: tuple, output: Any) -> None:
        """Runs after every root call, also when it raised an ``Exception`` (``output`` is then None):
        an interrupted generation leaves nothing behind, the next evaluation starts a new one."""
        if torch.compiler.is_exporting():
            return
        thread = threading.get_ident()
        if self._evaluating != thread:
            return  # another thread's call, refused before it touched anything
        self._evaluating = None
        self._call_inputs = None
        if output is None:
            self.new_generation()

    def _observe(self, timestep: Any, batch: int | None) -> None:
        if torch.compiler.is_exporting():
            return
        self._follow_scheduler()
        self.batch = batch
        self._calls[:] = [0] * len(self._calls)
        for follower_calls in self._follower_calls:
            follower_calls[:] = [0] * len(follower_calls)
        if self._tracker.counting:
            self._tracker.count()
        else:
            self._tracker.observe(timestep_value(timestep), batch)

    def _install(self) -> None:
        """Attach the step source and all gates; on any failure undo everything done so far."""
        try:
            for root in self.roots:
                starting = root.register_forward_pre_hook(self._before_evaluation, with_kwargs=True)
                self._uninstalls.append(starting.remove)
            source = self.adapter.step_source(self.model)
            self._uninstalls.append(source.attach(self.model, self._observe))
            for root in self.roots:
                finished = root.register_forward_hook(self._after_evaluation, always_call=True)
                self._uninstalls.append(finished.remove)
            for model in {id(m): m for m in (self.model, *self.roots)}.values():
                self._uninstalls.append(_refuse_copies(model))
            places = {id(module): (root, path) for root in self.roots for path, module in root.named_modules()}
            for index, component in enumerate(self.components):
                self._install_component(index, component, places)
        except BaseException:
            self._uninstall_all()
            raise
        for model in (self.model, *self.roots):
            _ATTACHED_MODELS[model] = self
        self._active = True

    def _install_component(self, index: int, component: Component, places: dict[int, tuple[nn.Module, str]]) -> None:
        """Gate the component's module and its alternates where they sit (so a replacement can be
        followed), or through its own installer when it has no module; then its followers."""
        make_gate = self._gate_factory(index)
        if component.install_on is not None and component.module is not None:
            for module in (component.module, *component.alternates):
                self._add_site(module, component.install_on, make_gate, places)
        else:
            self._uninstalls.append(component.install(make_gate))
            for module in (*((component.module,) if component.module is not None else ()), *component.alternates):
                _GATED_MODULES.add(module)
                self._uninstalls.append(functools.partial(_GATED_MODULES.discard, module))
                self._uninstalls.append(_refuse_copies(module))
        for follower, module in enumerate(component.followers):
            self._add_site(module, install_on_forward, self._follower_gate_factory(index, follower), places)

    def _add_site(self, module: nn.Module, install_on: ModuleInstaller, make_gate: GateFactory, places: dict) -> None:
        root, path = places.get(id(module), (None, None))
        site = _Site(root, path, module, install_on, make_gate)
        self._sites.append(site)
        self._uninstalls.append(site.remove)

    @property
    def roots(self) -> tuple[nn.Module, ...]:
        """The modules whose calls are model evaluations: the model, or a group's members."""
        return tuple(self.model.members.values()) if isinstance(self.model, ModelGroup) else (self.model,)

    def _uninstall_all(self) -> None:
        """Run every undo step, last first; the steps that fail stay, in order, for a later call,
        and the first failure is raised once all the others ran."""
        failed: list[Uninstall] = []
        errors: list[Exception] = []
        while self._uninstalls:
            step = self._uninstalls.pop()
            try:
                step()
            except Exception as error:  # keep undoing the rest, report the first problem after
                failed.append(step)
                errors.append(error)
        self._uninstalls = failed[::-1]
        if errors:
            raise errors[0]

    @property
    def active(self) -> bool:
        return self._active

    def new_generation(self) -> None:
        """End the current generation (finished or abandoned): the next evaluation starts a new one,
        with cached values dropped and counts kept."""
        self._tracker.reset()
        self._release()

    def _pipeline_starts_generation(self, evaluating: bool = False) -> None:
        """A pipeline call begins: the generation before it, if it was neither interrupted nor already
        ended, is judged by its length (a shorter one than the schedule warns), then state is dropped.
        ``evaluating``: found during this thread's evaluation (the call's first), which is not interrupted."""
        if self._evaluating == threading.get_ident() and not evaluating:  # its last evaluation never returned
            self.interrupted += 1
            self._evaluating = None
            self._tracker.reset()
        else:
            self._tracker.finish()
        self._release()

    def watch_pipeline(self, pipeline: Any) -> None:
        """Start a new generation whenever ``pipeline`` starts a call (its scheduler sets its
        timesteps once per call): robust even when a generation was interrupted before its timestep
        changed. A scheduler replaced on the pipeline later (``pipe.scheduler = ...``) is followed
        at the next evaluation. Undone by :meth:`unwrap`."""
        scheduler = getattr(pipeline, "scheduler", None)
        if not callable(getattr(scheduler, "set_timesteps", None)):
            return
        self._pipeline = weakref.ref(pipeline)
        self._watch(scheduler)
        self._uninstalls.append(lambda: self._unwatch())

    def _watch(self, scheduler: Any) -> None:
        original = scheduler.set_timesteps
        had_own = "set_timesteps" in vars(scheduler)

        @functools.wraps(original)  # pipelines read its signature (Flux: does set_timesteps take sigmas?)
        def starting(*args: Any, **kwargs: Any) -> Any:
            self._pipeline_starts_generation()
            return original(*args, **kwargs)

        scheduler.set_timesteps = starting

        def restore() -> None:
            if vars(scheduler).get("set_timesteps") is starting:
                if had_own:
                    scheduler.set_timesteps = original
                else:
                    del scheduler.set_timesteps
            self._unwatch = lambda: None

        self._scheduler, self._unwatch = scheduler, restore

    def _follow_scheduler(self) -> None:
        """Where the pipeline's scheduler was replaced since the last evaluation, watch the new one;
        the call that used it has set its timesteps already, so this evaluation starts a generation."""
        if self._pipeline is None:
            return
        scheduler = getattr(self._pipeline(), "scheduler", None)
        if scheduler is self._scheduler or not callable(getattr(scheduler, "set_timesteps", None)):
            return
        self._unwatch()
        self._watch(scheduler)
        self._pipeline_starts_generation(evaluating=True)

    def unwrap(self) -> nn.Module:
        """Restore every original forward and hook exactly; return the model.

        If something wrapped a gated forward on top of ours after wrap (another library's hook), that
        step fails with an error naming it; every other step is done, and calling unwrap again once
        that wrapper is removed finishes the job. Until then the model counts as wrapped."""
        if not self._active:
            return self.model
        try:
            self._uninstall_all()
        finally:
            self._release()
            if not self._uninstalls:
                self._active = False
                self._pipeline = None
                for model in (self.model, *self.roots):
                    _ATTACHED_MODELS.pop(model, None)
        return self.model

    def _release(self) -> None:
        """Drop whatever tensors the attachment holds."""

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unwrap()


class CacheHandle(Attachment):
    """A wrapped model: statistics, reset, and an exact unwrap (also as a context manager)."""

    def __init__(
        self,
        model: nn.Module,
        adapter: ModelAdapter,
        components: Sequence[Component],
        schedule: Schedule | None,
        sync_free: bool = False,
        branches: int = 1,
        planner: GridPlanner | None = None,
    ) -> None:
        if sync_free and schedule is None:
            raise WrapError("sync_free=True counts steps against the schedule's length: pass a schedule")
        if planner is not None and (schedule is not None or sync_free):
            raise WrapError("a profile plans each generation's schedule from its timesteps: give no schedule, and sync_free=False")
        super().__init__(model, adapter, components, schedule.steps if sync_free and schedule is not None else None, branches)
        self.schedule = schedule
        #: Plans every generation's schedule for its grid, where the handle was made from a profile.
        self.planner = planner
        count = len(self.components)
        self._compiled = schedule.compile(self.components) if schedule else CompiledSchedule.all_compute(count)
        depth = max(self._compiled.depth, planner.depth if planner is not None else 1)
        self._context = GateContext(count, [len(c.followers) for c in self.components], depth)
        self._next_grid: tuple[float, ...] | None = None  # given by plan_for(), for models without a pipeline
        #: Per plan followed so far: its resolution against the components, decisions and grid.
        self._resolved: dict[Schedule | None, tuple[CompiledSchedule, tuple[tuple[Decision, ...], ...], tuple[float, ...] | None]] = {}
        self._unplanned_warned = False
        self._calls = self._context.calls  # the tracker's reset per evaluation is the gates' ordinal reset
        self._follower_calls = self._context.follower_calls
        self._counters = self._context.counters
        measured = _MEASURED_MACS.setdefault(model, {})
        self._macs = [measured.setdefault(c.key, {}) for c in self.components]
        self._lock = threading.RLock()  # a scheduler swap found inside an evaluation starts a generation
        self._owner: int | None = None  # the thread whose generation is in progress
        #: Per branch of the current generation's first step: its latent and conditioning arguments.
        self._first_step_calls: list[tuple[_Seen | None, dict[Any, _Seen]] | None] = []
        #: Generations whose start the calls could not tell from another generation's end, and
        #: whether the current one is such a generation.
        self.ambiguous = 0
        self._ambiguous_now = False
        #: For models without a pipeline that tells where generations start: the timesteps of the
        #: current generation's steps so far; the grids a generation may follow (the schedule's, and
        #: the last finished generation's); the one the current generation started on, if any.
        self._timesteps: list[float] = []
        self._schedule_grid = _grid_of(schedule)
        self._grid: tuple[float, ...] | None = None
        self._started_on: tuple[float, ...] | None = None
        # every component's decision per step, decided once here; the gates only read the current
        # step's, so a compiled block is specialised on a handful of constants, never on the step
        self._decisions = self._compiled.decisions()

    def _gate_factory(self, index: int) -> GateFactory:
        """The gate of component ``index`` (see :func:`smoothcache_core.gates.component_gate`): a
        component called several times per evaluation (one module serving two streams, feed-forward
        chunks) keeps one value per call, addressed by branch and call ordinal."""
        key, macs, always = self.components[index].key, self._macs[index], self._always_computes(index)
        return lambda original: component_gate(self._context, index, key, original, macs, self._counted, always)

    def _follower_gate_factory(self, index: int, follower: int) -> GateFactory:
        measured = _MEASURED_MACS[self.model].setdefault(f"{self.components[index].key}#follower{follower}", {})
        always = self._always_computes(index)
        return lambda original: follower_gate(self._context, index, follower, original, measured, self._counted, always)

    def _always_computes(self, index: int) -> bool:
        """Whether component ``index`` never reuses, so its gate need not look (a planner may reuse any)."""
        return self.planner is None and self._compiled.compute[index] is None

    def _counted(self, original: Callable[..., Any], args: tuple, kwargs: dict, macs: dict, signature: Any, measure: bool) -> Any:
        """Call a component, measuring its MACs once per input signature when its value is kept,
        and always while another component's measurement runs around it (so nesting is exact)."""
        meter = self._context.meter
        if torch.compiler.is_compiling():
            return original(*args, **kwargs)
        if meter.active:
            output, own = meter.run(lambda: original(*args, **kwargs))
            macs.setdefault(signature, own)
            return output
        if not measure or signature in macs:
            return original(*args, **kwargs)
        meter.start()
        try:
            output, macs[signature] = meter.run(lambda: original(*args, **kwargs))
        finally:
            meter.stop()
        return output

    @property
    def compiled(self) -> CompiledSchedule:
        """The schedule resolved against this model's components."""
        return self._compiled

    def _settle_traced_calls(self) -> None:
        """Count the calls that compiled code made in the evaluation that just ran (traced gates
        only mark how many calls ran; the decision says what they did)."""
        context = self._context
        if not any(context.traced):
            return
        counters = self._counters
        for index, calls in enumerate(context.traced):
            if not calls:
                continue
            if context.decisions[index][0] or context.traced_refreshed[index]:
                counters.computed[index] += calls
                counters.refreshed[index] += calls if not context.decisions[index][0] else 0
            else:
                counters.reused[index] += calls
                measured = self._macs[index]
                counters.macs_skipped[index] += calls * next(iter(measured.values())) if len(measured) == 1 else 0
            context.traced[index] = 0
            context.traced_refreshed[index] = False

    def _generation_open(self) -> bool:
        """Whether a generation is part-way: its cached values belong to the thread running it."""
        steps, step = self._compiled.steps, self._tracker.step
        return steps is not None and 0 <= step < steps - 1

    def _may_evaluate(self, thread: int) -> bool:
        return self._owner in (None, thread) or not self._generation_open()

    def _two_threads(self) -> GenerationError:
        return GenerationError(
            "two threads are generating with one wrapped model at once, which would mix their cached "
            "values; wrap one copy of the model per thread, serialise the generations, or call "
            "handle.reset() if the other thread's generation was abandoned"
        )

    def _pipeline_starts_generation(self, evaluating: bool = False) -> None:
        with self._lock:
            if not self._may_evaluate(threading.get_ident()):
                raise self._two_threads()
            super()._pipeline_starts_generation(evaluating)
            self._owner = None

    def _acts_across_steps(self) -> bool:
        return self._compiled.steps is not None

    def _observe(self, timestep: Any, batch: int | None) -> None:
        if torch.compiler.is_exporting():
            self._refuse_export()
            return
        with self._lock:
            thread = threading.get_ident()
            if not self._may_evaluate(thread):
                raise self._two_threads()
            self._observe_locked(timestep, batch)
            self._owner = thread

    def _observe_locked(self, timestep: Any, batch: int | None) -> None:
        self._settle_traced_calls()
        if self._context.running[0]:  # a component never returned: its evaluation was interrupted
            self.interrupted += 1
            self.new_generation()
        if self._tracker.counting and self._starts_known and self._tracker.counted_to_the_end:
            self._tracker.reset()
            raise self._longer_than_schedule(self._compiled.steps or 0)
        super()._observe(timestep, batch)
        tracker = self._tracker
        if not tracker.counting and not self._starts_known:
            self._check_generation_start(timestep)
        if tracker.step == 0 and tracker.branch == 0:
            self._refuse_late_caches()
            if self.planner is not None:
                self._plan_generation(tracker.timestep)
        self._context.step[0] = tracker.step
        self._context.select_branch(tracker.branch)
        steps = self._compiled.steps
        if steps is None:
            return
        step = tracker.step
        if step < steps:
            self._context.decisions[:] = self._decisions[step]  # in place: a compiled block guards on its own entries only
        elif step == steps and self._ambiguous_now and not self._starts_known:
            if tracker.branch == 0:
                warnings.warn(
                    f"this generation has run {steps + 1} evaluations on a schedule of {steps} steps: its first evaluation "
                    "most likely ended an abandoned generation (a loop stopped after one step), which the calls could not "
                    "tell, so the steps where that was in doubt computed. Call handle.new_generation() before each "
                    "sampling loop, or wrap the pipeline",
                    stacklevel=3,
                )
            self._context.decisions[:] = self._idle()
        else:
            tracker.reset()
            self._context.decisions[:] = self._idle()
            raise self._longer_than_schedule(steps)

    def _refuse_late_caches(self) -> None:
        """A step cache enabled on the model after wrap would decide apart from the schedule: refused
        at each generation's first step (one walk over the modules per generation)."""
        if self._compiled.steps is None and self.planner is None:
            return  # nothing is reused: the other cache alone decides
        foreign = foreign_caches(self.model)
        if foreign:
            self._tracker.reset()
            raise GenerationError(
                f"another step cache was enabled on this wrapped model: {', '.join(foreign[:3])}; two caches would make "
                "different decisions for the same step: disable it (transformer.disable_cache(), or cache-dit's "
                "disable_cache) or unwrap smoothcache first"
            )

    def plan_for(self, timesteps: Sequence[float]) -> Schedule:
        """Plan the next generations for ``timesteps`` (one per model evaluation, as the model receives
        them), where no pipeline tells them: a model wrapped without its pipeline. Returns the plan."""
        if self.planner is None:
            raise ScheduleError(
                "this handle follows a fixed schedule; wrap with a profile (wrap(model, profile=..., macs=...)) to plan per grid"
            )
        plan = self.planner.schedule_for(timesteps)
        self._next_grid = tuple(float(t) for t in timesteps)
        return plan

    def _plan_generation(self, first: float | None) -> None:
        """A generation starts at timestep ``first``: follow the plan for its grid, or compute
        everything where the grid is unknown (warned once)."""
        grid = self._grid_from(first)
        if grid is None:
            if not self._unplanned_warned:
                self._unplanned_warned = True
                warnings.warn(
                    f"a generation started at timestep {first} on no grid this handle knows, so it computes every step; wrap the "
                    "pipeline (wrap(pipe, profile=...)) or call handle.plan_for(timesteps) before sampling",
                    stacklevel=4,
                )
            self._use(None)
            return
        self._use(self.planner.schedule_for(grid))  # type: ignore[union-attr]
        if not self._starts_known:
            self._started_on = grid

    def _grid_from(self, first: float | None) -> tuple[float, ...] | None:
        """The grid of the generation starting at ``first``: the one given to :meth:`plan_for`, or
        the tail of the pipeline's scheduler timesteps from ``first`` on (an img2img call starts part-way)."""
        if first is None:
            return None
        if self._next_grid is not None and _close(self._next_grid[0], first):
            return self._next_grid
        pipeline = self._pipeline() if self._pipeline is not None else None
        timesteps = getattr(getattr(pipeline, "scheduler", None), "timesteps", None)
        if timesteps is None or self.planner is None:
            return None
        grid = self.planner.model_timesteps(list(map(float, timesteps)))
        start = next((i for i, t in enumerate(grid) if _close(t, first)), None)
        return tuple(grid[start:]) if start is not None and len(grid) - start >= 2 else None

    def _use(self, schedule: Schedule | None) -> None:
        """Follow ``schedule`` from this generation on (between generations: nothing is cached);
        a plan met before is resolved against the components once, not at every generation."""
        resolved = self._resolved.get(schedule)
        if resolved is None:
            count = len(self.components)
            compiled = schedule.compile(self.components) if schedule is not None else CompiledSchedule.all_compute(count)
            resolved = (compiled, compiled.decisions(), _grid_of(schedule))
            if len(self._resolved) >= KEPT_PLANS:
                self._resolved.clear()
            self._resolved[schedule] = resolved
        self.schedule = schedule
        self._compiled, self._decisions, self._schedule_grid = resolved

    def _idle(self) -> list[Decision]:
        return [ALWAYS_COMPUTE] * len(self.components)

    @staticmethod
    def _longer_than_schedule(steps: int) -> GenerationError:
        return GenerationError(
            f"the schedule has {steps} steps but this generation has run {steps + 1} model evaluations (steps) so "
            f"far; calibrate for the number of steps you sample with, or resample the schedule with "
            f"Schedule.resample(num_steps)"
        )

    def _check_generation_start(self, timestep: Any) -> None:
        """Tell a new generation from the next step of the last one where the timesteps alone cannot
        (a model wrapped without its pipeline, whose calls would say where generations start).

        At the first step, a call that repeats the first timestep is another guidance branch, or the
        first call of a new generation after one abandoned at its first step: branches of one step
        get the same latent, so a call with another latent starts a new generation.

        At the second step, each branch may reuse the first step's values only if its call continues
        the first step's (:func:`_continues`: the very conditioning tensors, or for a model without
        conditioning a latent moved by a step, not replaced), and the step lies on the grid the
        generation started on (the schedule's, or the last finished generation's), if it started on
        one. Otherwise the two calls may belong to two generations (a loop abandoned after one
        step, then another starting lower), so the branch's kept values are dropped and it computes
        (``stats()["ambiguous"]``); if the generation then runs one evaluation longer than the
        schedule, that first evaluation was the abandoned one, and the extra step computes.

        Later, a generation that started on a known grid and leaves it starts a new generation
        there: a loop abandoned part-way, and the next one starting below it. A model evaluated
        around its root's hooks (facebookresearch DiT's ``forward_with_cfg``) shows no call inputs:
        there only the timesteps tell.
        """
        tracker = self._tracker
        step, branch, value = tracker.step, tracker.branch, tracker.timestep
        if branch == 0 and value is not None and step > 0:
            self._timesteps.append(value)
        grid = self._started_on
        if step >= 2 and branch == 0 and grid is not None and value is not None and len(grid) > step and not _close(grid[step], value):
            tracker.restart(previous_steps=step)  # off the grid it started on: the next generation's first step
            step = 0
        if step >= 2 or (step == 1 and branch >= len(self._first_step_calls)):
            return
        call = _call_tensors(self._call_inputs, timestep) if self._call_inputs is not None else None
        if step == 0:
            first = self._first_step_calls[0] if branch and self._first_step_calls else None
            first_latent, latent = (first[0] if first else None), (call[0] if call else None)
            if first_latent is not None and latent is not None and not _same_values(latent[0], first_latent):
                tracker.restart()
                branch = 0
            if branch == 0:
                self._starting(value)
            self._first_step_calls.append(call)
            return
        on_grid = grid is None or (len(grid) > 1 and value is not None and _close(grid[1], value))
        if branch == 0 and not on_grid:
            self._started_on = None
        earlier = self._first_step_calls[branch]
        seen = call is not None and earlier is not None  # not where the model is evaluated around its hooks
        if not on_grid or (seen and not _continues(call, earlier)):  # type: ignore[arg-type]
            self._context.branches[branch : branch + 1] = [self._context.new_branch()] if len(self._context.branches) > branch else []
            if not self._ambiguous_now:
                self._ambiguous_now = True
                self.ambiguous += 1

    def _starting(self, timestep: float | None) -> None:
        """A generation starts at ``timestep``: forget the last one's first calls, find the grid it starts on."""
        self._first_step_calls.clear()
        self._ambiguous_now = False
        self._timesteps = [timestep] if timestep is not None else []
        known = [grid for grid in (self._schedule_grid, self._grid) if grid is not None]
        self._started_on = next((grid for grid in known if timestep is not None and _close(grid[0], timestep)), None)

    def _on_new_generation(self, previous_steps: int) -> None:
        steps = self._compiled.steps
        timesteps, ran = self._timesteps, previous_steps
        if self._ambiguous_now and steps is not None and ran == steps + 1:
            timesteps, ran = timesteps[1:], ran - 1  # its first evaluation ended an abandoned generation
        if steps is not None and 0 < ran < steps and self.planner is None:
            warnings.warn(
                f"the last generation ran {ran} model evaluations but the schedule has {steps} "
                "steps, so its reuse decisions were made for other steps; use a schedule for "
                f"{ran} steps (Schedule.resample)",
                stacklevel=2,
            )
        if ran >= 2 and len(timesteps) == ran:
            self._grid = tuple(timesteps)
        self._timesteps = []
        self._context.clear()

    def decision_patterns(self) -> dict[str, int]:
        """Distinct compute/reuse decisions each block sees over a generation (``blocks.3``: 3).

        Under ``torch.compile`` a block is compiled once per pattern it meets (and per input layout),
        whatever the number of steps or guidance branches; with regional compilation all blocks of
        one class share one code object, so ``torch._dynamo.config.cache_size_limit`` (default 8)
        must be at least the sum of these for every pattern to stay compiled (the rest would run
        eagerly).
        """
        return {block: len(patterns) for block, patterns in self.block_patterns().items()}

    def block_patterns(self) -> dict[str, set[tuple[Decision, ...]]]:
        """Per block, the distinct decisions of its components over a generation (see :meth:`decision_patterns`)."""
        blocks: dict[str, list[int]] = {}
        for index, component in enumerate(self.components):
            blocks.setdefault(f"{component.block_kind}.{component.index}", []).append(index)
        decisions = self._decisions or (tuple(self._idle()),)
        return {block: {tuple(step[i] for i in members) for step in decisions} for block, members in blocks.items()}

    def stats(self) -> dict[str, Any]:
        """Counts since the last reset: component calls computed and reused, per kind and per stack.

        Only calls that ran count (a component an evaluation never called counts nothing; a forward
        recomputed for gradient checkpointing is not another call). ``refreshed`` counts scheduled
        reuses that computed because the cached value did not fit (another batch size, dtype or
        device) or did not exist; they are included in ``computed``. ``macs_skipped`` is what the
        reused calls would have cost (measured once per input shape). ``cache_bytes`` is the memory
        the cache holds now. ``interrupted`` counts evaluations that never finished (an exception or
        ``KeyboardInterrupt``): each ended its generation. ``ambiguous`` counts generations whose
        first step the calls could not tell from the end of an abandoned one; their first reuses
        computed instead (see :meth:`_check_generation_start`). ``planned_grids``: the grids a handle
        made from a profile has planned for so far (one plan per step count and sampler met).
        """
        self._settle_traced_calls()
        counters = self._counters
        by_kind: dict[str, dict[str, int]] = {}
        by_stack: dict[str, dict[str, int]] = {}
        for index, component in enumerate(self.components):
            for table, group in ((by_kind, component.kind), (by_stack, f"{component.block_kind}.{component.kind}")):
                entry = table.setdefault(group, {"computed": 0, "reused": 0})
                entry["computed"] += counters.computed[index]
                entry["reused"] += counters.reused[index]
        return {
            "computed": sum(counters.computed),
            "reused": sum(counters.reused),
            "refreshed": sum(counters.refreshed),
            "macs_skipped": sum(counters.macs_skipped),
            "evaluations": self._tracker.evaluations,
            "generations": self._tracker.generations,
            "interrupted": self.interrupted,
            "ambiguous": self.ambiguous,
            "cache_entries": self._context.entries(),
            "cache_bytes": self._cache_bytes(),
            "by_kind": by_kind,
            "by_stack": by_stack,
            "planned_grids": len(self.planner.plans) if self.planner is not None else 0,
        }

    def _cache_bytes(self) -> int:
        """Bytes of the cached values and of the fills' result buffers."""
        tensors = (first_tensor(value) for value in self._context.held())
        return sum(tensor.numel() * tensor.element_size() for tensor in tensors if tensor is not None)

    def reset(self) -> None:
        """Start a new generation at the next evaluation, drop cached values and zero the counts."""
        self._tracker.reset(clear_counts=True)
        self._release()
        self._counters.clear()
        self.interrupted = self.ambiguous = 0

    def _release(self) -> None:
        context = self._context
        context.clear()
        context.decisions[:] = self._idle()
        context.traced[:] = [0] * len(context.traced)
        context.running[0] = 0
        self._owner = None
        self._first_step_calls.clear()

    def __enter__(self) -> CacheHandle:
        return self

    def __repr__(self) -> str:
        steps = self.schedule.steps if self.schedule else "all-compute"
        state = "active" if self._active else "unwrapped"
        return (
            f"CacheHandle({type(self.model).__name__}, adapter={self.adapter.name!r}, "
            f"components={len(self.components)}, schedule={steps}, {state})"
        )


def _grid_of(schedule: Schedule | None) -> tuple[float, ...] | None:
    """The timesteps a schedule was planned for (its provenance ``timesteps``), if it records them."""
    timesteps = schedule.provenance.get("timesteps") if schedule is not None else None
    if not isinstance(timesteps, (list, tuple)) or schedule is None or len(timesteps) != schedule.steps:
        return None
    try:
        return tuple(float(value) for value in timesteps)
    except (TypeError, ValueError):
        return None


#: How far (relative L1) a model without conditioning may see its latent move from the first step
#: to the second for the two calls to be one generation's: a sampler's step moves it by a fraction,
#: fresh noise of another generation by about its own size (sqrt 2 of it).
CONTINUATION_DISTANCE = 0.5


def _continues(call: tuple[_Seen | None, dict[Any, _Seen]], earlier: tuple[_Seen | None, dict[Any, _Seen]]) -> bool:
    """Whether a second step's call continues the first step's call of its branch.

    With conditioning, it must be the very tensors the first step got, unchanged (no host read):
    equal values are not enough, as a generation started anew with the same prompt, below where an
    abandoned one stopped (img2img), gets equal conditioning. Without any, the latent tells (one
    host read): it moved by a sampler's step, not to other noise; where it barely moved, a value
    reused from the other generation would be as close as a reuse within one."""
    (latent, conditioning), (first_latent, first_conditioning) = call, earlier
    if first_conditioning or conditioning:
        return conditioning.keys() == first_conditioning.keys() and all(
            conditioning[key][0] is tensor and conditioning[key][1] == version for key, (tensor, version) in first_conditioning.items()
        )
    if latent is None or first_latent is None or latent[0].shape != first_latent[0].shape:
        return False
    now, before = latent[0].detach().float(), first_latent[0].detach().float()
    return bool((now - before).abs().sum() < CONTINUATION_DISTANCE * before.abs().sum())


def _close(a: float, b: float | None) -> bool:
    """Whether two timesteps are the same (as read from a float tensor and from a stored grid)."""
    return b is not None and abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def check_schedule_provenance(schedule: Schedule, adapter: ModelAdapter, model: nn.Module) -> None:
    """Refuse a schedule made for another adapter; warn when it was made for another model."""
    made_for = schedule.provenance.get("adapter")
    if made_for is not None and made_for != adapter.name:
        raise ScheduleError(
            f"the schedule was made for adapter {made_for!r} but the model is wrapped with {adapter.name!r}; "
            "calibrate this model or pass the matching adapter"
        )
    unit, wrapped = schedule.provenance.get("unit"), unit_of(adapter)
    if unit is not None and unit != wrapped:
        raise ScheduleError(
            f"the schedule caches {unit}s (provenance unit {unit!r}) but the model is wrapped to cache {wrapped}s; "
            f"wrap with unit={unit!r} (smoothcache.wrap takes the unit from the schedule when unit is not given)"
        )
    model_class = schedule.provenance.get("model_class")
    if model_class is not None and model_class != type(model).__name__:
        warnings.warn(
            f"the schedule was calibrated on {model_class}, not {type(model).__name__}; its decisions may not fit",
            stacklevel=3,
        )
    else:
        fingerprint = schedule.provenance.get("config_fingerprint")
        if fingerprint is not None and fingerprint != model_fingerprint(model):
            warnings.warn(
                "the schedule was calibrated on a model of another configuration (config fingerprint differs); "
                "its decisions may not fit this model",
                stacklevel=3,
            )


def attach(
    model: nn.Module,
    adapter: ModelAdapter,
    schedule: Schedule | None,
    sync_free: bool = False,
    branches: int = 1,
    planner: GridPlanner | None = None,
) -> CacheHandle:
    """Wrap ``model`` with ``adapter``'s components; nothing is changed if anything fails.

    ``sync_free``: count evaluations instead of reading the timestep (no host synchronisation at
    all); generations then end after the schedule's steps, with ``branches`` calls per step.
    ``planner``: instead of one schedule, plan each generation's for the grid it runs on.
    """
    if not isinstance(sync_free, bool):
        raise WrapError(f"sync_free must be True or False, got {sync_free!r:.40}")
    if isinstance(branches, bool) or not isinstance(branches, int) or branches < 1:
        raise WrapError(f"branches must be a positive integer (calls per step: 2 for guidance as two calls), got {branches!r:.40}")
    components = check_components(model, adapter)
    if schedule is not None:
        check_schedule_provenance(schedule, adapter, model)
    if planner is not None:
        check_schedule_provenance(planner.own_plan, adapter, model)
        planner.own_plan.compile(components)
    handle = CacheHandle(model, adapter, components, schedule, sync_free, branches, planner)
    handle._install()
    logger.debug("wrapped %s with %d components (adapter %s)", type(model).__name__, len(components), adapter.name)
    return handle


def handle_of(model: nn.Module) -> Attachment | None:
    """The active handle (or calibration recorder) attached to ``model``, if any."""
    return _ATTACHED_MODELS.get(model)
