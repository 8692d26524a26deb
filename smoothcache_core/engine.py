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

from .adapter import Component, GateFactory, ModelAdapter, Uninstall, install_on_forward, timestep_value, unit_of
from .errors import AdapterError, GenerationError, ScheduleError, WrapError
from .group import ModelGroup
from .macs import MacMeter
from .schedule import CompiledSchedule, Schedule, Weights
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


def first_tensor(value: Any) -> torch.Tensor | None:
    """The tensor a component returned, or the first one inside a tuple/list it returned."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((item for item in value if isinstance(item, torch.Tensor)), None)
    return None


def _input_signature(args: tuple, kwargs: dict) -> tuple | None:
    """Shape, dtype and device of the first tensor argument: a cached value is reused only if they match."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return (value.shape, value.dtype, value.device)
    return None


def _version_of(value: Any) -> int | None:
    """The in-place modification counter of a returned tensor (inference tensors have none)."""
    tensor = first_tensor(value)
    if tensor is None or tensor.is_inference():
        return None
    return tensor._version


#: A tensor argument as seen at one call: the tensor and its in-place modification counter.
_Seen = tuple[torch.Tensor, "int | None"]
#: What a component does at one step: (compute, keep the values for a later step, fill weights).
_Decision = tuple[bool, bool, "Weights | None"]


def _seen(tensor: torch.Tensor) -> _Seen:
    return tensor, _version_of(tensor)


def _same_values(now: torch.Tensor, earlier: _Seen) -> bool:
    """Whether ``now`` holds the values ``earlier`` held when it was seen: the same unmodified
    tensor needs no device read; an equal-looking other tensor is compared (one host read)."""
    tensor, version = earlier
    if now is tensor:
        return _version_of(now) == version
    if (now.shape, now.dtype, now.device) != (tensor.shape, tensor.dtype, tensor.device) or _version_of(tensor) != version:
        return False
    return bool(torch.equal(now, tensor))


def _call_tensors(call: tuple[tuple, dict], timestep: Any) -> tuple[_Seen | None, dict[Any, _Seen]]:
    """The latent (the first tensor argument that is not the timestep) and the other tensor
    arguments by position or name (the conditioning) of one model call."""
    args, kwargs = call
    tensors = [
        (key, value) for key, value in (*enumerate(args), *kwargs.items()) if isinstance(value, torch.Tensor) and value is not timestep
    ]
    if not tensors:
        return None, {}
    return _seen(tensors[0][1]), {key: _seen(value) for key, value in tensors[1:]}


#: diffusers hook modules that cache outputs across steps: two caches on one model would decide apart.
_FOREIGN_CACHE_HOOKS = ("first_block_cache", "faster_cache", "mag_cache", "pyramid_attention_broadcast", "taylorseer_cache", "sea_cache")


def _structure(value: Any) -> Any:
    """Shapes, dtypes and devices of an output (tensors, nested in tuples and lists), without data."""
    if isinstance(value, torch.Tensor):
        return (value.shape, value.dtype, value.device)
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(_structure(item) for item in value))
    return value


def _stand_in(structure: Any) -> Any:
    """Zeros of a recorded :func:`_structure`, as broadcast views of one element (no memory)."""
    if isinstance(structure, tuple) and len(structure) == 3 and isinstance(structure[0], torch.Size):
        shape, dtype, device = structure
        return torch.zeros((), dtype=dtype, device=device).expand(shape)
    if isinstance(structure, tuple) and len(structure) == 2 and isinstance(structure[0], type):
        kind, items = structure
        return kind(_stand_in(item) for item in items)
    return structure


def extrapolate(values: Sequence[Any], weights: Weights, into: Any = None) -> Any:
    """The polynomial fill: ``sum(w * v)`` over the computed ``values`` (oldest first) for every
    tensor of an output (tuples and lists element by element; anything else, or outputs that do not
    line up, is the last value as it is). Written into the tensors of ``into`` (an earlier result)
    where they fit, so a skipped step allocates nothing."""
    last = values[-1]
    if isinstance(last, torch.Tensor):
        if not last.is_floating_point() or any(not isinstance(v, torch.Tensor) or v.shape != last.shape for v in values):
            return last
        recording = torch.is_grad_enabled() and any(v.requires_grad for v in values)
        out = into if _fits(into, last) and not recording else None  # out= cannot record a graph
        # As nested lerps (one fused pass each, the line being one): after k values the result is
        # their weighted mean, and the next lerp moves it toward value k+1 by that value's share of
        # the weight so far. The partial sums are never 0 for a fill (the last weight is not 1).
        result, total = values[0], weights[0]
        for value, weight in zip(values[1:], weights[1:], strict=True):
            total += weight
            share = weight / total
            result = torch.lerp(result, value, share, out=out) if out is not None else torch.lerp(result, value, share)
        return result
    if isinstance(last, (tuple, list)) and all(isinstance(v, (tuple, list)) and len(v) == len(last) for v in values):
        intos = into if isinstance(into, (tuple, list)) and len(into) == len(last) else (None,) * len(last)
        return type(last)(extrapolate(parts, weights, part_into) for *parts, part_into in zip(*values, intos, strict=True))
    return last


def _fits(buffer: Any, like: torch.Tensor) -> bool:
    """Whether ``buffer`` can receive a result shaped like ``like`` in place."""
    return (
        isinstance(buffer, torch.Tensor)
        and buffer.shape == like.shape
        and buffer.dtype == like.dtype
        and buffer.device == like.device
        and buffer.is_inference() == torch.is_inference_mode_enabled()
    )


def foreign_caches(model: nn.Module) -> list[str]:
    """Where another step cache is active on ``model`` (diffusers' cache hooks), by module path."""
    found = ["the model (enable_cache)"] if getattr(model, "is_cache_enabled", False) is True else []
    for path, module in model.named_modules():
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
        self._tracker = StepTracker(self._on_new_generation, count_steps, branches)
        self._uninstalls: list[Uninstall] = []
        self._active = False
        #: The thread whose root call is running (set before, cleared after it returns or raises).
        self._evaluating: int | None = None
        #: Root calls that never returned nor raised to us (``KeyboardInterrupt`` skips torch's
        #: ``always_call`` hooks), found when the same thread calls the model again.
        self.interrupted = 0
        #: The arguments of the root call in progress, for the step-start checks; None when the
        #: evaluation did not pass through the root's hooks (DiT's ``forward_with_cfg``).
        self._call_inputs: tuple[tuple, dict] | None = None
        #: Whether a pipeline's ``set_timesteps`` tells where generations start.
        self._starts_known = False
        #: Calls of every component (and of every follower) in the current evaluation so far.
        self._calls = [0] * len(self.components)
        self._follower_calls: list[list[int]] = [[0] * len(c.followers) for c in self.components]

    def _gate_factory(self, index: int) -> GateFactory:
        raise NotImplementedError

    def _follower_gate_factory(self, index: int, follower: int) -> GateFactory:
        """The gate of a module that only feeds component ``index`` (see :class:`Component`)."""
        return lambda original: original

    def _on_new_generation(self, previous_steps: int) -> None:
        """Called by the tracker when a generation starts (``previous_steps``: the last one's length)."""

    @torch.compiler.disable
    def _before_evaluation(self, _module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Runs before every root call: a call of this thread while its previous one is still marked
        running means that one was interrupted without our hooks seeing it (``KeyboardInterrupt``),
        so the generation it belonged to is over and the next evaluation starts a new one."""
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

    @torch.compiler.disable
    def _after_evaluation(self, _module: nn.Module, _args: tuple, output: Any) -> None:
        """Runs after every root call, also when it raised an ``Exception`` (``output`` is then None):
        an interrupted generation leaves nothing behind, the next evaluation starts a new one."""
        thread = threading.get_ident()
        if self._evaluating != thread:
            return  # another thread's call, refused before it touched anything
        self._evaluating = None
        self._call_inputs = None
        if output is None:
            self.new_generation()

    def _observe(self, timestep: Any, batch: int | None) -> None:
        self.batch = batch
        self._calls[:] = [0] * len(self._calls)
        for follower_calls in self._follower_calls:
            follower_calls[:] = [0] * len(follower_calls)
        if self._tracker.counting:
            self._tracker.count()
        else:
            self._tracker.observe(timestep_value(timestep))

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
            for index, component in enumerate(self.components):
                self._uninstalls.append(component.install(self._gate_factory(index)))
                for follower, module in enumerate(component.followers):
                    self._uninstalls.append(install_on_forward(module)(self._follower_gate_factory(index, follower)))
                for module in component.modules:
                    _GATED_MODULES.add(module)
                    self._uninstalls.append(_refuse_copies(module))
        except BaseException:
            self._uninstall_all()
            raise
        for model in (self.model, *self.roots):
            _ATTACHED_MODELS[model] = self
        self._active = True

    @property
    def roots(self) -> tuple[nn.Module, ...]:
        """The modules whose calls are model evaluations: the model, or a group's members."""
        return tuple(self.model.members.values()) if isinstance(self.model, ModelGroup) else (self.model,)

    def _uninstall_all(self) -> None:
        errors = []
        while self._uninstalls:
            try:
                self._uninstalls.pop()()
            except Exception as error:  # keep undoing the rest, report the first problem after
                errors.append(error)
        for component in self.components:
            for module in component.modules:
                _GATED_MODULES.discard(module)
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

    def _pipeline_starts_generation(self) -> None:
        """A pipeline call begins: the generation before it, if it was neither interrupted nor already
        ended, is judged by its length (a shorter one than the schedule warns), then state is dropped."""
        if self._evaluating == threading.get_ident():  # its last evaluation never returned
            self.interrupted += 1
            self._evaluating = None
            self._tracker.reset()
        else:
            self._tracker.finish()
        self._release()

    def watch_generation_start(self, owner: Any, method: str = "set_timesteps") -> None:
        """Start a new generation whenever ``owner.method`` is called (a pipeline's scheduler sets
        its timesteps once per generation): robust even when a generation was interrupted before
        its timestep changed. Undone by :meth:`unwrap`."""
        original = getattr(owner, method)
        had_own = method in vars(owner)

        @functools.wraps(original)  # pipelines read its signature (Flux: does set_timesteps take sigmas?)
        def starting(*args: Any, **kwargs: Any) -> Any:
            self._pipeline_starts_generation()
            return original(*args, **kwargs)

        setattr(owner, method, starting)
        self._starts_known = True

        def restore() -> None:
            if had_own:
                setattr(owner, method, original)
            else:
                delattr(owner, method)

        self._uninstalls.append(restore)

    def unwrap(self) -> nn.Module:
        """Restore every original forward and hook exactly; return the model."""
        if not self._active:
            return self.model
        try:
            self._uninstall_all()
        finally:
            self._release()
            self._active = False
            for model in (self.model, *self.roots):
                _ATTACHED_MODELS.pop(model, None)
        return self.model

    def _release(self) -> None:
        """Drop whatever tensors the attachment holds."""

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unwrap()


class _Counters:
    """Per-component call counts since the last reset (plain lists: the gates increment them)."""

    def __init__(self, count: int) -> None:
        self.computed = [0] * count
        self.reused = [0] * count
        self.refreshed = [0] * count
        self.macs_skipped = [0] * count

    def clear(self) -> None:
        for counts in (self.computed, self.reused, self.refreshed, self.macs_skipped):
            counts[:] = [0] * len(counts)


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
    ) -> None:
        if sync_free and schedule is None:
            raise WrapError("sync_free=True counts steps against the schedule's length: pass a schedule")
        super().__init__(model, adapter, components, schedule.steps if sync_free and schedule is not None else None, branches)
        self.schedule = schedule
        count = len(self.components)
        self._compiled = schedule.compile(self.components) if schedule else CompiledSchedule.all_compute(count)
        self._counters = _Counters(count)
        self._caches: list[dict[tuple[int, int], tuple[tuple[Any, ...], ...]]] = [{} for _ in range(count)]
        #: Per component and slot: the last linear-fill result, overwritten by the next one (the model
        #: has used it by then), so extrapolating allocates once per run of skipped steps, while the
        #: slot's values are kept for a later step.
        self._fills: list[dict[tuple[int, int], Any]] = [{} for _ in range(count)]
        measured = _MEASURED_MACS.setdefault(model, {})
        self._macs = [measured.setdefault(c.key, {}) for c in self.components]
        self._last_evaluation = [0] * count
        self._meter = MacMeter()
        self._lock = threading.Lock()
        self._owner: int | None = None  # the thread whose generation is in progress
        #: Component calls in progress (eager): non-zero at the next evaluation means one was interrupted.
        self._depth = [0]
        #: Per component: the call slots whose followers had to compute, so the component computes too;
        #: per follower, what it produced at the last compute (to stand in for it), and its calls.
        self._forced: list[set[tuple[int, int]]] = [set() for _ in range(count)]
        self._follower_shapes: list[dict[tuple, Any]] = [{} for _ in range(count)]
        #: Per branch of the current generation's first step: its latent and conditioning arguments.
        self._first_step_calls: list[tuple[_Seen | None, dict[Any, _Seen]] | None] = []
        #: Generations whose start the calls could not tell from another generation's end, and
        #: whether the current one is such a generation.
        self.ambiguous = 0
        self._ambiguous_now = False
        # (compute, keep, fill weights) of every component, per step, decided once here; the gates only read
        # the current step's tuple, so a compiled block sees a handful of constants, never the step number.
        self._idle: tuple[_Decision, ...] = ((True, False, None),) * count
        compute, keep, weights = self._compiled.compute, self._compiled.keep, self._compiled.weights

        def _decision(component: int, step: int) -> _Decision:
            computes, keeps, fill_weights = compute[component], keep[component], weights[component]
            if computes is None or keeps is None or fill_weights is None:
                return (True, False, None)
            return (computes[step], keeps[step], fill_weights[step])

        self._decisions = tuple(tuple(_decision(c, step) for c in range(count)) for step in range(self._compiled.steps or 0))
        self._now: list[_Decision] = list(self._idle)

    def _counted(self, original: Callable[..., Any], args: tuple, kwargs: dict, macs: dict, signature: Any, measure: bool) -> Any:
        """Call a component, measuring its MACs once per input signature when its value is kept,
        and always while another component's measurement runs around it (so nesting is exact)."""
        meter = self._meter
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

    def _settle_compiled_calls(self) -> None:
        """Count the calls of the evaluation that just ran which compiled gates did not count.

        A compiled gate follows the step's decision without touching counters; its calls are counted
        from that decision here (a refresh after a shape change then counts as a reuse).
        """
        evaluation = self._tracker.evaluations
        if evaluation == 0 or self._tracker.step < 0:
            return
        counters = self._counters
        for index, (compute, _keep, _ratio) in enumerate(self._now):
            if self._last_evaluation[index] != evaluation:
                self._last_evaluation[index] = evaluation
                (counters.computed if compute else counters.reused)[index] += 1

    def _generation_open(self) -> bool:
        """Whether a generation is part-way: its cached values belong to the thread running it."""
        steps, step = self._compiled.steps, self._tracker.step
        return steps is not None and 0 <= step < steps - 1

    def _may_evaluate(self, thread: int) -> bool:
        return self._owner in (None, thread) or not self._generation_open()

    def _observe(self, timestep: Any, batch: int | None) -> None:
        with self._lock:
            thread = threading.get_ident()
            if not self._may_evaluate(thread):
                raise GenerationError(
                    "two threads are generating with one wrapped model at once, which would mix their cached "
                    "values; wrap one copy of the model per thread, serialise the generations, or call "
                    "handle.reset() if the other thread's generation was abandoned"
                )
            self._observe_locked(timestep, batch)
            self._owner = thread

    def _observe_locked(self, timestep: Any, batch: int | None) -> None:
        self._settle_compiled_calls()
        if self._depth[0]:  # a component never returned: its evaluation was interrupted
            self.interrupted += 1
            self.new_generation()
        if self._tracker.counting and self._starts_known and self._tracker.counted_to_the_end:
            self._tracker.reset()
            raise self._longer_than_schedule(self._compiled.steps or 0)
        super()._observe(timestep, batch)
        if not self._tracker.counting and not self._starts_known:
            self._check_generation_start(timestep)
        steps = self._compiled.steps
        if steps is None:
            return
        step = self._tracker.step
        if step < steps:
            self._now[:] = self._decisions[step]  # in place: a compiled block guards on its own entries only
        else:
            self._tracker.reset()
            self._now[:] = self._idle
            raise self._longer_than_schedule(steps)

    @staticmethod
    def _longer_than_schedule(steps: int) -> GenerationError:
        return GenerationError(
            f"the schedule has {steps} steps but this generation has run {steps + 1} model evaluations (steps) so "
            f"far; calibrate for the number of steps you sample with, or resample the schedule with "
            f"Schedule.resample(num_steps)"
        )

    def _check_generation_start(self, timestep: Any) -> None:
        """Tell guidance branches from a new generation where the timesteps alone cannot.

        A call that repeats the first timestep is another guidance branch, or the first call of a
        new generation after one abandoned at its first step. Branches of one step get the same
        latent: a call with another latent starts a new generation. When the first step had
        several calls, each branch's first reuse needs its conditioning (the other tensor
        arguments) to be what that branch had at the first step; otherwise its cached values could
        come from another generation, so they are dropped and recomputed (``stats()["ambiguous"]``).
        """
        tracker = self._tracker
        step, branch = tracker.step, tracker.branch
        if step >= 2 or (step == 1 and not self._first_step_calls):
            self._first_step_calls.clear()
            return
        call = _call_tensors(self._call_inputs, timestep) if self._call_inputs is not None else None
        if step == 0:
            first = self._first_step_calls[0] if branch and self._first_step_calls else None
            first_latent, latent = (first[0] if first else None), (call[0] if call else None)
            if first_latent is not None and latent is not None and not _same_values(latent[0], first_latent):
                tracker.restart()
                branch = 0
            if branch == 0:
                self._first_step_calls.clear()
                self._ambiguous_now = False
            self._first_step_calls.append(call)
            return
        if len(self._first_step_calls) < 2 or branch >= len(self._first_step_calls):
            return
        earlier = self._first_step_calls[branch]
        same = (
            call is not None
            and earlier is not None
            and call[1].keys() == earlier[1].keys()
            and all(_same_values(call[1][key][0], earlier[1][key]) for key in call[1])
        )
        if not same:
            for cache in self._caches:
                for slot in [slot for slot in cache if slot[0] == branch]:
                    del cache[slot]
            if not self._ambiguous_now:
                self._ambiguous_now = True
                self.ambiguous += 1

    def _on_new_generation(self, previous_steps: int) -> None:
        steps = self._compiled.steps
        if steps is not None and 0 < previous_steps < steps:
            warnings.warn(
                f"the last generation ran {previous_steps} model evaluations but the schedule has {steps} "
                "steps, so its reuse decisions were made for other steps; use a schedule for "
                f"{previous_steps} steps (Schedule.resample)",
                stacklevel=2,
            )
        for cache in self._caches:
            cache.clear()

    def _gate_factory(self, index: int) -> GateFactory:
        """Build the gate for component ``index``: all state it needs is bound once, here.

        A component called several times in one evaluation (one module serving the image and the
        text stream, or feed-forward chunks) keeps one cached value per call: a value is addressed by
        (branch, call ordinal).
        """
        now, tracker = self._now, self._tracker
        compute_table = self._compiled.compute[index]
        cache = self._caches[index]
        macs = self._macs[index]
        counters = self._counters
        computed, reused, refreshed, skipped = counters.computed, counters.reused, counters.refreshed, counters.macs_skipped
        last_evaluation = self._last_evaluation
        key = self.components[index].key
        meter, counted = self._meter, self._counted
        depth = self._compiled.depth
        running, calls, forced = self._depth, self._calls, self._forced[index]
        fills = self._fills[index]

        def check_reusable(output: Any, version: int | None) -> None:
            if version is not None and _version_of(output) != version:
                raise GenerationError(
                    f"the model modified the output of {key!r} in place after it was cached; "
                    "caching it would return a changed value; this model needs an adapter that "
                    "caches another call"
                )
            if getattr(first_tensor(output), "requires_grad", False) and torch.is_grad_enabled():
                raise GenerationError(
                    f"reusing {key!r} with gradients enabled would backpropagate into an earlier "
                    "step's graph; generate under torch.no_grad() or torch.inference_mode()"
                )

        def make_gate(original: Callable[..., Any]) -> Callable[..., Any]:
            if compute_table is None:

                def always_compute(*args: Any, **kwargs: Any) -> Any:
                    eager = not torch.compiler.is_compiling()
                    if eager:
                        computed[index] += 1
                        last_evaluation[index] = tracker.evaluations
                        running[0] += 1
                    if meter.active:  # runs inside a measured component: keep its MACs apart
                        output = meter.run(lambda: original(*args, **kwargs))[0]
                    else:
                        output = original(*args, **kwargs)
                    if eager:
                        running[0] -= 1
                    return output

                always_compute.keeps_values = False  # type: ignore[attr-defined]  # read by residual installers
                return always_compute

            def gate(*args: Any, **kwargs: Any) -> Any:
                compute, keep, weights = now[index]
                ordinal = calls[index]
                calls[index] = ordinal + 1
                slot = (tracker.branch, ordinal)
                # Compiled code must not read counters or versions (a compiled block would specialise
                # on them): it only follows the decision; its counts are settled from the plan.
                eager = not torch.compiler.is_compiling()
                if eager:
                    last_evaluation[index] = tracker.evaluations
                signature = _input_signature(args, kwargs)
                # cache[slot]: the last ``depth`` computed (signature, output, version), oldest first
                if not compute:
                    entries = cache.get(slot)
                    if entries and entries[-1][0] == signature and slot not in forced:
                        if eager:
                            for _, value, version in entries:
                                check_reusable(value, version)
                            reused[index] += 1
                            skipped[index] += macs.get(signature, 0)
                        if not keep:
                            del cache[slot]
                        output = entries[-1][1]
                        line = entries[-len(weights) :] if weights is not None else ()
                        if weights is None or len(line) != len(weights) or any(entry[0] != signature for entry in line):
                            return output
                        values = [entry[1] for entry in line]
                        if not eager:
                            return extrapolate(values, weights)
                        output = extrapolate(values, weights, fills.pop(slot, None))
                        if keep:
                            fills[slot] = output
                        return output
                    if eager:
                        refreshed[index] += 1
                    forced.discard(slot)
                    cache.pop(slot, None)  # a refresh starts the line anew
                if eager:
                    computed[index] += 1
                    running[0] += 1
                if not keep:
                    cache.pop(slot, None)
                    fills.pop(slot, None)
                output = counted(original, args, kwargs, macs, signature, keep)
                if eager:
                    running[0] -= 1  # not reached when the call raised: the next evaluation sees it
                if keep:
                    entry = (signature, output, _version_of(output) if eager else None)
                    cache[slot] = (cache.get(slot, ()) + (entry,))[-depth:]
                return output

            return gate

        return make_gate

    def _follower_gate_factory(self, index: int, follower: int) -> GateFactory:
        """The gate of a module whose output only feeds component ``index`` (a parallel block's
        attention and MLP input projection feed its output projection).

        Where the component will reuse, the follower returns zeros of the shape it produced when
        the component last computed (a broadcast view: no memory, no work) and its MACs count as
        skipped; where it cannot be sure the component reuses (no cached value, another input
        shape), it computes and makes the component compute too.
        """
        now, tracker, cache = self._now, self._tracker, self._caches[index]
        compute_table = self._compiled.compute[index]
        measured = _MEASURED_MACS[self.model].setdefault(f"{self.components[index].key}#follower{follower}", {})
        skipped, counted = self._counters.macs_skipped, self._counted
        calls, forced, shapes = self._follower_calls[index], self._forced[index], self._follower_shapes[index]

        def make_gate(original: Callable[..., Any]) -> Callable[..., Any]:
            if compute_table is None:
                return original

            def follower_gate(*args: Any, **kwargs: Any) -> Any:
                compute = now[index][0]
                ordinal = calls[follower]
                calls[follower] = ordinal + 1
                slot = (tracker.branch, ordinal)
                signature = _input_signature(args, kwargs)
                if not compute:
                    seen = shapes.get((follower, slot))
                    if seen is not None and seen[0] == signature and slot in cache and slot not in forced:
                        if not torch.compiler.is_compiling():
                            skipped[index] += measured.get(signature, 0)
                        return _stand_in(seen[1])
                    forced.add(slot)
                output = counted(original, args, kwargs, measured, signature, True)
                shapes[(follower, slot)] = (signature, _structure(output))
                return output

            return follower_gate

        return make_gate

    def decision_patterns(self) -> dict[str, int]:
        """Distinct compute/reuse decisions each block sees over a generation (``blocks.3``: 3).

        Under ``torch.compile`` a block is compiled once per pattern it meets (and per input layout),
        whatever the number of steps; with regional compilation all blocks of one class share one
        code object, so ``torch._dynamo.config.cache_size_limit`` (default 8) must be at least the
        sum of these for every pattern to stay compiled (the rest would run eagerly).
        """
        return {block: len(patterns) for block, patterns in self.block_patterns().items()}

    def block_patterns(self) -> dict[str, set[tuple[_Decision, ...]]]:
        """Per block, the distinct decisions of its components over a generation (see :meth:`decision_patterns`)."""
        blocks: dict[str, list[int]] = {}
        for index, component in enumerate(self.components):
            blocks.setdefault(f"{component.block_kind}.{component.index}", []).append(index)
        decisions = self._decisions or (self._idle,)
        return {block: {tuple(step[i] for i in members) for step in decisions} for block, members in blocks.items()}

    def stats(self) -> dict[str, Any]:
        """Counts since the last reset: component calls computed and reused, per kind and per stack.

        ``refreshed`` counts scheduled reuses that computed because the cached value did not fit
        (another batch size, dtype or device) or did not exist; they are included in ``computed``.
        ``macs_skipped`` is what the reused calls would have cost (measured once per input shape).
        ``cache_bytes`` is the memory the cache holds now. ``interrupted`` counts evaluations that
        never finished (an exception or ``KeyboardInterrupt``): each ended its generation. ``ambiguous``
        counts generations whose first step the calls could not tell from the end of an abandoned
        one; their first reuses computed instead (see :meth:`_check_generation_start`).
        """
        self._settle_compiled_calls()
        counters = self._counters
        by_kind: dict[str, dict[str, int]] = {}
        for index, component in enumerate(self.components):
            for group in (component.kind, f"{component.block_kind}.{component.kind}"):
                entry = by_kind.setdefault(group, {"computed": 0, "reused": 0})
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
            "cache_entries": sum(len(cache) for cache in self._caches),
            "cache_bytes": self._cache_bytes(),
            "by_kind": by_kind,
        }

    def _cache_bytes(self) -> int:
        """Bytes of the cached values and of the linear fill's result buffers."""
        held = [output for cache in self._caches for entries in cache.values() for _, output, _ in entries]
        held += [output for fills in self._fills for output in fills.values()]
        tensors = (first_tensor(output) for output in held)
        return sum(tensor.numel() * tensor.element_size() for tensor in tensors if tensor is not None)

    def reset(self) -> None:
        """Start a new generation at the next evaluation, drop cached values and zero the counts."""
        self._tracker.reset(clear_counts=True)
        self._last_evaluation[:] = [0] * len(self._last_evaluation)
        self._release()
        self._counters.clear()
        self.interrupted = self.ambiguous = 0

    def _release(self) -> None:
        for cache, fills in zip(self._caches, self._fills, strict=False):
            cache.clear()
            fills.clear()
        self._now[:] = self._idle
        self._owner = None
        self._depth[0] = 0
        self._first_step_calls.clear()
        for forced, shapes in zip(self._forced, self._follower_shapes, strict=False):
            forced.clear()
            shapes.clear()

    def __enter__(self) -> CacheHandle:
        return self

    def __repr__(self) -> str:
        steps = self.schedule.steps if self.schedule else "all-compute"
        state = "active" if self._active else "unwrapped"
        return (
            f"CacheHandle({type(self.model).__name__}, adapter={self.adapter.name!r}, "
            f"components={len(self.components)}, schedule={steps}, {state})"
        )


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


def attach(model: nn.Module, adapter: ModelAdapter, schedule: Schedule | None, sync_free: bool = False, branches: int = 1) -> CacheHandle:
    """Wrap ``model`` with ``adapter``'s components; nothing is changed if anything fails.

    ``sync_free``: count evaluations instead of reading the timestep (no host synchronisation at
    all); generations then end after the schedule's steps, with ``branches`` calls per step.
    """
    if not isinstance(sync_free, bool):
        raise WrapError(f"sync_free must be True or False, got {sync_free!r:.40}")
    if isinstance(branches, bool) or not isinstance(branches, int) or branches < 1:
        raise WrapError(f"branches must be a positive integer (calls per step: 2 for guidance as two calls), got {branches!r:.40}")
    components = check_components(model, adapter)
    if schedule is not None:
        check_schedule_provenance(schedule, adapter, model)
    handle = CacheHandle(model, adapter, components, schedule, sync_free, branches)
    handle._install()
    logger.debug("wrapped %s with %d components (adapter %s)", type(model).__name__, len(components), adapter.name)
    return handle


def handle_of(model: nn.Module) -> Attachment | None:
    """The active handle (or calibration recorder) attached to ``model``, if any."""
    return _ATTACHED_MODELS.get(model)
