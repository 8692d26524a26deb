"""Caching whole blocks: a block's residual (what it adds to its input) as one cacheable value.

Caching attention and feed-forward outputs skips ~99 % of a block's MACs but still runs its norms,
modulation, gating and residual adds, which on small or memory-bound models are a quarter of the
wall time (docs/equal-time.md). At the ``"block"`` unit each block of a stack is one component whose
value is its residual, ``output − input`` per stream: where the schedule reuses, the block costs one
addition (its new input plus the kept residual, or the fill's extrapolation of the last residuals).
Where it computes, the block's own output is returned untouched, so nothing changes where nothing
is skipped.

:class:`BlockAdapter` turns any adapter into its block-unit twin: the blocks are found as the stack
entries (``ModuleList``/``ModuleDict`` children) that hold the adapter's components, so every adapter
whose components name their modules gets block caching without code of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .adapter import UNITS, Component, GateFactory, Installer, ModelAdapter, StepSource, Uninstall, install_on_forward, unit_of
from .errors import AdapterError, GenerationError, WrapError
from .group import GroupAdapter

#: A call argument by position or keyword.
_ArgumentKey = int | str


def _tensor_arguments(args: tuple, kwargs: dict) -> list[tuple[_ArgumentKey, torch.Tensor]]:
    return [(key, value) for key, value in (*enumerate(args), *kwargs.items()) if isinstance(value, torch.Tensor)]


def _argument(args: tuple, kwargs: dict, key: _ArgumentKey) -> Any:
    return args[key] if isinstance(key, int) else kwargs[key]


@dataclass(frozen=True)
class _Pairing:
    """How a block's outputs relate to its inputs, found at its first call per input layout.

    ``single``: the block returned one tensor (else a tuple or list of type ``container``).
    ``bases``: per output, the argument it is that argument plus a residual of (None: the output is
    kept as it is). ``through``: the outputs that are an input returned untouched (the text stream
    of a last joint block), given the new input at reused steps. ``order``: the other outputs' order
    in the cached value, largest first, so calibration (which measures a value's first tensor)
    measures the main stream of a two-stream block.
    """

    single: bool
    container: type
    bases: tuple[_ArgumentKey | None, ...]
    through: frozenset[int]
    order: tuple[int, ...]


def _find_pairing(block_name: str, output: Any, args: tuple, kwargs: dict, versions: dict[_ArgumentKey, int]) -> _Pairing:
    """Pair every floating-point output with the input tensor it adds to: the one of the same shape,
    or, where several have it (a two-stream block whose streams have one length), the closest one
    (a block adds a small residual to its own stream): one host read, once per input layout.
    ``versions``: the arguments' in-place modification counters before the call.

    Traced by ``torch.compile`` (no host reads, no version counters there), several inputs of one
    shape pair in argument order and in-place edits go unnoticed: the usual first generation runs
    eagerly (calibration, or a first call before compiling) and is checked."""
    compiling = torch.compiler.is_compiling()
    single = isinstance(output, torch.Tensor)
    outputs = [output] if single else list(output) if isinstance(output, (tuple, list)) else None
    if outputs is None:
        raise AdapterError(
            f"block {block_name!r} returned {type(output).__name__}, not tensors; cache this model's components instead (unit='component')"
        )
    inputs = _tensor_arguments(args, kwargs)
    taken: set[_ArgumentKey] = set()
    bases: list[_ArgumentKey | None] = []
    through: set[int] = set()
    for position, value in enumerate(outputs):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            bases.append(None)
            continue
        candidates = [(key, tensor) for key, tensor in inputs if key not in taken and tensor.shape == value.shape]
        same = [key for key, tensor in candidates if tensor is value]
        if same:
            if not compiling and not value.is_inference() and value._version != versions.get(same[0]):
                raise AdapterError(
                    f"block {block_name!r} returns its input modified in place, so its residual cannot be kept; "
                    "cache this model's components instead (unit='component')"
                )
            through.add(position)
            taken.add(same[0])
            bases.append(same[0])
            continue
        if len(candidates) > 1 and not compiling:
            distances = torch.stack([(value.detach() - tensor.detach()).abs().float().mean() for _, tensor in candidates])
            candidates = [candidates[int(distances.argmin().item())]]
        key = candidates[0][0] if candidates else None
        if key is not None:
            taken.add(key)
        bases.append(key)
    sizes = [value.numel() if isinstance(value, torch.Tensor) else 0 for value in outputs]
    order = tuple(sorted((p for p in range(len(outputs)) if p not in through), key=lambda position: -sizes[position]))
    return _Pairing(single, type(output), tuple(bases), frozenset(through), order)


def _layout(args: tuple, kwargs: dict) -> tuple:
    return tuple((key, tensor.shape) for key, tensor in _tensor_arguments(args, kwargs))


def _residual(output: Any, args: tuple, kwargs: dict, pairing: _Pairing) -> Any:
    outputs = (output,) if pairing.single else tuple(output)
    residuals = tuple(
        outputs[i] if pairing.bases[i] is None else outputs[i] - _argument(args, kwargs, pairing.bases[i])  # type: ignore[arg-type]
        for i in pairing.order
    )
    if pairing.single:
        return residuals[0] if residuals else None
    return residuals


def _output(residual: Any, args: tuple, kwargs: dict, pairing: _Pairing) -> Any:
    residuals = (residual,) if pairing.single else tuple(residual)
    outputs: list[Any] = [None] * len(pairing.bases)
    for i in pairing.through:
        outputs[i] = _argument(args, kwargs, pairing.bases[i])  # type: ignore[arg-type]
    for value, i in zip(residuals, pairing.order, strict=True):
        base = pairing.bases[i]
        outputs[i] = value if base is None else _argument(args, kwargs, base) + value
    return outputs[0] if pairing.single else pairing.container(outputs)


def residual_installer(block: nn.Module, key: str) -> Installer:
    """Install a gate on ``block`` whose value is the block's residual: the gate sees a callable that
    runs the block and returns ``output − input`` per stream; where the gate computed, the block's own
    output is returned (bit-identical), where it reused, the new input plus the residual it returned.
    A gate that never keeps a value (``keeps_values = False``: the schedule computes this block at
    every step) gets the output itself, so an all-compute block costs no subtraction."""
    install_forward = install_on_forward(block)

    def install(make_gate: GateFactory) -> Uninstall:
        def make_forward(original: Callable[..., Any]) -> Callable[..., Any]:
            computed: list[Any] = []  # the output of the call in progress, when the block ran
            pairings: dict[tuple, _Pairing] = {}

            def residual(*args: Any, **kwargs: Any) -> Any:
                if not keeps_values:
                    output = original(*args, **kwargs)
                    computed.append(output)
                    return output
                layout = _layout(args, kwargs)
                pairing = pairings.get(layout)
                tensors = _tensor_arguments(args, kwargs) if pairing is None and not torch.compiler.is_compiling() else []
                versions = {name: tensor._version for name, tensor in tensors if not tensor.is_inference()}
                output = original(*args, **kwargs)
                if pairing is None:
                    pairing = pairings[layout] = _find_pairing(key, output, args, kwargs, versions)
                computed.append(output)
                return _residual(output, args, kwargs, pairing)

            gated = make_gate(residual)
            keeps_values = getattr(gated, "keeps_values", True)

            def forward(*args: Any, **kwargs: Any) -> Any:
                computed.clear()
                value = gated(*args, **kwargs)
                if computed:
                    return computed.pop()
                pairing = pairings.get(_layout(args, kwargs))
                if pairing is None:
                    raise GenerationError(
                        f"block {key!r} reused a residual kept for inputs of other shapes; the model's inputs "
                        "changed within a generation: call handle.reset() between generations of different sizes"
                    )
                return _output(value, args, kwargs, pairing)

            return forward

        return install_forward(make_forward)

    return install


def _stack_entry_paths(model: nn.Module) -> dict[str, tuple[str, int]]:
    """Every child of a ``ModuleList``/``ModuleDict`` by module path: (the stack's path, its index)."""
    entries: dict[str, tuple[str, int]] = {}
    for path, module in model.named_modules():
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            for index, name in enumerate(module._modules):
                entries[f"{path}.{name}" if path else name] = (path, index)
    return entries


def block_components(model: nn.Module, components: list[Component]) -> list[Component]:
    """One residual component per block that holds some of ``components``, in their execution order.

    A component's block is the innermost stack entry above its module (``transformer_blocks.3``
    above ``transformer_blocks.3.attn1``); the block is keyed by its path, of kind ``"block"``. A
    component that is itself a stack entry (a list of adapter attentions whose outputs the model adds
    to its stream) is no block with a residual: it stays the component it is."""
    paths = {id(module): path for path, module in model.named_modules()}
    entries = _stack_entry_paths(model)
    blocks: dict[str, tuple[str, int] | Component] = {}
    for component in components:
        path = paths.get(id(component.module)) if component.module is not None else None
        if path is None:
            raise AdapterError(
                f"component {component.key!r} names no module of the model, so its block cannot be found; "
                "cache this model's components instead (unit='component')"
            )
        if path in entries:
            blocks[path] = component
            continue
        parts = path.split(".")
        block = next((".".join(parts[:end]) for end in range(len(parts) - 1, 0, -1) if ".".join(parts[:end]) in entries), None)
        if block is None:
            raise AdapterError(
                f"component {component.key!r} ({path}) is not inside a stack of blocks (a ModuleList or "
                "ModuleDict); cache this model's components instead (unit='component')"
            )
        blocks.setdefault(block, entries[block])
    return [found if isinstance(found, Component) else _block(model, path, *found) for path, found in blocks.items()]


def _block(model: nn.Module, path: str, stack: str, index: int) -> Component:
    module = model.get_submodule(path)
    return Component(path, "block", "block", stack, index, residual_installer(module, path), module)


class BlockAdapter:
    """``adapter`` at the block unit: its model's blocks, each caching its residual (see module doc).

    Same name and step source as ``adapter``, so schedules check against the family as usual; their
    provenance says ``"unit": "block"``."""

    unit = "block"

    def __init__(self, adapter: ModelAdapter) -> None:
        if unit_of(adapter) == "block":
            raise AdapterError("the adapter already caches blocks")
        self.adapter = adapter
        self.name = adapter.name

    def matches(self, model: nn.Module) -> bool:
        return self.adapter.matches(model)

    def components(self, model: nn.Module) -> list[Component]:
        return block_components(model, list(self.adapter.components(model)))

    def step_source(self, model: nn.Module) -> StepSource:
        return self.adapter.step_source(model)


def at_unit(adapter: ModelAdapter, unit: str) -> ModelAdapter:
    """``adapter`` caching ``unit`` (``"component"`` or ``"block"``)."""
    if unit not in UNITS:
        raise WrapError(f"unit must be one of {UNITS} (what is cached), got {unit!r:.40}")
    if unit_of(adapter) == unit:
        return adapter
    if isinstance(adapter, GroupAdapter):
        return GroupAdapter({name: at_unit(member, unit) for name, member in adapter.adapters.items()})
    if unit == "block":
        return BlockAdapter(adapter)
    return adapter.adapter if isinstance(adapter, BlockAdapter) else adapter
