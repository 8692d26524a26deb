"""Gates: the callables that replace a component's forward (and its followers') while a schedule runs.

A gate asks the current step's :data:`~smoothcache_core.schedule.Decision` whether to compute or to
reuse, and keeps what later steps need in a :class:`Slot`, one per guidance branch and call ordinal.
Everything a gate needs is bound once into its closure (:class:`GateContext` holds the handle's
shared state), so a call costs a handful of Python operations and no tensor read.

Eager calls check what could make a reuse wrong (another input signature, an in-place edit of a kept
value, gradients), count and measure. Traced calls (``torch.compile``) follow the decision alone and
read only state whose shape the decision fixes, so a compiled block is specialised on its decisions
and nothing else: two steps with equal decisions share one graph, whatever the step or branch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import GenerationError
from .fills import extrapolate, lagrange_weights
from .macs import MacMeter
from .schedule import ALWAYS_COMPUTE, Decision


def first_tensor(value: Any) -> torch.Tensor | None:
    """The tensor a component returned, or the first one inside a tuple/list it returned."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((item for item in value if isinstance(item, torch.Tensor)), None)
    return None


def input_signature(args: tuple, kwargs: dict) -> tuple | None:
    """Shape, dtype and device of the first tensor argument: a kept value is reused only if they match."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return (value.shape, value.dtype, value.device)
    return None


def version_of(value: Any) -> int | None:
    """The in-place modification counter of a returned tensor (inference tensors have none)."""
    tensor = first_tensor(value)
    if tensor is None or tensor.is_inference():
        return None
    return tensor._version


def structure_of(value: Any) -> Any:
    """Shapes, dtypes and devices of an output (tensors, nested in tuples and lists), without data."""
    if isinstance(value, torch.Tensor):
        return (value.shape, value.dtype, value.device)
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(structure_of(item) for item in value))
    return value


def stand_in(structure: Any) -> Any:
    """Zeros of a recorded :func:`structure_of`, as broadcast views of one element (no memory)."""
    if isinstance(structure, tuple) and len(structure) == 3 and isinstance(structure[0], torch.Size):
        shape, dtype, device = structure
        return torch.zeros((), dtype=dtype, device=device).expand(shape)
    if isinstance(structure, tuple) and len(structure) == 2 and isinstance(structure[0], type):
        kind, items = structure
        return kind(stand_in(item) for item in items)
    return structure


def _clone_tensors(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_clone_tensors(item) for item in value)
    return value


def trackable(value: Any) -> Any:
    """``value`` with its tensors as normal tensors: under ``inference_mode`` a component returns
    inference tensors, which have no version counter, so an in-place edit of a kept value by the
    model could not be detected; a copy made outside inference mode has one (exact, one copy)."""
    if not torch.is_inference_mode_enabled() or not getattr(first_tensor(value), "is_inference", lambda: False)():
        return value
    with torch.inference_mode(False):
        return _clone_tensors(value)


#: A kept value: (step, input signature, value, version counter, whether the plan computed it).
Entry = tuple[int | None, Any, Any, "int | None", bool]

_graph_task_id: Callable[[], int] = getattr(torch._C, "_current_graph_task_id", lambda: -1)


def in_backward() -> bool:
    """Whether autograd's backward pass is running (gradient checkpointing recomputes forwards there)."""
    return _graph_task_id() != -1


class Slot:
    """What a component keeps for one guidance branch and call ordinal.

    ``line``: the last computed values (oldest first), as many as the fill needs. ``fill``: the last
    fill result, overwritten by the next (the model has used it by then), so a run of skipped steps
    allocates once. ``forced``: a follower had to compute, so the component computes too.
    ``followers``: per follower, the signature and output structure of its last compute.
    """

    __slots__ = ("fill", "followers", "forced", "line")

    def __init__(self, followers: int) -> None:
        self.line: tuple[Entry, ...] = ()
        self.fill: Any = None
        self.forced = False
        self.followers: list[Any] = [None] * followers


class Counters:
    """Per-component call counts since the last reset (plain lists: the gates increment them)."""

    def __init__(self, count: int) -> None:
        self.computed = [0] * count
        self.reused = [0] * count
        self.refreshed = [0] * count
        self.macs_skipped = [0] * count

    def clear(self) -> None:
        for counts in (self.computed, self.reused, self.refreshed, self.macs_skipped):
            counts[:] = [0] * len(counts)


@dataclass
class GateContext:
    """The state a handle shares with its gates, each field a mutable container bound once.

    ``decisions``: every component's decision for the evaluation in progress. ``branches``: per
    guidance branch, per component, its slots; ``current``: a one-item list holding the current
    branch's (swapped per evaluation outside any compiled code, so traced gates never read the
    branch). ``calls``: calls of each component in the
    current evaluation. ``traced``: calls each component made in traced code this evaluation (eager
    code counts for itself), and ``traced_refreshed`` whether one of them computed at a reuse.
    ``depth``: computed values a fill needs. ``running``: eager component calls in progress.
    ``step``: a one-item list holding the tracker's step of the current evaluation.
    """

    count: int
    followers: list[int]
    depth: int
    decisions: list[Decision] = field(init=False)
    branches: list[list[list[Slot]]] = field(init=False)
    current: list[list[list[Slot]]] = field(init=False)
    calls: list[int] = field(init=False)
    follower_calls: list[list[int]] = field(init=False)
    traced: list[int] = field(init=False)
    traced_refreshed: list[bool] = field(init=False)
    running: list[int] = field(default_factory=lambda: [0])
    step: list[int] = field(default_factory=lambda: [0])
    counters: Counters = field(init=False)
    meter: MacMeter = field(default_factory=MacMeter)

    def __post_init__(self) -> None:
        self.decisions = [ALWAYS_COMPUTE] * self.count
        self.branches = [self.new_branch()]
        self.current = [self.branches[0]]
        self.calls = [0] * self.count
        self.follower_calls = [[0] * n for n in self.followers]
        self.traced = [0] * self.count
        self.traced_refreshed = [False] * self.count
        self.counters = Counters(self.count)

    def new_branch(self) -> list[list[Slot]]:
        """One slot per component (more are added where a component is called again in an evaluation)."""
        return [[Slot(n)] for n in self.followers]

    def select_branch(self, branch: int) -> None:
        """Make ``branch``'s slots the ones the gates use until the next evaluation."""
        while len(self.branches) <= branch:
            self.branches.append(self.new_branch())
        self.current[0] = self.branches[branch]

    def clear(self) -> None:
        """Drop every kept value (fresh slots: compiled code reads slots by position, not identity)."""
        self.branches[:] = [self.new_branch()]
        self.current[0] = self.branches[0]

    def held(self) -> list[Any]:
        """Every value the slots keep (computed values and fill buffers)."""
        return [
            value
            for branch in self.branches
            for slots in branch
            for slot in slots
            for value in (*(entry[2] for entry in slot.line), *((slot.fill,) if slot.fill is not None else ()))
        ]

    def entries(self) -> int:
        """How many slots keep values."""
        return sum(1 for branch in self.branches for slots in branch for slot in slots if slot.line)


def _slot(slots: list[Slot], ordinal: int, followers: int) -> Slot:
    if ordinal >= len(slots):  # a component called again in one evaluation: first time only
        slots.append(Slot(followers))
    return slots[ordinal]


def component_gate(
    context: GateContext,
    index: int,
    key: str,
    original: Callable[..., Any],
    macs: dict[Any, int],
    counted: Callable[..., Any],
    computes_always: bool,
) -> Callable[..., Any]:
    """The gate of component ``index`` around ``original`` (see the module doc).

    ``macs``: MACs of one call per input signature, measured once; ``counted(original, args, kwargs,
    macs, signature, measure)`` calls the component, measuring it the first time. ``computes_always``:
    the schedule computes this component at every step, so the gate only counts."""
    decisions, current, calls, traced, running, step_cell = (
        context.decisions,
        context.current,
        context.calls,
        context.traced,
        context.running,
        context.step,
    )
    counters, meter, depth, followers = context.counters, context.meter, context.depth, context.followers[index]
    computed, reused, refreshed, skipped = counters.computed, counters.reused, counters.refreshed, counters.macs_skipped
    traced_refreshed = context.traced_refreshed
    private = getattr(original, "private_output", False)  # a value the model never holds (a block's residual)

    if computes_always:

        def always_compute(*args: Any, **kwargs: Any) -> Any:
            if torch.compiler.is_compiling():
                ordinal = calls[index]
                calls[index] = ordinal + 1
                traced[index] = ordinal + 1
                return original(*args, **kwargs)
            if in_backward():  # recomputed for gradient checkpointing: not another call
                return original(*args, **kwargs)
            computed[index] += 1
            running[0] += 1
            if meter.active:  # runs inside a measured component: keep its MACs apart
                output = meter.run(lambda: original(*args, **kwargs))[0]
            else:
                output = original(*args, **kwargs)
            running[0] -= 1
            return output

        always_compute.keeps_values = False  # type: ignore[attr-defined]  # read by residual installers
        return always_compute

    def check_reusable(line: tuple[Entry, ...]) -> None:
        for _, _, value, version, _ in line:
            if version is not None and version_of(value) != version:
                raise GenerationError(
                    f"the model modified the output of {key!r} in place after it was cached; caching it would "
                    "return a changed value; this model needs an adapter that caches another call"
                )
        if getattr(first_tensor(line[-1][2]), "requires_grad", False) and torch.is_grad_enabled():
            raise GenerationError(
                f"reusing {key!r} with gradients enabled would backpropagate into an earlier step's graph; "
                "generate under torch.no_grad() or torch.inference_mode()"
            )

    def fill_of(slot: Slot, line: tuple[Entry, ...], weights: Any, keep: bool) -> Any:
        """The value a skipped step returns: the last one, or the fill through the kept values at
        the steps they were computed (the plan's weights unless a refresh moved them)."""
        if weights is None or len(line) < 2:
            return line[-1][2]
        used = line[-len(weights) :]
        if len(used) != len(weights) or not all(entry[4] for entry in used):
            if any(entry[0] is None for entry in line):  # kept by compiled code, which keeps no step
                return line[-1][2]
            used = line  # a refresh computed off the plan: the polynomial through the steps really computed
            weights = lagrange_weights([float(entry[0]) for entry in used], step_cell[0])  # type: ignore[arg-type]
        output = extrapolate([entry[2] for entry in used], weights, slot.fill)
        slot.fill = output if keep else None
        return output

    def traced_gate(args: tuple, kwargs: dict, decision: Decision, ordinal: int) -> Any:
        """The gate inside ``torch.compile``: the decision alone, no counter or version read."""
        compute, keep, weights, _ = decision
        slot = _slot(current[0][index], ordinal, followers)
        traced[index] = ordinal + 1
        signature = input_signature(args, kwargs)
        if not compute:
            line = slot.line
            if line and line[-1][1] == signature and not slot.forced:
                if not keep:
                    slot.line = ()
                if weights is None or len(line) < len(weights) or not all(entry[4] for entry in line[-len(weights) :]):
                    return line[-1][2]  # no fill where the values are not the plan's (a refresh)
                return extrapolate([entry[2] for entry in line[-len(weights) :]], weights)
            traced_refreshed[index] = True
            slot.forced = False
            slot.line = ()
        output = original(*args, **kwargs)
        slot.line = (slot.line + ((None, signature, output, None, compute),))[-depth:] if keep else ()
        return output

    def gate(*args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            ordinal = calls[index]
            calls[index] = ordinal + 1
            return traced_gate(args, kwargs, decisions[index], ordinal)
        if in_backward():  # recomputed for gradient checkpointing: not another call
            return original(*args, **kwargs)
        compute, keep, weights, _ = decisions[index]
        ordinal = calls[index]
        calls[index] = ordinal + 1
        slot = _slot(current[0][index], ordinal, followers)
        signature = input_signature(args, kwargs)
        if not compute:
            line = slot.line
            if line and line[-1][1] == signature and not slot.forced:
                check_reusable(line)
                reused[index] += 1
                skipped[index] += macs.get(signature, 0)
                output = fill_of(slot, line, weights, keep)
                if not keep:
                    slot.line = ()
                return output
            refreshed[index] += 1  # no fitting value (another batch or dtype, none kept): compute
            slot.forced = False
            slot.line = ()
            slot.fill = None
        computed[index] += 1
        running[0] += 1
        output = counted(original, args, kwargs, macs, signature, keep)
        running[0] -= 1  # not reached when the call raised: the next evaluation sees it
        if keep:
            output = output if private else trackable(output)
            slot.line = (slot.line + ((step_cell[0], signature, output, version_of(output), compute),))[-depth:]
        else:
            slot.line = ()
            slot.fill = None
        return output

    return gate


def follower_gate(
    context: GateContext,
    index: int,
    follower: int,
    original: Callable[..., Any],
    macs: dict[Any, int],
    counted: Callable[..., Any],
    computes_always: bool,
) -> Callable[..., Any]:
    """The gate of a module whose output only feeds component ``index`` (a parallel block's
    attention and MLP input projection feed its output projection).

    Where the component will reuse, the follower returns zeros of the shape it produced when the
    component last computed (a broadcast view: no memory, no work) and its MACs count as skipped;
    where it cannot be sure the component reuses (no kept value, another input shape), it computes
    and makes the component compute too."""
    if computes_always:
        return original
    decisions, current, calls = context.decisions, context.current, context.follower_calls[index]
    skipped, followers = context.counters.macs_skipped, context.followers[index]

    def gate(*args: Any, **kwargs: Any) -> Any:
        eager = not torch.compiler.is_compiling()
        if eager and in_backward():
            return original(*args, **kwargs)
        ordinal = calls[follower]
        calls[follower] = ordinal + 1
        slot = _slot(current[0][index], ordinal, followers)
        signature = input_signature(args, kwargs)
        if not decisions[index][0]:
            seen = slot.followers[follower]
            if seen is not None and seen[0] == signature and slot.line and not slot.forced:
                if eager:
                    skipped[index] += macs.get(signature, 0)
                return stand_in(seen[1])
            slot.forced = True
        output = counted(original, args, kwargs, macs, signature, True)
        slot.followers[follower] = (signature, structure_of(output))
        return output

    return gate
