"""Error profiles: the calibration's per-sample error statistics, kept instead of thrown away.

A profile holds, per (component, lag, step), the sum, the sum of squares and the count of the
per-sample relative L1 errors, so profiles from several runs or processes merge exactly (the sums
add up). Schedules are derived from it without running the model again. Stored as safetensors with
JSON metadata; loading never unpickles anything.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .adapter import UNITS, ComponentSpec
from .errors import ProfileError, ScheduleError
from .files import library_version, read_limited, write_atomic
from .grid import plan_for_grid
from .macs import MacCount, MacReport
from .noise import COORDINATES, NoiseMap, noise_map
from .planning import plan, step_weights
from .schedule import FILLS, Schedule, has_single_stack, type_key

FORMAT = "smoothcache.profile"
VERSION = 1
#: The largest profile file read (1 GiB), refused before it is read: reading needs bounded memory.
MAX_FILE_BYTES = 1024**3
_METADATA_KEY = "smoothcache"
#: Metadata that must agree for two profiles to merge.
_IDENTITY = ("adapter", "model_class", "config_fingerprint")


@dataclass(frozen=True)
class ErrorProfile:
    """Per-sample relative L1 error statistics of every component, per lag and step."""

    components: tuple[ComponentSpec, ...]
    sums: torch.Tensor  # float64 [components, lags, steps]
    sums_sq: torch.Tensor  # float64 [components, lags, steps]
    counts: torch.Tensor  # int64 [components, lags, steps]
    macs: tuple[int, ...]  # MACs of one call of each component (calibration batch)
    evaluation_macs: int  # MACs of one whole model evaluation (calibration batch)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: Probes (see ``smoothcache_core.sensitivity``): ``[l - 1, s]`` holds the sum and count of the final
    #: output's relative error when every component reuses for ``l`` steps from step ``s``; None if the
    #: profile was not probed.
    probe_sums: torch.Tensor | None = None  # float64 [run lengths, steps]
    probe_counts: torch.Tensor | None = None  # int64 [run lengths, steps]
    #: Where the steps sit on the noise schedule, so that the profile plans for any grid
    #: (:mod:`smoothcache_core.grid`): the timestep each calibrated step's evaluation got (model
    #: units), and the calibration scheduler's table from model timesteps to noise levels ``u``
    #: (its coordinate in ``metadata["noise_coordinate"]``). None in profiles made before 0.3;
    #: without a table, the timestep is its own coordinate.
    timesteps: torch.Tensor | None = None  # float64 [steps]
    noise_timesteps: torch.Tensor | None = None  # float64 [points], increasing
    noise_levels: torch.Tensor | None = None  # float64 [points]

    def __post_init__(self) -> None:
        if not self.components:
            raise ProfileError("the profile has no components; calibrate a model with cacheable components (the file may be corrupt)")
        shape = tuple(self.sums.shape)
        if len(shape) != 3 or shape[0] != len(self.components) or shape[1] < 1 or shape[2] < 2:
            raise ProfileError(f"profile tensors have shape {shape}; expected [components={len(self.components)}, lags, steps>=2]")
        if tuple(self.sums_sq.shape) != shape or tuple(self.counts.shape) != shape:
            raise ProfileError("profile sums, squares and counts differ in shape; the file is corrupt")
        if len(self.macs) != len(self.components):
            raise ProfileError("profile has a MAC count per component missing; the file is corrupt")
        if bool((self.counts < 0).any()) or not bool(torch.isfinite(self.sums).all() and torch.isfinite(self.sums_sq).all()):
            raise ProfileError("profile holds negative counts or non-finite sums; the file is corrupt")
        keys = [c.key for c in self.components]
        if len(set(keys)) != len(keys):
            raise ProfileError("profile lists a component twice; the file is corrupt")
        if (self.probe_sums is None) != (self.probe_counts is None):
            raise ProfileError("profile has probe sums without counts (or the reverse); the file is corrupt")
        if self.probe_sums is not None and self.probe_counts is not None:
            probe_shape = tuple(self.probe_sums.shape)
            if len(probe_shape) != 2 or probe_shape[0] < 1 or probe_shape[1] != shape[2] or tuple(self.probe_counts.shape) != probe_shape:
                raise ProfileError(f"profile probes have shape {probe_shape}; expected [run lengths, steps={shape[2]}]")
            if bool((self.probe_counts < 0).any()) or not bool(torch.isfinite(self.probe_sums).all() and (self.probe_sums >= 0).all()):
                raise ProfileError("profile probes hold negative or non-finite values; the file is corrupt")
        self._check_noise_schedule(shape[2])

    def _check_noise_schedule(self, steps: int) -> None:
        if self.timesteps is not None and (tuple(self.timesteps.shape) != (steps,) or not bool(torch.isfinite(self.timesteps).all())):
            raise ProfileError(f"profile timesteps have shape {tuple(self.timesteps.shape)} or are not finite; expected [steps={steps}]")
        table = (self.noise_timesteps, self.noise_levels)
        if (table[0] is None) != (table[1] is None) or (table[0] is not None and self.timesteps is None):
            raise ProfileError("profile has half of a noise table, or one without timesteps; the file is corrupt")
        if table[0] is not None and table[1] is not None:
            if table[0].dim() != 1 or table[0].shape != table[1].shape or len(table[0]) < 2:
                raise ProfileError("profile noise table has mismatched or too few points; the file is corrupt")
            if not bool(torch.isfinite(table[0]).all() and torch.isfinite(table[1]).all()) or not bool((table[0].diff() > 0).all()):
                raise ProfileError("profile noise table is not finite and increasing; the file is corrupt")

    # -- statistics -----------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return int(self.sums.shape[2])

    @property
    def lookahead(self) -> int:
        return int(self.sums.shape[1])

    @property
    def mean(self) -> torch.Tensor:
        """Mean error per (component, lag, step); NaN where nothing was measured."""
        counts = self.counts.double()
        return torch.where(counts > 0, self.sums / counts.clamp_min(1), torch.full_like(self.sums, math.nan))

    @property
    def std(self) -> torch.Tensor:
        """Sample standard deviation per (component, lag, step); NaN below two samples."""
        counts = self.counts.double()
        variance = (self.sums_sq - self.sums.square() / counts.clamp_min(1)) / (counts - 1).clamp_min(1)
        return torch.where(counts > 1, variance.clamp_min(0).sqrt(), torch.full_like(self.sums, math.nan))

    @property
    def probed(self) -> bool:
        """Whether the step sensitivity was probed (schedules can then weigh errors by it)."""
        return self.probe_counts is not None and bool((self.probe_counts > 0).any())

    @property
    def probed_run_length(self) -> int:
        """The longest run of reuse whose final-output error was probed (0 if none)."""
        if self.probe_counts is None:
            return 0
        lengths = np.flatnonzero(self.probe_counts.sum(dim=1).numpy() > 0)
        return int(lengths[-1]) + 1 if len(lengths) else 0

    @property
    def probed_runs(self) -> int:
        """How many (start, length) runs of reuse were probed."""
        return 0 if self.probe_counts is None else int((self.probe_counts > 0).sum())

    @property
    def probe_fill(self) -> str:
        """What the probed runs returned at skipped steps (see ``smoothcache_core.schedule.FILLS``)."""
        return str(self.metadata.get("probe_fill", "reuse"))

    def with_probes(self, sums: torch.Tensor, counts: torch.Tensor, fill: str = "reuse") -> ErrorProfile:
        """This profile with probe results ``[run lengths, steps]``, measured with ``fill``, added to
        those it already holds."""
        sums, counts = sums.double(), counts.long()
        if self.probe_sums is not None and fill != self.probe_fill:
            raise ProfileError(
                f"the profile's probes were measured with the {self.probe_fill!r} fill and these with {fill!r}; "
                "probe with the same fill to combine them"
            )
        if self.probe_sums is not None and self.probe_counts is not None:
            lengths = max(len(sums), len(self.probe_sums))
            sums = _pad_rows(sums, lengths) + _pad_rows(self.probe_sums, lengths)
            counts = _pad_rows(counts, lengths) + _pad_rows(self.probe_counts, lengths)
        return replace(self, probe_sums=sums, probe_counts=counts, metadata={**self.metadata, "probe_fill": fill})

    def _probe_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The probes' (sums, counts); callers have checked :attr:`probed`."""
        if self.probe_sums is None or self.probe_counts is None:
            raise ScheduleError("the profile has no probes; probe it with smoothcache.probe(model, profile, generate)")
        return self.probe_sums, self.probe_counts

    def step_weights(self) -> np.ndarray:
        """Per step, how much the final sample moves per unit of component error (mean 1), from the probes."""
        if not self.probed:
            raise ScheduleError(
                "the profile has no probes, so it cannot weigh steps by sensitivity; probe it "
                "(smoothcache.probe(model, profile, generate) or `smoothcache calibrate --probes N`) or use weighting='uniform'"
            )
        probe_sums, probe_counts = self._probe_tensors()
        counts = probe_counts[0].numpy()
        finals = probe_sums[0].numpy() / np.maximum(counts, 1)
        lag1 = self.mean[:, 0].numpy()  # [components, steps]: reusing step s at step s + 1
        known = np.isfinite(lag1)
        mean = np.where(known, lag1, 0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
        component_errors = np.concatenate(([np.nan], np.where(known.any(axis=0), mean, np.nan)[:-1]))
        return step_weights(finals, counts > 0, component_errors)

    @property
    def noise_map(self) -> NoiseMap | None:
        """Model timestep to noise level ``u`` (see :mod:`smoothcache_core.noise`); None without timesteps."""
        if self.timesteps is None:
            return None
        if self.noise_timesteps is None or self.noise_levels is None:
            return NoiseMap.identity(self.timesteps.tolist())
        coordinate, scale = str(self.metadata.get("noise_coordinate", "log-noise")), float(self.metadata.get("timestep_scale", 1.0))
        return NoiseMap(self.noise_timesteps.numpy(), self.noise_levels.numpy(), coordinate, scale)

    def with_scheduler(self, scheduler: Any) -> ErrorProfile:
        """This profile placed on ``scheduler``'s noise schedule (the one that ran the calibration),
        so that it plans for grids by noise level, not timestep (see :func:`~smoothcache_core.noise.noise_map`).
        Unchanged where the profile has no timesteps or the scheduler tells no noise levels."""
        if self.timesteps is None or scheduler is None:
            return self
        own = np.asarray(
            getattr(scheduler, "timesteps", None) if getattr(scheduler, "timesteps", None) is not None else [], dtype=np.float64
        )
        own = own.reshape(-1)[-self.steps :]  # an img2img call runs the tail of the scheduler's grid
        noise = noise_map(scheduler, self.timesteps.numpy(), own)
        if noise.coordinate == "timestep":
            return replace(self, noise_timesteps=None, noise_levels=None, metadata={**self.metadata, "noise_coordinate": "timestep"})
        table = (torch.from_numpy(noise.timesteps.copy()), torch.from_numpy(noise.levels.copy()))
        metadata = {**self.metadata, "noise_coordinate": noise.coordinate, "timestep_scale": noise.scale, **_scheduler_config(scheduler)}
        return replace(self, noise_timesteps=table[0], noise_levels=table[1], metadata=metadata)

    @property
    def levels(self) -> np.ndarray:
        """The noise level ``u`` of every calibrated step (empty without timesteps)."""
        noise = self.noise_map
        return noise(self.timesteps.numpy()) if noise is not None and self.timesteps is not None else np.zeros(0)

    @property
    def unit(self) -> str:
        """What was measured: ``"component"`` outputs or ``"block"`` residuals (see :mod:`smoothcache_core.blocks`)."""
        return str(self.metadata.get("unit", "component"))

    @property
    def samples(self) -> int:
        """Per-sample errors measured at step 0, lag 1 (calibration samples x CFG rows, per component)."""
        return int(self.counts[:, 0, 0].max())

    # -- files ----------------------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            **dict(self.metadata),
            "steps": self.steps,
            "lookahead": self.lookahead,
            "samples": self.samples,
            "evaluation_macs": self.evaluation_macs,
            "components": [[c.key, c.kind, c.name, c.block_kind, c.index] for c in self.components],
            "created_by": f"smoothcache {library_version()}",
        }

    def to_bytes(self) -> bytes:
        tensors = {
            "sum": self.sums.double().contiguous(),
            "sum_sq": self.sums_sq.double().contiguous(),
            "count": self.counts.long().contiguous(),
            "mean": self.mean.contiguous(),
            "std": self.std.contiguous(),
            "macs": torch.tensor(self.macs, dtype=torch.int64),
        }
        if self.probe_sums is not None and self.probe_counts is not None:
            tensors["probe_sum"] = self.probe_sums.double().contiguous()
            tensors["probe_count"] = self.probe_counts.long().contiguous()
        for name in ("timesteps", "noise_timesteps", "noise_levels"):
            value = getattr(self, name)
            if value is not None:
                tensors[name] = value.double().contiguous()
        return save_safetensors(tensors, metadata={_METADATA_KEY: json.dumps(self._header())})

    def save(self, path: str | os.PathLike) -> None:
        """Write safetensors atomically (temporary file, then rename)."""
        write_atomic(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, origin: str = "profile") -> ErrorProfile:
        try:
            tensors = load_safetensors(data)
            with_metadata = _read_metadata(data)
        except (SafetensorError, ValueError, OSError, RecursionError) as error:
            raise ProfileError(f"{origin} is not a valid safetensors profile ({error}); recalibrate or fix the file") from error
        try:
            header = json.loads(with_metadata[_METADATA_KEY])
            if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
                raise ProfileError(f"{origin} is not a smoothcache profile of format version {VERSION}")
            components = tuple(_component_spec(entry) for entry in _field(header, "components", list))
            steps = int(tensors["sum"].shape[-1])
            metadata = _checked_metadata(header)
            return cls(
                components=components,
                sums=tensors["sum"].double(),
                sums_sq=tensors["sum_sq"].double(),
                counts=tensors["count"].long(),
                macs=tuple(int(v) for v in tensors["macs"].tolist()),
                evaluation_macs=_count(header, "evaluation_macs"),
                metadata=metadata,
                # files of single-step probes hold one value per step
                probe_sums=tensors["probe_sum"].double().reshape(-1, steps) if "probe_sum" in tensors else None,
                probe_counts=tensors["probe_count"].long().reshape(-1, steps) if "probe_count" in tensors else None,
                **{name: tensors[name].double() for name in ("timesteps", "noise_timesteps", "noise_levels") if name in tensors},
            )
        except ProfileError:
            raise
        except (LookupError, TypeError, ValueError, RuntimeError, OverflowError) as error:  # RecursionError is a RuntimeError
            shown = repr(error)[:160]
            raise ProfileError(f"{origin} has missing or malformed fields ({shown}); recalibrate or fix the file") from error

    @classmethod
    def load(cls, path: str | os.PathLike) -> ErrorProfile:
        """Load a profile written by :meth:`save` (safetensors; never unpickles)."""
        data = read_limited(path, MAX_FILE_BYTES, "profile", ProfileError)
        return cls.from_bytes(data, origin=f"profile {str(path)!r}")

    # -- combining ------------------------------------------------------------------------------
    def merge(self, other: ErrorProfile) -> ErrorProfile:
        """The profile of both calibrations together (sums, squares and counts add up)."""
        differences = [key for key in _IDENTITY if self.metadata.get(key) != other.metadata.get(key)]
        if self.unit != other.unit:
            differences.append(f"unit ({self.unit} vs {other.unit})")
        if self.components != other.components:
            differences.append("components")
        if (self.steps, self.lookahead) != (other.steps, other.lookahead):
            differences.append(f"steps/lookahead ({self.steps}/{self.lookahead} vs {other.steps}/{other.lookahead})")
        solvers = {self.metadata.get("solver"), other.metadata.get("solver")} - {None}
        if len(solvers) > 1:
            differences.append(f"solver ({sorted(map(str, solvers))})")
        mine, theirs = self.timesteps, other.timesteps
        if mine is not None and theirs is not None and mine.shape == theirs.shape and not torch.allclose(mine, theirs):
            differences.append("timesteps (calibrated on other grids)")
        if differences:
            raise ProfileError(f"cannot merge profiles that differ in {', '.join(differences)}; calibrate the same model and sampler")
        metadata = dict(self.metadata)
        metadata["generations"] = int(self.metadata.get("generations", 0)) + int(other.metadata.get("generations", 0))
        metadata["solver"] = next(iter(solvers), None)
        merged = ErrorProfile(
            self.components,
            self.sums + other.sums,
            self.sums_sq + other.sums_sq,
            self.counts + other.counts,
            self.macs,
            self.evaluation_macs,
            metadata,
            self.probe_sums,
            self.probe_counts,
            *(
                (self.timesteps, self.noise_timesteps, self.noise_levels)
                if self.timesteps is not None and other.timesteps is not None
                else (None, None, None)
            ),
        )
        if other.probe_sums is None or other.probe_counts is None:
            return merged
        return merged.with_probes(other.probe_sums, other.probe_counts, other.probe_fill)

    __add__ = merge

    def all_reduce(self, group: Any = None) -> ErrorProfile:
        """The profile of every rank's calibration together (torch.distributed, any backend).

        Each rank calibrates its own prompts; the sums, squares and counts are summed with one
        collective, so every rank gets the profile a single process calibrating all prompts would.
        The ranks must have calibrated the same model and steps (checked, with one more collective).
        """
        import torch.distributed as dist

        identity = json.dumps(
            [self.metadata.get(k) for k in (*_IDENTITY, "solver")]
            + [c.key for c in self.components]
            + [self.steps, self.lookahead, None if self.probe_sums is None else [*self.probe_sums.shape, self.probe_fill]]
        )
        identities: list[str | None] = [None] * dist.get_world_size(group)
        dist.all_gather_object(identities, identity, group=group)
        if len(set(identities)) > 1:
            raise ProfileError(
                "ranks calibrated different models, steps or lookaheads, or only some probed; their profiles cannot be combined"
            )
        moments = torch.stack([self.sums, self.sums_sq, self.counts.double()])
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else torch.device("cpu")
        total = moments.to(device)
        dist.all_reduce(total, group=group)
        total = total.cpu()
        generations = torch.tensor([float(self.metadata.get("generations", 0))], device=device)
        dist.all_reduce(generations, group=group)
        probes = None
        if self.probe_sums is not None and self.probe_counts is not None:
            probes = torch.stack([self.probe_sums, self.probe_counts.double()]).to(device)
            dist.all_reduce(probes, group=group)
            probes = probes.cpu()
        return ErrorProfile(
            self.components,
            total[0],
            total[1],
            total[2].round().long(),
            self.macs,
            self.evaluation_macs,
            {**self.metadata, "generations": int(generations.item())},
            None if probes is None else probes[0],
            None if probes is None else probes[1].round().long(),
            self.timesteps,
            self.noise_timesteps,
            self.noise_levels,
        )

    # -- schedules ------------------------------------------------------------------------------
    def curves(self, granularity: str = "type", lookahead: int | None = None) -> tuple[list[str], list[np.ndarray], list[list[int]]]:
        """Keys, mean error curves ``[lag, step]`` and member component indices per schedule list.

        ``type``: one curve per component type (per stack), the mean over its blocks, as the paper
        and the original files; ``block``: one curve per component.
        """
        lags = self._lookahead(lookahead)
        mean = self.mean[:, :lags].numpy()
        if granularity == "block":
            return (
                [c.key for c in self.components],
                [mean[i] for i in range(len(self.components))],
                [[i] for i in range(len(self.components))],
            )
        if granularity != "type":
            raise ScheduleError(f"granularity must be 'type' or 'block', got {granularity!r}")
        single = has_single_stack(self.components)
        groups: dict[str, list[int]] = {}
        for index, component in enumerate(self.components):
            groups.setdefault(type_key(component, single), []).append(index)
        curves = []
        for members in groups.values():
            stacked = mean[members]
            known = np.isfinite(stacked)
            total = np.where(known, stacked, 0.0).sum(axis=0)
            count = known.sum(axis=0)
            curves.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
        return list(groups), curves, list(groups.values())

    def _lookahead(self, lookahead: int | None) -> int:
        if lookahead is None:
            return self.lookahead
        if not 1 <= lookahead <= self.lookahead:
            raise ScheduleError(f"lookahead must be between 1 and the profile's {self.lookahead}, got {lookahead}")
        return lookahead

    def mac_count(self) -> MacCount:
        """MACs of one evaluation and of each component call, as measured during calibration."""
        return MacCount(self.evaluation_macs, {c.key: m for c, m in zip(self.components, self.macs, strict=False)})

    def mac_report(self, schedule: Schedule) -> MacReport:
        """Total MACs without cache and with ``schedule``, the fraction kept and the ideal speedup."""
        if schedule.steps != self.steps:
            raise ScheduleError(f"the schedule has {schedule.steps} steps but the profile {self.steps}; resample it first")
        return self.mac_count().for_schedule(schedule.compile(self.components), self.components)

    def schedule(
        self,
        alpha: float | None = None,
        *,
        speedup: float | None = None,
        macs: float | None = None,
        granularity: str = "type",
        method: str | None = None,
        lookahead: int | None = None,
        weighting: str = "uniform",
        fill: str | None = None,
        timesteps: Sequence[float] | None = None,
    ) -> Schedule:
        """A schedule from this profile, without running the model.

        ``timesteps``: plan for another grid, one timestep per model evaluation as the model receives
        them (any step count or sampler; see :func:`smoothcache_core.grid.plan_for_grid`, whose
        ``method`` is ``"runs"`` by default at a budget and ``"greedy"`` at ``alpha``, and whose fill is
        ``"quadratic"`` by default). Without it, the schedule is for the profile's own steps, and
        ``method`` is one of the following (default ``"greedy"``).

        ``method="greedy"`` is the paper's k-lookahead scan at threshold ``alpha``, or at the
        smallest α that meets ``macs`` (fraction of MACs kept) or ``speedup`` (ideal, = 1 / macs),
        found by bisection over the finitely many α where the schedule changes.

        ``method="optimal"`` minimises the total estimated error (the sum, over reused steps and
        components, of the mean error of the value reused) subject to the MAC budget: for each
        curve a dynamic program over steps gives the least error for every number of computes,
        and an exact knapsack over the curves (grouped by equal MAC cost) spends the budget where
        it removes the most error.

        ``method="runs"`` (a profile probed with ``run_lengths >= 2``) plans on measured final-output
        errors instead of component errors: every component reuses on the same steps, in runs of at
        most the probed length, chosen by dynamic programming to minimise the summed probed error of
        the runs under the MAC budget. A component's error says nothing of how the errors of a run of
        reuse compound in the sample; the probes measure exactly that. ``lookahead`` caps the run length.

        ``method="spaced-runs"`` keeps the evenly spaced plan's computes and run lengths (the two
        around the interval the budget allows) and places the longer runs where the probes measured
        them cheapest: probed costs of runs do not simply add up, and a plan free to mix lengths
        trades clusters of computes for long runs whose errors compound. It needs runs probed as
        long as the budget's interval (``run_lengths=3`` below about 0.36 of the MACs at 50 steps).

        ``method="uniform"`` computes every list on the same evenly spaced steps, as many as the
        budget allows (FORA's fixed interval at any MAC fraction); it ignores the errors, and is the
        baseline :func:`smoothcache.select_schedule` measures the planned schedules against.

        ``fill`` is what the schedule returns at skipped steps (``"reuse"``, ``"linear"`` or ``"quadratic"``): for
        ``"runs"`` the fill the profile was probed with (the default), else ``"reuse"`` by default.

        ``weighting="uniform"`` is the paper's measure. ``"sensitivity"`` (a probed profile) multiplies
        each error by the probed weight of the step where the stale value is used, so both methods
        rank reuse by its effect on the final sample. It is not the default: on the reference digits
        DiT it helps at some budgets and samplers and hurts at others (benchmarks/results/sensitivity.md).
        """
        if timesteps is not None:
            if weighting != "uniform" or lookahead is not None:
                raise ScheduleError(
                    "weighting and lookahead apply to the profile's own steps; a grid's plan weighs steps by the probed sensitivity"
                )
            chosen = method or ("greedy" if alpha is not None and macs is None and speedup is None else "runs")
            return plan_for_grid(
                self, timesteps, macs=macs, speedup=speedup, alpha=alpha, method=chosen, fill=fill or "quadratic", granularity=granularity
            )
        return plan(
            self,
            alpha,
            speedup=speedup,
            macs=macs,
            granularity=granularity,
            method=method or "greedy",
            lookahead=lookahead,
            weighting=weighting,
            fill=fill,
        )

    # -- plots ----------------------------------------------------------------------------------
    def plot(self, path: str | os.PathLike) -> None:
        """A PNG of the error curves by component type: one panel per type, one line per lag, 95 % CI bands."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError("profile.plot needs matplotlib: pip install 'smoothcache[plot]'") from error
        keys, curves, members = self.curves("type")
        std = self.std.numpy()
        counts = self.counts.numpy()
        figure, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False, sharey=True)
        steps = np.arange(self.steps)
        for axis, key, curve, group in zip(axes[0], keys, curves, members, strict=False):
            for lag in range(self.lookahead):
                known = np.isfinite(std[group, lag])
                mean_std = np.where(known, std[group, lag], 0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
                spread = mean_std * 1.96 / np.sqrt(np.maximum(counts[group, lag].mean(axis=0), 1))
                line = axis.plot(steps, curve[lag], label=f"lag {lag + 1}")[0]
                axis.fill_between(steps, curve[lag] - spread, curve[lag] + spread, color=line.get_color(), alpha=0.25)
            axis.set_title(f"{key} ({len(group)} blocks)")
            axis.set_xlabel("step")
            axis.set_yscale("log")
            axis.grid(alpha=0.3)
        axes[0][0].set_ylabel("relative L1 error")
        axes[0][-1].legend()
        figure.suptitle(f"{self.metadata.get('model_class', '')}: error of reusing step i at step i+lag")
        figure.tight_layout()
        try:
            write_atomic(path, lambda file: figure.savefig(file, format="png", dpi=110))
        finally:
            plt.close(figure)


def _field(header: Mapping[str, Any], key: str, kind: type) -> Any:
    value = header[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"field {key!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _count(header: Mapping[str, Any], key: str) -> int:
    """A non-negative integer field (not a float, a bool or an infinity)."""
    value = _field(header, key, int)
    if value < 0:
        raise ValueError(f"field {key!r} must not be negative, got {value}")
    return value


def _component_spec(entry: Any) -> ComponentSpec:
    """A component of the header: ``[key, kind, name, block_kind, index]``."""
    if not isinstance(entry, list) or len(entry) != 5:
        raise ValueError(f"a component must be [key, kind, name, block_kind, index], got {entry!r:.80}")
    fields = dict(zip(("key", "kind", "name", "block_kind", "index"), entry, strict=False))
    for key in ("key", "kind", "name", "block_kind"):
        _field(fields, key, str)
    return ComponentSpec(fields["key"], fields["kind"], fields["name"], fields["block_kind"], _count(fields, "index"))


def _checked_metadata(header: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance fields of a header, each of the type it must have."""
    metadata: dict[str, Any] = {}
    for key in ("adapter", "model_class", "config_fingerprint", "solver"):
        if header.get(key) is not None:
            metadata[key] = _field(header, key, str)
    if "generations" in header:
        metadata["generations"] = _count(header, "generations")
    if "unit" in header:
        if header["unit"] not in UNITS:
            raise ValueError(f"field 'unit' must be one of {UNITS}, got {header['unit']!r:.40}")
        metadata["unit"] = header["unit"]
    if "probe_fill" in header:
        if header["probe_fill"] not in FILLS:
            raise ValueError(f"field 'probe_fill' must be one of {FILLS}, got {header['probe_fill']!r:.40}")
        metadata["probe_fill"] = header["probe_fill"]
    if "noise_coordinate" in header:
        if header["noise_coordinate"] not in COORDINATES:
            raise ValueError(f"field 'noise_coordinate' must be one of {COORDINATES}, got {header['noise_coordinate']!r:.40}")
        metadata["noise_coordinate"] = header["noise_coordinate"]
    if "timestep_scale" in header:
        scale = header["timestep_scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"field 'timestep_scale' must be a positive number, got {scale!r:.40}")
        metadata["timestep_scale"] = float(scale)
    if "scheduler_class" in header:
        metadata["scheduler_class"] = _field(header, "scheduler_class", str)
        metadata["scheduler_config"] = _field(header, "scheduler_config", dict)
    if "probe_kind" in header:
        metadata["probe_kind"] = _field(header, "probe_kind", str)
    return metadata


def _scheduler_config(scheduler: Any) -> dict[str, Any]:
    """The class and JSON config of a diffusers-style scheduler (so the grid of another step count
    can be rebuilt from the profile alone); nothing where it has no JSON config."""
    config = getattr(scheduler, "config", None)
    try:
        encoded = json.loads(json.dumps(dict(config))) if isinstance(config, Mapping) else None
    except (TypeError, ValueError):
        return {}
    return {"scheduler_class": type(scheduler).__name__, "scheduler_config": encoded} if isinstance(encoded, dict) else {}


def _pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """``tensor [r, steps]`` with zero rows appended up to ``rows``."""
    return torch.cat([tensor, tensor.new_zeros(rows - len(tensor), tensor.shape[1])])


def _read_metadata(data: bytes) -> dict[str, str]:
    """The string metadata of a safetensors buffer (header: 8-byte length, then JSON)."""
    if len(data) < 8:
        raise ValueError("file too short")
    length = int.from_bytes(data[:8], "little")
    if length > len(data) - 8:
        raise ValueError("header length exceeds file size")
    header = json.loads(data[8 : 8 + length])
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or _METADATA_KEY not in metadata:
        raise ValueError("no smoothcache metadata")
    return metadata
