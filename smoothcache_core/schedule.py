"""Schedules: the static 0/1 table (1 = compute and refresh the cache, 0 = reuse) plus provenance.

Format v1 (JSON)::

    {"format": "smoothcache.schedule", "version": 1,
     "components": {"attn1": [1, 0, 1, ...], "blocks.3.ff": [1, 1, 0, ...]},
     "fill": "linear",
     "provenance": {"adapter": "dit", "model_class": "DiTTransformer2DModel", "steps": 50, ...}}

``fill`` says what a skipped step returns: ``"reuse"`` (the default, and what a file without the
field means) the last computed value, as the paper; ``"linear"`` the line through the last two
computed values, extended to this step (the first skipped steps, with one value computed, reuse it).

The original SmoothCache files (``{"attn": [...], "mlp": [...]}``, per-block ``"attn-3"``) load
unchanged. A table key is resolved against the wrapped model's components, most specific first:
the component key (``blocks.3.attn1``), ``<type>-<block index>`` (``attn1-3``, the original
per-block form), the type (``attn1``; ``spatial.attn`` when the model has several block stacks),
and the bare attribute name (``attn``, every stack). Components no key resolves to always compute.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .adapter import ComponentSpec
from .errors import ScheduleError

FORMAT = "smoothcache.schedule"
VERSION = 1
#: What a skipped step returns: the last computed value, or the last two extrapolated linearly.
FILLS = ("reuse", "linear")
#: Computed values a fill needs.
_FILL_DEPTH = {"reuse": 1, "linear": 2}


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
    use). ``ratio[c][i]``: at a skipped step of the linear fill, how far past the last computed value
    the line goes, in units of the distance between the last two (None: reuse the last value as it
    is). ``None`` for a component means it always computes. ``fill``: see :data:`FILLS`.
    """

    steps: int | None
    compute: tuple[tuple[bool, ...] | None, ...]
    keep: tuple[tuple[bool, ...] | None, ...]
    ratio: tuple[tuple[float | None, ...] | None, ...]
    fill: str = "reuse"

    @classmethod
    def all_compute(cls, count: int) -> CompiledSchedule:
        return cls(None, (None,) * count, (None,) * count, (None,) * count)

    @property
    def depth(self) -> int:
        """How many computed values per component and branch the fill needs."""
        return _FILL_DEPTH[self.fill]


def _linear_ratios(flags: tuple[bool, ...]) -> tuple[float | None, ...]:
    """Per skipped step ``i`` with computes at ``a < b`` before it: ``(i - b) / (b - a)``."""
    ratios: list[float | None] = []
    computes: list[int] = []
    for step, compute in enumerate(flags):
        if compute:
            computes.append(step)
            ratios.append(None)
        elif len(computes) >= 2:
            before, last = computes[-2:]
            ratios.append((step - last) / (last - before))
        else:
            ratios.append(None)
    return tuple(ratios)


def _keep_flags(flags: tuple[bool, ...], depth: int) -> tuple[bool, ...]:
    """Per step: whether a later skipped step uses a value computed up to here, i.e. fewer than
    ``depth`` computes lie between this step and it."""
    keep = []
    for step in range(len(flags)):
        computes = 0
        needed = False
        for later in flags[step + 1 :]:
            if not later:
                needed = True
                break
            computes += 1
            if computes >= depth:
                break
        keep.append(needed)
    return tuple(keep)


def _as_table(key: str, values: Any) -> tuple[int, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ScheduleError(f"schedule entry {key!r} must be a non-empty list of 0/1, got {values!r:.60}")
    table = []
    for value in values:
        if isinstance(value, bool) or value in (0, 1) and isinstance(value, int):
            table.append(int(value))
        else:
            raise ScheduleError(f"schedule entry {key!r} holds {value!r}; only 0 (reuse) and 1 (compute) are allowed")
    if table[0] != 1:
        raise ScheduleError(f"schedule entry {key!r} reuses at step 0, where nothing is cached yet; set it to 1")
    return tuple(table)


@dataclass(frozen=True)
class Schedule:
    """A static compute/reuse table per component key, with the provenance of how it was made."""

    tables: Mapping[str, tuple[int, ...]]
    provenance: Mapping[str, Any] = field(default_factory=dict)
    fill: str = "reuse"

    def __post_init__(self) -> None:
        if self.fill not in FILLS:
            raise ScheduleError(f"schedule fill must be one of {FILLS}, got {self.fill!r}")
        if not self.tables:
            raise ScheduleError("the schedule has no components; give at least one list of 0/1 per step")
        tables = {str(key): _as_table(str(key), values) for key, values in self.tables.items()}
        lengths = {key: len(values) for key, values in tables.items()}
        if len(set(lengths.values())) > 1:
            raise ScheduleError(f"schedule lists have different lengths: {lengths}; every list needs one entry per step")
        if not isinstance(self.provenance, Mapping):
            raise ScheduleError("schedule provenance must be a JSON object")
        object.__setattr__(self, "tables", tables)
        object.__setattr__(self, "provenance", dict(self.provenance))

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
            "provenance": dict(self.provenance),
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> Schedule:
        """Load a JSON schedule (v1 or original). Never unpickles anything."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise ScheduleError(f"cannot read schedule {str(path)!r}: {error.strerror or error}") from error
        try:
            data = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ScheduleError(f"schedule {str(path)!r} is not valid JSON ({error}); regenerate or fix the file") from error
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (temporary file, then rename), so a crash never leaves half a file."""
        write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def fora(cls, steps: int, interval: int, keys: Iterable[str], fill: str = "reuse") -> Schedule:
        """FORA's fixed-interval schedule: compute every ``interval`` steps and at the last step."""
        if interval < 1 or steps < 1:
            raise ScheduleError("FORA needs steps >= 1 and interval >= 1")
        table = [1 if i % interval == 0 or i == steps - 1 else 0 for i in range(steps)]
        return cls({key: table for key in keys}, {"method": f"fora-{interval}", "steps": steps}, fill)

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

    def compile(self, components: Sequence[ComponentSpec]) -> CompiledSchedule:
        """Resolve tables against ``components``; unknown keys are an error listing what exists."""
        candidates = lookup_keys(components)
        used: set[str] = set()
        compute: list[tuple[bool, ...] | None] = []
        keep: list[tuple[bool, ...] | None] = []
        ratio: list[tuple[float | None, ...] | None] = []
        for keys in candidates:
            table = next((self.tables[key] for key in keys if key in self.tables), None)
            used.update(key for key in keys if key in self.tables)
            if table is None or all(table):
                compute.append(None)
                keep.append(None)
                ratio.append(None)
                continue
            flags = tuple(bool(v) for v in table)
            compute.append(flags)
            keep.append(_keep_flags(flags, _FILL_DEPTH[self.fill]))
            ratio.append(_linear_ratios(flags) if self.fill == "linear" else (None,) * len(flags))
        unknown = sorted(set(self.tables) - used)
        if unknown:
            types = sorted({c for keys in candidates for c in keys[2:]})
            raise ScheduleError(
                f"schedule keys {unknown} match no component of this model; it has the types {types} "
                f"and component keys like {candidates[0][0]!r} (or '<type>-<block index>')"
            )
        return CompiledSchedule(self.steps, tuple(compute), tuple(keep), tuple(ratio), self.fill)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file so readers see either the old or the complete new content."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write bytes to a temporary file in the same folder, then rename it over ``path``.

    The file gets the permissions a plain ``open`` would give it (0666 less the umask), not the
    owner-only 0600 of the temporary file: shipped and shared schedules must be readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
