"""Caching whole blocks: a block's residual (what it adds to its input) as one cacheable value.

Caching attention and feed-forward outputs skips ~99 % of a block's MACs but still runs its norms,
modulation, gating and residual adds, which on small or memory-bound models are a quarter of the
wall time (docs/equal-time.md). At the ``"block"`` unit each block of a stack is one component whose
value is its residual, ``output − input`` per stream: where the schedule reuses, the block costs one
addition (its new input plus the kept residual, or the fill's extrapolation of the last residuals).
Where it computes, the block's own output is returned untouched, so nothing changes where nothing
is skipped.

Which input each output adds to (its *stream*) is found once per block: from the adapter where it
declares the block's streams (diffusers registers them for its blocks), else from shapes, and where
two inputs share an output's shape, from an assignment of outputs to inputs by closeness (one host
read, eager only). It holds for every input layout after. A block whose outputs cannot be paired
(an output of no input's shape, an ambiguous pairing, an input edited in place) is refused with an
error, never cached another way.

:class:`BlockAdapter` turns any adapter into its block-unit twin: the blocks are found as the stack
entries (``ModuleList``/``ModuleDict`` children) that hold the adapter's components, so every adapter
whose components name their modules gets block caching without code of its own.
"""

from __future__ import annotations

import collections
import inspect
import itertools
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .adapter import UNITS, Component, GateFactory, Installer, ModelAdapter, StepSource, Uninstall, install_on_forward, unit_of
from .errors import AdapterError, GenerationError, WrapError
from .group import GroupAdapter

#: Per output of a block, the name of the forward argument it adds its residual to (None: the
#: output is not a stream, e.g. a mask it passes on). An adapter may declare these per block.
Streams = tuple["str | None", ...]
#: A call argument by name (or by position, for a forward that takes ``*args``).
_ArgumentKey = int | str
#: How much closer the assignment of outputs to inputs must be than the next best one to be trusted.
PAIRING_MARGIN = 2.0
#: The argument a block with one output continues, where others share its shape (diffusers' name).
OWN_STREAM = "hidden_states"


class _Arguments:
    """A block's call arguments by name, from its forward's signature (positions where it has none)."""

    def __init__(self, block: nn.Module) -> None:
        try:
            parameters = list(inspect.signature(block.forward).parameters.values())
        except (TypeError, ValueError):
            parameters = []
        self.names = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def tensors(self, args: tuple, kwargs: dict) -> list[tuple[_ArgumentKey, torch.Tensor]]:
        by_position = [(self.names[i] if i < len(self.names) else i, value) for i, value in enumerate(args)]
        return [(key, value) for key, value in (*by_position, *kwargs.items()) if isinstance(value, torch.Tensor)]

    def get(self, args: tuple, kwargs: dict, key: _ArgumentKey) -> Any:
        if isinstance(key, str) and key in kwargs:
            return kwargs[key]
        position = self.names.index(key) if isinstance(key, str) and key in self.names else key
        if isinstance(position, int) and position < len(args):
            return args[position]
        raise GenerationError(f"the block was called without its argument {key!r}, which its cached residual is added to")


@dataclass(frozen=True)
class _Output:
    """How a block returns its outputs: one tensor, a tuple or list, a NamedTuple, or a dict."""

    single: bool
    container: type
    keys: tuple[Any, ...] = ()

    @classmethod
    def of(cls, block_name: str, output: Any) -> tuple[_Output, list[Any]]:
        if isinstance(output, torch.Tensor):
            return cls(True, torch.Tensor), [output]
        if type(output) in (dict, collections.OrderedDict):
            return cls(False, type(output), tuple(output.keys())), list(output.values())
        if type(output) in (tuple, list) or (isinstance(output, tuple) and hasattr(output, "_fields")):
            return cls(False, type(output)), list(output)
        raise AdapterError(
            f"block {block_name!r} returned a {type(output).__name__}; caching whole blocks needs tensors, tuples, "
            "lists, NamedTuples or dicts of tensors: cache this model's components instead (unit='component')"
        )

    def rebuild(self, outputs: list[Any]) -> Any:
        if self.single:
            return outputs[0]
        if self.keys:
            return self.container(zip(self.keys, outputs, strict=True))
        if hasattr(self.container, "_fields"):  # a NamedTuple takes its fields one by one
            return self.container(*outputs)
        return self.container(outputs)


@dataclass(frozen=True)
class _Pairing:
    """How a block's outputs relate to its inputs in one input layout.

    ``bases``: per output, the argument it is that argument plus a residual of (None: the output is
    not a floating-point stream and is kept as it is). ``through``: the outputs that are an input
    returned untouched (the text stream of a last joint block), given the new input at reused steps.
    ``order``: the other outputs' order in the cached value, largest first, so calibration (which
    measures a value's first tensor) measures the main stream of a two-stream block.
    """

    output: _Output
    bases: tuple[_ArgumentKey | None, ...]
    through: frozenset[int]
    order: tuple[int, ...]


class _BlockPairing:
    """What one block's outputs pair with, found once and checked for every new input layout; shared
    by the twin blocks of a two-expert group (both gated through one gate factory)."""

    def __init__(self, key: str, streams: Streams | None) -> None:
        self.key = key
        self.streams = streams
        self.bases: tuple[_ArgumentKey | None, ...] | None = None  # found at the first call
        self.layouts: dict[tuple, _Pairing] = {}

    def layout(self, arguments: _Arguments, args: tuple, kwargs: dict) -> tuple:
        return tuple((key, tensor.shape) for key, tensor in arguments.tensors(args, kwargs))

    def find(self, arguments: _Arguments, output: Any, args: tuple, kwargs: dict) -> _Pairing:
        """The pairing of this call's layout (found on the first call, checked on later layouts)."""
        kind, outputs = _Output.of(self.key, output)
        inputs = dict(arguments.tensors(args, kwargs))
        if self.bases is None:
            declared = self._declared(outputs, inputs) if self.streams is not None else None
            self.bases = declared if declared is not None else self._by_shape(outputs, inputs)
        if len(self.bases) != len(outputs):
            raise AdapterError(f"block {self.key!r} returned {len(outputs)} outputs where it returned {len(self.bases)} before")
        through: set[int] = set()
        for position, (value, base) in enumerate(zip(outputs, self.bases, strict=True)):
            if base is None or value is None:  # a stream a last block no longer returns (SD3's text)
                continue
            source = inputs.get(base)
            if source is None or source.shape != value.shape:
                shape = None if source is None else tuple(source.shape)
                raise AdapterError(
                    f"block {self.key!r}: output {position} (shape {tuple(value.shape)}) is the stream of argument "
                    f"{base!r}, which has shape {shape} in this call; a block whose output is not its input plus a "
                    "residual (a block that splits or gathers its sequence, as context parallelism does) cannot be "
                    "cached whole: cache this model's components instead (unit='component'), or apply the parallel "
                    "plan so that it shards outside the blocks"
                )
            if source is value:
                through.add(position)
        sizes = [value.numel() if isinstance(value, torch.Tensor) else 0 for value in outputs]
        order = tuple(sorted((p for p in range(len(outputs)) if p not in through), key=lambda position: -sizes[position]))
        return _Pairing(kind, self.bases, frozenset(through), order)

    def _declared(self, outputs: list[Any], inputs: dict[_ArgumentKey, torch.Tensor]) -> tuple[_ArgumentKey | None, ...] | None:
        """The declared streams, where they fit this call (as many as outputs, each an argument
        passed); None where they do not (the block is then paired by shape, which refuses doubt)."""
        streams = self.streams or ()
        if len(streams) != len(outputs) or any(stream is not None and stream not in inputs for stream in streams):
            return None
        return tuple(stream if isinstance(value, torch.Tensor) else None for stream, value in zip(streams, outputs, strict=True))

    def _by_shape(self, outputs: list[Any], inputs: dict[_ArgumentKey, torch.Tensor]) -> tuple[_ArgumentKey | None, ...]:
        """Pair every floating-point output with an input of its shape; where several outputs and
        inputs share one shape, the assignment of outputs to inputs that moves least (a block adds
        a small residual to its own stream), trusted only if clearly closer than any other."""
        bases: list[_ArgumentKey | None] = [None] * len(outputs)
        groups: dict[torch.Size, list[int]] = {}
        for position, value in enumerate(outputs):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                groups.setdefault(value.shape, []).append(position)
        for shape, positions in groups.items():
            candidates = [key for key, tensor in inputs.items() if tensor.shape == shape]
            if len(candidates) < len(positions):
                raise AdapterError(
                    f"block {self.key!r} returns a tensor of shape {tuple(shape)} that is not one of its inputs' shapes "
                    f"({sorted({tuple(t.shape) for t in inputs.values()})}), so it is no input plus a residual (a block that "
                    "splits or gathers its sequence, as context parallelism does inside a block): cache this model's "
                    "components instead (unit='component')"
                )
            identical = {position: key for position in positions for key in candidates if inputs[key] is outputs[position]}
            if len(candidates) == 1 or len(identical) == len(positions) == len(candidates):
                assignment = [identical.get(position, candidates[0]) for position in positions]
            elif len(positions) == 1 and OWN_STREAM in candidates:
                # one output and the block's own stream among same-shape inputs (HunyuanDiT's skip,
                # Cosmos' positional embedding): diffusers names a block's own stream so
                assignment = [OWN_STREAM]
            else:
                assignment = self._closest(positions, candidates, outputs, inputs)
            for position, key in zip(positions, assignment, strict=True):
                bases[position] = key
        return tuple(bases)

    def _closest(
        self, positions: list[int], candidates: list[_ArgumentKey], outputs: list[Any], inputs: dict[_ArgumentKey, torch.Tensor]
    ) -> list[_ArgumentKey]:
        if torch.compiler.is_compiling():
            raise AdapterError(
                f"block {self.key!r} takes several inputs of one shape and is being compiled, so which output is which "
                "input's stream cannot be measured: run one generation before compiling (the pairing found then holds "
                "for every input layout), or declare the block's streams in its adapter (block_streams)"
            )
        distances = torch.stack(
            [(outputs[p].detach() - inputs[key].detach()).abs().float().mean() for p in positions for key in candidates]
        ).tolist()  # one host read, once per block
        table = {(p, key): distances[i * len(candidates) + j] for i, p in enumerate(positions) for j, key in enumerate(candidates)}
        totals = sorted(
            (sum(table[p, key] for p, key in zip(positions, choice, strict=True)), choice)
            for choice in itertools.permutations(candidates, len(positions))
        )
        (best, choice), second = totals[0], totals[1][0] if len(totals) > 1 else float("inf")
        if not second > PAIRING_MARGIN * best:
            raise AdapterError(
                f"block {self.key!r} takes several inputs of one shape and its outputs are about as close to one input as to "
                "another, so which output continues which stream is ambiguous; declare the block's streams in its adapter "
                "(block_streams) or cache this model's components instead (unit='component')"
            )
        return list(choice)


def _residual(output: Any, arguments: _Arguments, args: tuple, kwargs: dict, pairing: _Pairing) -> Any:
    outputs = [output] if pairing.output.single else list(output.values() if isinstance(output, Mapping) else output)
    residuals = tuple(
        outputs[i] if pairing.bases[i] is None else outputs[i] - arguments.get(args, kwargs, pairing.bases[i])  # type: ignore[arg-type]
        for i in pairing.order
    )
    if pairing.output.single:
        return residuals[0] if residuals else None
    return residuals


def _output(residual: Any, arguments: _Arguments, args: tuple, kwargs: dict, pairing: _Pairing) -> Any:
    residuals = (residual,) if pairing.output.single else tuple(residual)
    outputs: list[Any] = [None] * len(pairing.bases)
    for i in pairing.through:
        outputs[i] = arguments.get(args, kwargs, pairing.bases[i])  # type: ignore[arg-type]
    for value, i in zip(residuals, pairing.order, strict=True):
        base = pairing.bases[i]
        outputs[i] = value if base is None else arguments.get(args, kwargs, base) + value
    return pairing.output.rebuild(outputs)


def _edited_in_place(block_name: str) -> AdapterError:
    return AdapterError(
        f"block {block_name!r} modifies one of its inputs in place, which a reused step would not do, so its "
        "residual cannot be kept; cache this model's components instead (unit='component')"
    )


#: The pairing of each block, by the gate factory that gates it (twin blocks of a group share one).
_PAIRINGS: weakref.WeakKeyDictionary[GateFactory, _BlockPairing] = weakref.WeakKeyDictionary()


def residual_installer(block: nn.Module, key: str, streams: Streams | None = None) -> Installer:
    """Install a gate on ``block`` whose value is the block's residual: the gate sees a callable that
    runs the block and returns ``output − input`` per stream; where the gate computed, the block's own
    output is returned (bit-identical), where it reused, the new input plus the residual it returned.
    A gate that never keeps a value (``keeps_values = False``: the schedule computes this block at
    every step) gets the output itself, so an all-compute block costs no subtraction. ``streams``:
    the block's declared streams (see :data:`Streams`)."""
    install_forward = install_on_forward(block)
    arguments = _Arguments(block)

    def install(make_gate: GateFactory) -> Uninstall:
        found = _PAIRINGS.setdefault(make_gate, _BlockPairing(key, streams))

        def make_forward(original: Callable[..., Any]) -> Callable[..., Any]:
            computed: list[Any] = []  # the output of the call in progress, when the block ran

            def residual(*args: Any, **kwargs: Any) -> Any:
                if not keeps_values:
                    output = original(*args, **kwargs)
                    computed.append(output)
                    return output
                layout = found.layout(arguments, args, kwargs)
                pairing = found.layouts.get(layout)
                eager = not torch.compiler.is_compiling()
                tensors = arguments.tensors(args, kwargs) if eager else []
                versions = [(tensor, tensor._version) for _, tensor in tensors if not tensor.is_inference()]
                copies = [(tensor, tensor.clone()) for _, tensor in tensors if tensor.is_inference()] if pairing is None else []
                output = original(*args, **kwargs)
                if any(tensor._version != version for tensor, version in versions):
                    raise _edited_in_place(key)
                if any(not torch.equal(tensor, copy) for tensor, copy in copies):  # no version counter: once per layout
                    raise _edited_in_place(key)
                if pairing is None:
                    pairing = found.layouts[layout] = found.find(arguments, output, args, kwargs)
                computed.append(output)
                return _residual(output, arguments, args, kwargs, pairing)

            residual.private_output = True  # type: ignore[attr-defined]  # the model never holds a residual
            gated = make_gate(residual)
            keeps_values = getattr(gated, "keeps_values", True)

            def forward(*args: Any, **kwargs: Any) -> Any:
                computed.clear()
                value = gated(*args, **kwargs)
                if computed:
                    return computed.pop()
                pairing = found.layouts.get(found.layout(arguments, args, kwargs))
                if pairing is None:
                    raise GenerationError(
                        f"block {key!r} reused a residual kept for inputs of other shapes; the model's inputs "
                        "changed within a generation: call handle.reset() between generations of different sizes"
                    )
                return _output(value, arguments, args, kwargs, pairing)

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


def blocks_of(
    model: nn.Module, components: list[Component], streams: Callable[[nn.Module], Streams | None] | None = None
) -> list[Component]:
    """One residual component per block that holds some of ``components``, in their execution order.

    A component's block is the innermost stack entry above its module (``transformer_blocks.3``
    above ``transformer_blocks.3.attn1``); the block is keyed by its path, of kind ``"block"``. A
    component that is itself a stack entry (a list of adapter attentions whose outputs the model adds
    to its stream) is no block with a residual: it stays the component it is. ``streams`` gives a
    block's declared streams (see :data:`Streams`), None where it declares none."""
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
    return [found if isinstance(found, Component) else _block(model, path, *found, streams) for path, found in blocks.items()]


def _block(model: nn.Module, path: str, stack: str, index: int, streams: Callable[[nn.Module], Streams | None] | None) -> Component:
    module = model.get_submodule(path)
    declared = streams(module) if streams is not None else None

    def install_on(block: nn.Module) -> Installer:
        return residual_installer(block, path, declared)

    return Component(path, "block", "block", stack, index, install_on(module), module, install_on=install_on)


class BlockAdapter:
    """``adapter`` at the block unit: its model's blocks, each caching its residual (see module doc).

    Same name and step source as ``adapter``, so schedules check against the family as usual; their
    provenance says ``"unit": "block"``. An adapter may declare its blocks' streams with a method
    ``block_streams(block) -> Streams | None``."""

    unit = "block"

    def __init__(self, adapter: ModelAdapter) -> None:
        if unit_of(adapter) == "block":
            raise AdapterError("the adapter already caches blocks")
        self.adapter = adapter
        self.name = adapter.name

    def matches(self, model: nn.Module) -> bool:
        return self.adapter.matches(model)

    def components(self, model: nn.Module) -> list[Component]:
        return blocks_of(model, list(self.adapter.components(model)), getattr(self.adapter, "block_streams", None))

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


__all__ = ["BlockAdapter", "Streams", "at_unit", "blocks_of", "residual_installer"]
