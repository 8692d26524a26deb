"""The ModelAdapter protocol: what a model family must tell the engine, and nothing more.

An adapter names the cacheable components of a model (in execution order) and where the timestep of
each model evaluation can be read. The engine does everything else: step tracking, gates, caches,
calibration. Adapters never import the engine's internals; third-party adapters use exactly this.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from .errors import AdapterError

#: What is cached: attention/feed-forward outputs (the paper's method) or whole blocks' residuals
#: (see :mod:`smoothcache_core.blocks`).
UNITS = ("component", "block")

#: A gate factory: takes the original callable and returns the callable that replaces it.
GateFactory = Callable[[Callable[..., Any]], Callable[..., Any]]
#: Undoes an installation exactly.
Uninstall = Callable[[], None]
#: Installs a gate factory at one place in the model and returns how to undo it.
Installer = Callable[[GateFactory], Uninstall]
#: The installer of a given module (``install_on_forward``): gates whatever module sits at a place.
ModuleInstaller = Callable[[nn.Module], Installer]
#: Receives the raw timestep argument (tensor or number) and the batch size of every model evaluation.
Observer = Callable[[Any, "int | None"], None]


def install_on_forward(module: nn.Module) -> Installer:
    """The usual installer: replace ``module.forward`` (an instance attribute, as hooks do) by a gate.

    Uninstalling restores the previous state exactly: a pre-existing instance ``forward`` (set by
    another library before us) is put back, otherwise the instance attribute is removed so the class
    method shows through again. A wrapper added after ours that keeps the forward it replaced as
    ``_old_forward`` (accelerate's hooks: CPU offload, device maps) keeps working: it gets the
    original forward back in place of our gate.
    """

    def install(make_gate: GateFactory) -> Uninstall:
        had_own = "forward" in module.__dict__
        previous = module.__dict__.get("forward")
        original = module.forward
        gate = make_gate(original)
        module.forward = gate

        def uninstall() -> None:
            if module.__dict__.get("forward") is gate:
                if had_own:
                    module.forward = previous  # type: ignore[assignment]  # the instance attribute it had
                else:
                    del module.forward
            elif module.__dict__.get("_old_forward") is gate:
                module._old_forward = original  # type: ignore[assignment]  # accelerate's slot for the wrapped forward
            elif _replace_in_hook_chain(module, gate, original):
                pass  # diffusers' hooks added after ours now call the original forward
            else:
                raise AdapterError(
                    f"{type(module).__name__}.forward was replaced by something else after smoothcache "
                    "wrapped it; remove that wrapper first, then unwrap"
                )

        return uninstall

    return install


def _replace_in_hook_chain(module: nn.Module, gate: Callable[..., Any], original: Callable[..., Any]) -> bool:
    """Where diffusers' ``HookRegistry`` (group offloading, layerwise casting, its caches) wrapped
    ``module.forward`` after our gate, it holds the gate as the forward its innermost hook calls:
    put ``original`` there. Whether the gate was found."""
    references = getattr(getattr(module, "_diffusers_hook", None), "_fn_refs", None) or ()
    found = False
    for reference in references:
        for slot in ("forward", "original_forward"):
            if getattr(reference, slot, None) is gate:
                setattr(reference, slot, original)
                found = True
    return found


@dataclass(frozen=True)
class ComponentSpec:
    """What identifies a cacheable value: enough to resolve schedules and describe profiles.

    key: stable, unique name used in schedules and profiles, e.g. ``blocks.3.attn1``.
    kind: what it computes: ``self_attn``, ``cross_attn``, ``ffn``, ``joint_attn``, ...
    name: the attribute name shared by all blocks (``attn1``); the original SmoothCache files use it.
    block_kind: which stack the block belongs to (``blocks``, ``spatial``, ``temporal``, ``double``).
    index: the block's index inside its stack.
    """

    key: str
    kind: str
    name: str
    block_kind: str
    index: int

    @property
    def spec(self) -> ComponentSpec:
        """The identifying fields alone (no module references)."""
        return ComponentSpec(self.key, self.kind, self.name, self.block_kind, self.index)


@dataclass(frozen=True)
class Component(ComponentSpec):
    """One cacheable sub-module output, at the residual location (before the block's gate).

    install: puts a gate on the call that produces the value (see :func:`install_on_forward`).
    module: the module whose forward is gated, when there is one (used for checks).
    followers: modules whose outputs feed only this component's call, run before it in the same
    evaluation (a parallel block's attention and MLP input projection, whose outputs are joined and
    projected by the component). Where the component reuses, they are skipped too: they return
    zeros of the shape they produced (never read), so the whole branch costs nothing.
    alternates: modules of other denoisers that produce this same value at the steps they run
    instead (a two-expert pipeline's second transformer); ``install`` gates them too.
    install_on: how to gate any module the way ``install`` gates ``module`` (``install_on_forward``
    for a module's output). Given it, the engine gates ``module`` and the alternates through it where
    they sit, and moves the gate to a module put in their place after wrap (a LoRA layer that wraps
    it): the value cached is then what the replacement returns. Without it (values that are not a
    module's output), ``install`` is used as it is.
    """

    install: Installer = field(compare=False, repr=False)
    module: nn.Module | None = field(default=None, compare=False, repr=False)
    followers: tuple[nn.Module, ...] = field(default=(), compare=False, repr=False)
    alternates: tuple[nn.Module, ...] = field(default=(), compare=False, repr=False)
    install_on: ModuleInstaller | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of_module(
        cls,
        module: nn.Module,
        *,
        key: str,
        kind: str,
        name: str,
        block_kind: str,
        index: int,
        followers: Sequence[nn.Module] = (),
    ) -> Component:
        """A component whose value is the output of ``module``'s forward."""
        return cls(key, kind, name, block_kind, index, install_on_forward(module), module, tuple(followers), install_on=install_on_forward)

    @property
    def modules(self) -> tuple[nn.Module, ...]:
        """Every module this component gates: its own (if any), its alternates and its followers."""
        return ((self.module,) if self.module is not None else ()) + self.alternates + self.followers

    @classmethod
    def of_blocks(cls, blocks: Any, parts: Sequence[tuple[str, str]], block_kind: str = "blocks") -> list[Component]:
        """The usual case: for every block, its sub-modules named in ``parts`` (``(attribute, kind)``,
        in execution order) that exist, keyed ``<block_kind>.<index>.<attribute>``."""
        return [
            cls.of_module(module, key=f"{block_kind}.{index}.{name}", kind=kind, name=name, block_kind=block_kind, index=index)
            for index, block in enumerate(blocks)
            for name, kind in parts
            if isinstance(module := getattr(block, name, None), nn.Module)
        ]


def timestep_value(value: Any) -> float:
    """The scalar step signal of one model evaluation's timestep argument.

    A number, or a tensor (or list of tensors) holding one value, gives that value. Per-sample or
    per-token timesteps that differ (conditioning frames kept at t=0 while the others denoise, or
    frames at staggered noise levels in diffusion forcing) give their mean, which moves whenever
    any of them moves: the first element, or the maximum, can stay put while the step changes.
    This is the only host read per model evaluation; gates never read tensors.
    """
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
        value = torch.cat([v.detach().reshape(-1).float() for v in value])
    if isinstance(value, torch.Tensor):
        count = value.numel()
        if count == 0:
            raise AdapterError("the timestep tensor is empty; pass the current timestep to the model")
        if count == 1:
            return float(value.item())
        flat = value.detach().reshape(-1).float()
        return float(torch.where(flat.min() == flat.max(), flat[0], flat.mean()).item())  # one read
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise AdapterError(f"expected the timestep as a tensor or a number, got {type(value).__name__}; pass the current timestep to the model")


def _leading_size(args: tuple, kwargs: dict) -> int | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return int(value.shape[0]) if value.dim() else None
    return None


@dataclass(frozen=True)
class ForwardArgument:
    """The step source: an argument of the forward of ``module_path`` (the root model when empty).

    Use a sub-module that always sees the timestep when the root's hooks do not fire for every
    evaluation (facebookresearch DiT's ``forward_with_cfg`` calls ``self.forward`` directly, but
    always calls ``t_embedder(t)``).
    """

    name: str
    position: int
    module_path: str = ""

    def attach(self, model: nn.Module, observe: Observer) -> Uninstall:
        """Call ``observe(timestep, batch)`` before every call of the module; return how to detach.

        The timestep is passed as the model received it (tensor or number): reading its value is
        the engine's decision (one host read per evaluation, or none when it counts evaluations).

        ``batch`` is the leading size of the call's first tensor argument (the latent batch for a
        root model, the timestep batch for a timestep embedder), used to group errors per sample.
        """
        try:
            module = model.get_submodule(self.module_path)
        except AttributeError as error:
            raise AdapterError(f"the step source {self.module_path!r} is not a sub-module of the model") from error

        @torch.compiler.disable  # reads the timestep on the host: runs eagerly, outside compiled graphs
        def read_timestep(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            if self.name in kwargs:
                value = kwargs[self.name]
            elif len(args) > self.position:
                value = args[self.position]
            else:
                value = None
            if value is None:
                raise AdapterError(f"the model was called without {self.name!r}; smoothcache needs the timestep to know the sampling step")
            observe(value, _leading_size(args, kwargs))

        handle = module.register_forward_pre_hook(read_timestep, with_kwargs=True)
        return handle.remove


@runtime_checkable
class StepSource(Protocol):
    """Where the engine reads the timestep of each model evaluation."""

    def attach(self, model: nn.Module, observe: Observer) -> Uninstall: ...


@runtime_checkable
class ModelAdapter(Protocol):
    """What a model family supplies. Register instances through the ``smoothcache_adapters`` hook.

    An adapter may also set ``fallback = True``: auto-detection then chooses it only when no other
    adapter matches (a generic adapter for a whole library of models).
    """

    #: Registered name, e.g. ``"dit"``.
    name: str

    def matches(self, model: nn.Module) -> bool:
        """Whether this adapter understands ``model`` (used for auto-detection; must not raise)."""
        ...

    def components(self, model: nn.Module) -> list[Component]:
        """The cacheable components of ``model`` in execution order."""
        ...

    def step_source(self, model: nn.Module) -> StepSource:
        """Where the timestep of every model evaluation can be read."""
        ...


def unit_of(adapter: ModelAdapter) -> str:
    """The unit an adapter caches (``"component"`` unless it says otherwise with a ``unit`` attribute)."""
    return str(getattr(adapter, "unit", "component"))


def class_names(model: object) -> set[str]:
    """Names of the model's class and its bases: adapters match by name, never by importing a model."""
    return {klass.__name__ for klass in type(model).__mro__}
