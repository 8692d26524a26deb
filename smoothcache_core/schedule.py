"""Schedules: the static 0/1 table (1 = compute and refresh the cache, 0 = reuse) plus provenance.

Format v1 (JSON)::

    {"format": "smoothcache.schedule", "version": 1,
     "components": {"attn1": [1, 0, 1, ...], "blocks.3.ff": [1, 1, 0, ...]},
     "fill": "linear",
     "provenance": {"adapter": "dit", "model_class": "DiTTransformer2DModel", "steps": 50, ...}}

``fill`` says what a skipped step returns: ``"reuse"`` (the default, and what a file without the
field means) the last computed value, as the paper; ``"linear"`` the line through the last two
computed values, extended to this step; ``"quadratic"`` the parabola through the last three (the
first skipped steps, with fewer values computed, take the highest order they have: reuse, then the line).

The original SmoothCache files (``{"attn": [...], "mlp": [...]}``, per-block ``"attn-3"``) load
unchanged. A table key is resolved against the wrapped model's components, most specific first:
the component key (``blocks.3.attn1``), ``<type>-<block index>`` (``attn1-3``, the original
per-block form), the type (``attn1``; ``spatial.attn`` when the model has several block stacks),
and the bare attribute name (``attn``, every stack). Components no key resolves to always compute.
"""

from __future__ import annotations

import json
import math
import operator
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .adapter import ComponentSpec
from .errors import ScheduleError
from .files import read_limited, write_atomic
from .fills import Weights, lagrange_weights

FORMAT = "smoothcache.schedule"
VERSION = 1
#: The largest schedule file read (8 MiB: 1,000 steps for 1,000 per-block lists fit in 6 MiB); a
#: larger file is refused before it is parsed, so reading a schedule needs bounded memory.
MAX_FILE_BYTES = 8 * 1024 * 1024
#: What a skipped step returns: the last computed value, or the polynomial through the last two
#: (linear) or three (quadratic) computed values, extended to this step.
FILLS = ("reuse", "linear", "quadratic")
#: Computed values a fill needs.
FILL_DEPTH = {"reuse": 1, "linear": 2, "quadratic": 3}
#: What a component does at one step: (compute, keep the values for a later step, fill weights,
#: how many values it holds when the step begins where it reads them).
Decision = tuple[bool, bool, "Weights | None", "int | None"]
#: The decision of a component that computes at every step and keeps nothing.
ALWAYS_COMPUTE: Decision = (True, False, None, None)


def type_key(component: ComponentSpec, single_stack: bool) -> str:
    """The key shared by one component type across the blocks of a stack (``attn1``, ``spatial.attn``)."""
    return component.name if single_stack else f"{component.block_kind}.{component.name}"


def has_single_stack(components: Sequence[ComponentSpec]) -> bool:
    """Whether all blocks belong to one stack, so types need no stack prefix."""
    return len({c.block_kind for c in components}) <= 1


def lookup_keys(components: Sequence[ComponentSpec]) -> list[tuple[str, ...]]:
    """For every component, the table keys that select it, most specific first."""
    single = has_single_stack(components)
    result = []
    for component in components:
        kind_key = type_key(component, single)
        candidates = (component.key, f"{kind_key}-{component.index}", kind_key, component.name)
        result.append(tuple(dict.fromkeys(candidates)))
    return result


@dataclass(frozen=True)
class CompiledSchedule:
    """A schedule resolved against one model's components: plain Python booleans for the gates.

    ``compute[c][i]``: component ``c`` computes at step ``i``. ``keep[c][i]``: after step ``i`` the
    cached values are still needed by a later skipped step (so the cache holds nothing it will not
    use). ``weights[c][i]``: at a skipped step of a polynomial fill, the weights of the last computed
    values (oldest first) whose sum is the fill (None: reuse the last value as it is). ``lines[c][i]``:
    how many computed values the component holds when step ``i`` begins, where the gate reads them
    (a reuse, or a compute that keeps; None elsewhere). ``None`` for a component means it always
    computes. ``fill``: see :data:`FILLS`.
    """

    steps: int | None
    compute: tuple[tuple[bool, ...] | None, ...]
    keep: tuple[tuple[bool, ...] | None, ...]
    weights: tuple[tuple[Weights | None, ...] | None, ...]
    fill: str = "reuse"
    lines: tuple[tuple[int | None, ...] | None, ...] = ()

    @classmethod
    def all_compute(cls, count: int) -> CompiledSchedule:
        return cls(None, (None,) * count, (None,) * count, (None,) * count, lines=(None,) * count)

    def decisions(self) -> tuple[tuple[Decision, ...], ...]:
        """Per step, every component's :data:`Decision`; what a gate reads, and all it reads, from the plan.

        A compiled block is specialised on the decisions of its components, so two steps with equal
        decisions share one compiled graph; the line length is part of a decision because the gate
        reads the held values where it is given."""
        count = len(self.compute)
        lines = self.lines or (None,) * count

        def decision(component: int, step: int) -> Decision:
            computes, keeps, weights, held = self.compute[component], self.keep[component], self.weights[component], lines[component]
            if computes is None or keeps is None or weights is None or held is None:
                return ALWAYS_COMPUTE
            return (computes[step], keeps[step], weights[step], held[step])

        return tuple(tuple(decision(c, step) for c in range(count)) for step in range(self.steps or 0))

    @property
    def depth(self) -> int:
        """How many computed values per component and branch the fill needs."""
        return FILL_DEPTH[self.fill]


def _fill_weights(flags: tuple[bool, ...], depth: int, positions: Sequence[float] | None = None) -> tuple[Weights | None, ...]:
    """Per skipped step ``i``: the Lagrange weights, at ``i``, of the polynomial through the last
    ``depth`` (or as many as there are, at least two) computed steps, oldest first; None elsewhere.
    For two computes at ``a < b`` the weights are ``(-r, 1 + r)`` with ``r = (i - b) / (b - a)``.
    ``positions``: where each step lies for the polynomial (its timestep), else its index."""
    at = list(positions) if positions is not None else list(range(len(flags)))
    weights: list[Weights | None] = []
    computes: list[int] = []
    for step, compute in enumerate(flags):
        if compute:
            computes.append(step)
            weights.append(None)
        elif depth >= 2 and len(computes) >= 2:
            weights.append(lagrange_weights([at[i] for i in computes[-depth:]], at[step]))
        else:
            weights.append(None)
    return tuple(weights)


def _line_lengths(flags: tuple[bool, ...], keep: tuple[bool, ...], depth: int) -> tuple[int | None, ...]:
    """Per step, how many computed values the gate holds when the step begins, where it reads them
    (a reuse, or a compute that keeps): a compute that keeps adds one (up to ``depth``), and a step
    that keeps nothing empties the line."""
    lines: list[int | None] = []
    held = 0
    for compute, keeps in zip(flags, keep, strict=True):
        lines.append(held if keeps or not compute else None)
        held = min(held + 1, depth) if compute and keeps else held if keeps else 0
    return tuple(lines)


def _keep_flags(flags: tuple[bool, ...], depth: int) -> tuple[bool, ...]:
    """Per step: whether a later skipped step uses a value computed up to here, i.e. fewer than
    ``depth`` computes lie between this step and it (one pass from the end: linear time)."""
    keep = [False] * len(flags)
    skip_ahead, computes_before_it = False, 0
    for step in range(len(flags) - 1, -1, -1):
        keep[step] = skip_ahead and computes_before_it < depth
        if flags[step]:
            computes_before_it += 1
        else:
            skip_ahead, computes_before_it = True, 0
    return tuple(keep)


def _as_flag(value: Any) -> int | None:
    """0 or 1 from a bool or an integer of any integer type (numpy's too); None for anything else."""
    if isinstance(value, (float, complex, str, bytes)):
        return None
    try:
        number = operator.index(value)
    except TypeError:
        return None
    return number if number in (0, 1) else None


def _as_table(key: str, values: Any) -> tuple[int, ...]:
    if hasattr(values, "tolist") and not isinstance(values, (list, tuple)):  # a numpy array or a tensor
        values = values.tolist()
    if not isinstance(values, (list, tuple)) or not values:
        raise ScheduleError(f"schedule entry {key!r} must be a non-empty list of 0/1, got {values!r:.60}")
    table = []
    for value in values:
        flag = _as_flag(value)
        if flag is None:
            raise ScheduleError(f"schedule entry {key!r} holds {value!r:.40}; only 0 (reuse) and 1 (compute) are allowed")
        table.append(flag)
    if table[0] != 1:
        raise ScheduleError(f"schedule entry {key!r} reuses at step 0, where nothing is cached yet; set it to 1")
    return tuple(table)


def _frozen(value: Any) -> Any:
    """A JSON-like value that cannot be changed: objects become read-only mappings, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(key): _frozen(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(item) for item in value)
    return value


def _plain(value: Any) -> Any:
    """The JSON value of a :func:`_frozen` one (mappings as dicts, tuples as lists)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True)
class Schedule:
    """A static compute/reuse table per component key, with the provenance of how it was made.

    Immutable in fact (tables and provenance are read-only once validated) and hashable, so a
    schedule that was checked stays the schedule that runs.
    """

    #: Given as any sequences of 0/1 (lists, tuples, numpy integers); held as tuples of ints.
    tables: Mapping[str, Sequence[int]]
    provenance: Mapping[str, Any] = field(default_factory=dict)
    fill: str = "reuse"

    def __post_init__(self) -> None:
        if not isinstance(self.fill, str) or self.fill not in FILLS:
            raise ScheduleError(f"schedule fill must be one of {FILLS}, got {self.fill!r:.40}")
        if not isinstance(self.tables, Mapping) or not self.tables:
            raise ScheduleError("the schedule has no components; give at least one list of 0/1 per step")
        tables = {str(key): _as_table(str(key), values) for key, values in self.tables.items()}
        lengths = {key: len(values) for key, values in tables.items()}
        if len(set(lengths.values())) > 1:
            shown = dict(list(lengths.items())[:6])
            raise ScheduleError(f"schedule lists have different lengths: {shown}; every list needs one entry per step")
        if not isinstance(self.provenance, Mapping):
            raise ScheduleError("schedule provenance must be a JSON object")
        try:
            provenance = _frozen(self.provenance)
        except RecursionError as error:
            raise ScheduleError("schedule provenance is nested too deeply; a provenance is a flat JSON object") from error
        object.__setattr__(self, "tables", MappingProxyType(tables))
        object.__setattr__(self, "provenance", provenance)

    def __hash__(self) -> int:
        provenance = json.dumps(_plain(self.provenance), sort_keys=True, default=repr)
        return hash((tuple(self.tables.items()), self.fill, provenance))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return (dict(self.tables), self.fill, _plain(self.provenance)) == (dict(other.tables), other.fill, _plain(other.provenance))

    @property
    def steps(self) -> int:
        """Number of model evaluations the schedule covers."""
        return len(next(iter(self.tables.values())))

    @classmethod
    def from_dict(cls, data: Any) -> Schedule:
        """Read format v1 or an original SmoothCache dict (``{"attn": [...], "mlp-3": [...]}``)."""
        if not isinstance(data, Mapping):
            raise ScheduleError(f"a schedule must be a JSON object, got {type(data).__name__}")
        if "format" not in data:
            return cls(dict(data), {"format_origin": "smoothcache-0.1"})
        if data["format"] != FORMAT:
            raise ScheduleError(f"unknown schedule format {data['format']!r}; expected {FORMAT!r}")
        if data.get("version") != VERSION:
            raise ScheduleError(
                f"schedule format version {data.get('version')!r} is not supported; this smoothcache reads version {VERSION}"
            )
        unknown = set(data) - {"format", "version", "components", "fill", "provenance"}
        if unknown:
            raise ScheduleError(f"unknown schedule fields {sorted(unknown)}; expected components, fill and provenance")
        if not isinstance(data.get("components"), Mapping):
            raise ScheduleError("schedule field 'components' must map component keys to lists of 0/1")
        return cls(dict(data["components"]), data.get("provenance", {}), data.get("fill", "reuse"))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object; ``fill`` only when it is not the default, so reuse schedules read anywhere."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "components": {key: list(values) for key, values in self.tables.items()},
            **({} if self.fill == "reuse" else {"fill": self.fill}),
            "provenance": _plain(self.provenance),
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> Schedule:
        """Load a JSON schedule (v1 or original). Never unpickles anything."""
        raw = read_limited(path, MAX_FILE_BYTES, "schedule", ScheduleError)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as error:  # bad JSON, bad UTF-8, an integer of 5,000 digits, deep nesting
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)[:120]
            raise ScheduleError(f"schedule {str(path)!r} is not valid JSON ({reason}); regenerate or fix the file") from error
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (temporary file, then rename), so a crash never leaves half a file."""
        write_atomic(path, (json.dumps(self.to_dict(), indent=1) + "\n").encode("utf-8"))

    @classmethod
    def fora(cls, steps: int, interval: int, keys: Iterable[str], fill: str = "reuse") -> Schedule:
        """FORA's fixed-interval schedule: compute every ``interval`` steps and at the last step."""
        if interval < 1 or steps < 1:
            raise ScheduleError("FORA needs steps >= 1 and interval >= 1")
        table = [1 if i % interval == 0 or i == steps - 1 else 0 for i in range(steps)]
        return cls(dict.fromkeys(keys, table), {"method": f"fora-{interval}", "steps": steps}, fill)

    def resample(self, num_steps: int) -> Schedule:
        """This schedule mapped to ``num_steps`` model evaluations.

        Rule: new step ``j`` takes the decision of the old step at the same relative position,
        ``round(j * (old - 1) / (new - 1))``; the first and last steps compute; and no run of
        reuses becomes longer than the longest run in the original list (a compute is inserted), so
        a value is never reused further than calibration measured.
        """
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ScheduleError(f"num_steps must be a positive integer, got {num_steps!r}")
        old = self.steps
        tables = {}
        for key, table in self.tables.items():
            longest = max((len(run) for run in "".join(map(str, table)).split("1")), default=0)
            mapped = [table[math.floor(j * (old - 1) / max(num_steps - 1, 1) + 0.5)] for j in range(num_steps)]
            mapped[0] = mapped[-1] = 1
            run = 0
            for j, value in enumerate(mapped):
                run = run + 1 if value == 0 else 0
                if run > longest:
                    mapped[j], run = 1, 0
            tables[key] = mapped
        provenance = {**self.provenance, "steps": num_steps, "resampled_from": old}
        return Schedule(tables, provenance, self.fill)

    @property
    def fill_positions(self) -> tuple[float, ...] | None:
        """Where the fill's polynomial places each step: at its timestep where the schedule was
        planned for a grid and says so (provenance ``fill_at: "timesteps"``; on a grid of uneven
        spacing such as Karras sigmas the outputs move smoothly in the timestep, not the step), else
        None: at its index."""
        timesteps = self.provenance.get("timesteps")
        if self.provenance.get("fill_at") != "timesteps" or not isinstance(timesteps, (list, tuple)) or len(timesteps) != self.steps:
            return None
        positions = tuple(float(t) for t in timesteps)
        distinct = len(set(positions)) == len(positions)
        return positions if distinct and all(math.isfinite(t) for t in positions) else None

    @property
    def unit(self) -> str:
        """What the schedule caches: ``"component"`` outputs or ``"block"`` residuals (its provenance;
        schedules without one were made for components)."""
        return str(self.provenance.get("unit", "component"))

    def compile(self, components: Sequence[ComponentSpec]) -> CompiledSchedule:
        """Resolve tables against ``components``; unknown keys are an error listing what exists."""
        candidates = lookup_keys(components)
        used: set[str] = set()
        compute: list[tuple[bool, ...] | None] = []
        keep: list[tuple[bool, ...] | None] = []
        weights: list[tuple[Weights | None, ...] | None] = []
        lines: list[tuple[int | None, ...] | None] = []
        depth = FILL_DEPTH[self.fill]
        positions = self.fill_positions
        for keys in candidates:
            table = next((self.tables[key] for key in keys if key in self.tables), None)
            used.update(key for key in keys if key in self.tables)
            if table is None or all(table):
                compute.append(None)
                keep.append(None)
                weights.append(None)
                lines.append(None)
                continue
            flags = tuple(bool(v) for v in table)
            keeps = _keep_flags(flags, depth)
            compute.append(flags)
            keep.append(keeps)
            weights.append(_fill_weights(flags, depth, positions))
            lines.append(_line_lengths(flags, keeps, depth))
        unknown = sorted(set(self.tables) - used)
        if unknown:
            types = sorted({c for keys in candidates for c in keys[2:]})
            raise ScheduleError(
                f"schedule keys {unknown} match no component of this model; it has the types {types} "
                f"and component keys like {candidates[0][0]!r} (or '<type>-<block index>')"
            )
        return CompiledSchedule(self.steps, tuple(compute), tuple(keep), tuple(weights), self.fill, tuple(lines))
