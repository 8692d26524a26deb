"""Plans for any grid: a profile's measurements carried to the noise levels another call will use.

A grid is the sequence of timesteps the model will be evaluated at, one per evaluation (a pipeline's
``scheduler.timesteps`` after ``set_timesteps``; Heun's repeats its timesteps). The profile knows,
per component, the error of a reuse as a function of the two noise levels (:class:`ErrorSurface`),
and, if it was probed, the final sample's sensitivity per level (:class:`Sensitivity`). For the
grid's levels that gives every run of reuse its estimated cost on the final sample,

    cost(run of r steps after a compute at q) = sum over j = 1..r of W(q + j) * E(q -> q + j),

and the run planner (:func:`~smoothcache_core.planning.plan_runs`) picks the runs of least cost that
fit the MAC budget, one table for every component, no run longer than the
evenly spaced plan's cycle. Every step of a second-order solver is planned as one (both its
evaluations compute or reuse together); the last solver step always computes, and a second-order
solver's last two. Milliseconds, no model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .errors import ScheduleError
from .files import library_version
from .noise import ErrorSurface, Sensitivity, solver_steps, step_sizes
from .planning import BUDGET_TOLERANCE, _group_macs, _outside_the_library, greedy_scan, mac_budget, mac_fraction, plan_runs, spaced_table
from .schedule import FILL_DEPTH, FILLS, Schedule

if TYPE_CHECKING:
    from .profile import ErrorProfile

#: The planners for a grid: the run planner on estimated costs (the default), the evenly spaced plan
#: (FORA's interval at any budget), and the paper's greedy scan on the carried error curves.
GRID_METHODS = ("runs", "uniform", "greedy")
#: How far past the calibrated noise levels (in ``u``) a grid may reach before a warning.
RANGE_TOLERANCE = 0.5


def grid_levels(profile: ErrorProfile, timesteps: Sequence[float]) -> np.ndarray:
    """The grid's noise levels, by the profile's noise map; warns where they leave the calibrated range."""
    noise = profile.noise_map
    if noise is None:
        raise ScheduleError(
            "the profile does not record where its steps sit on the noise schedule (made before smoothcache 0.3, "
            f"or from a schedule file), so it plans only for its own {profile.steps} steps; recalibrate to plan for any grid"
        )
    levels = noise(np.asarray(timesteps, dtype=np.float64))
    calibrated = profile.levels
    low, high = float(np.nanmin(calibrated)), float(np.nanmax(calibrated))
    later = levels[1:]  # the first evaluation always computes: only what it is reused at is estimated
    outside = later[(later < low - RANGE_TOLERANCE) | (later > high + RANGE_TOLERANCE)]
    if len(outside):
        warnings.warn(
            f"the grid reaches noise levels {float(outside.min()):.2f}..{float(outside.max()):.2f} ({noise.coordinate}) outside the "
            f"calibrated {low:.2f}..{high:.2f}: its errors there are extrapolated; calibrate on a grid that covers them",
            stacklevel=_outside_the_library(),
        )
    return levels


def _mean_curve(profile: ErrorProfile, members: list[list[int]]) -> np.ndarray:
    """The MAC-weighted mean of the components' error curves (the cost of one table for all of them)."""
    mean = profile.mean.numpy()
    weights = np.array([profile.macs[i] for group in members for i in group], dtype=np.float64)
    rows = np.stack([mean[i] for group in members for i in group])
    if weights.sum() <= 0:
        weights = np.ones(len(rows))
    known = np.isfinite(rows)
    total = np.where(known, rows * weights[:, None, None], 0.0).sum(axis=0)
    norm = np.where(known, weights[:, None, None], 0.0).sum(axis=0)
    return np.where(norm > 0, total / np.maximum(norm, 1e-30), np.nan)


def sensitivity_of(profile: ErrorProfile) -> Sensitivity | None:
    """The profile's probed sensitivity per level: each probed step's final error per unit of the
    components' error there, per unit of its step size; None if it was not probed at single steps."""
    if profile.probe_sums is None or profile.probe_counts is None or profile.noise_map is None or profile.probe_fill != "reuse":
        return None  # probes that filled measured another error than a reuse's
    counts = profile.probe_counts[0].numpy()
    probed = np.flatnonzero(counts > 0)
    if len(probed) == 0:
        return None
    finals = profile.probe_sums[0].numpy()[probed] / counts[probed]
    curve = _mean_curve(profile, [[i] for i in range(len(profile.components))])
    component = curve[0, probed - 1]  # reusing step s - 1's value at s
    sizes = step_sizes(profile.levels)[probed]
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = finals / component / sizes
    return Sensitivity.fit(profile.levels[probed], weights)


def _units(timesteps: Sequence[float]) -> tuple[list[list[int]], list[int]]:
    """The solver steps of a grid and, per step, the evaluation whose level stands for it (its first)."""
    steps = solver_steps(timesteps)
    return steps, [step[0] for step in steps]


def _expand(unit_table: list[int], units: list[list[int]], evaluations: int) -> list[int]:
    table = [1] * evaluations
    for decision, unit in zip(unit_table, units, strict=True):
        for evaluation in unit:
            table[evaluation] = decision
    return table


def plan_for_grid(
    profile: ErrorProfile,
    timesteps: Sequence[float],
    *,
    macs: float | None = None,
    speedup: float | None = None,
    alpha: float | None = None,
    method: str = "runs",
    fill: str = "quadratic",
    granularity: str = "type",
    warn_budget: bool = True,
) -> Schedule:
    """The schedule for a call evaluating the model at ``timesteps`` (see the module doc).

    ``method="runs"`` (default) needs a MAC budget (``macs=`` or ``speedup=``); with a probed profile
    the costs weigh each step by the measured sensitivity, else by its step size alone.
    ``method="uniform"`` is the evenly spaced plan; ``method="greedy"`` the paper's scan at
    threshold ``alpha`` on the carried curves (per component type, or per block with
    ``granularity="block"``). ``warn_budget``: warn when the grid's evaluations cannot meet the
    budget within 1 %."""
    if method not in GRID_METHODS:
        raise ScheduleError(f"method must be one of {GRID_METHODS} for a grid, got {method!r}")
    if not isinstance(fill, str) or fill not in FILLS:
        raise ScheduleError(f"fill must be one of {FILLS}, got {fill!r:.40}")
    grid = [float(t) for t in timesteps]
    if len(grid) < 2 or not all(math.isfinite(t) for t in grid):
        raise ScheduleError(f"a grid is at least two finite timesteps, one per model evaluation; got {len(grid)}")
    keys, curves, members = profile.curves(granularity)
    group_macs = _group_macs(profile, members)
    evaluation_macs = profile.evaluation_macs
    if evaluation_macs <= 0:
        raise ScheduleError("the profile has no MAC counts; recalibrate to plan by compute")
    units, firsts = _units(grid)
    if method == "greedy":
        if alpha is None or not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
            raise ScheduleError(f"method='greedy' takes a threshold: give alpha= (a finite number >= 0), got {alpha!r}")
        levels = grid_levels(profile, grid)[firsts]
        tables = []
        for curve in curves:
            surface = ErrorSurface(curve, profile.levels)
            tables.append(_expand(greedy_scan(surface.rows(levels, curve.shape[0]), alpha), units, len(grid)))
        target = None
    else:
        target = mac_budget(macs, speedup)
        computes = _computes_for(target, units, len(grid), evaluation_macs, sum(group_macs))
        if method == "uniform":
            table = _expand(spaced_table(len(units), computes), units, len(grid))
        else:
            table = _run_table(profile, members, grid, units, firsts, computes)
        tables = [table] * len(keys)
    fraction = mac_fraction(evaluation_macs, tables, group_macs)
    if warn_budget and target is not None and abs(fraction - target) > BUDGET_TOLERANCE:
        warnings.warn(
            f"macs={target:.3f} is not reachable within {BUDGET_TOLERANCE:.0%} on a grid of {len(grid)} evaluations: the closest "
            f"plan keeps {fraction:.3f} of the MACs",
            stacklevel=_outside_the_library(),
        )
    provenance = {
        **{key: profile.metadata.get(key) for key in ("adapter", "model_class", "config_fingerprint", "solver")},
        "unit": profile.unit,
        "steps": len(grid),
        "timesteps": grid,
        "calibrated_steps": profile.steps,
        "granularity": granularity,
        "method": method,
        "costs": "sensitivity" if method == "runs" and sensitivity_of(profile) is not None else None,
        "fill": fill,
        "fill_at": "timesteps",
        "alpha": alpha,
        "target_macs": target,
        "mac_fraction": fraction,
        "ideal_speedup": 1.0 / fraction,
        "calibration_generations": profile.metadata.get("generations"),
        "created_by": f"smoothcache {library_version()}",
    }
    return Schedule(dict(zip(keys, tables, strict=True)), provenance, fill)


def _computes_for(target: float, units: list[list[int]], evaluations: int, evaluation_macs: int, cached_macs: int) -> int:
    """How many solver steps compute (every component alike) for the MAC fraction closest to ``target``."""

    def fraction(computes: int) -> float:
        table = _expand([1] * computes + [0] * (len(units) - computes), units, evaluations)
        return mac_fraction(evaluation_macs, [table], [cached_macs])

    return min(range(2 if len(units) >= 2 else 1, len(units) + 1), key=lambda n: abs(fraction(n) - target))


def _run_table(
    profile: ErrorProfile, members: list[list[int]], grid: list[float], units: list[list[int]], firsts: list[int], computes: int
) -> list[int]:
    """The least-cost runs with ``computes`` computed solver steps (see the module doc)."""
    steps = len(units)
    if computes >= steps:
        return [1] * len(grid)
    longest = -(-steps // computes)  # the budget's interval: no run longer than an evenly spaced plan's cycle
    levels = grid_levels(profile, grid)[firsts]
    surface = ErrorSurface(_mean_curve(profile, members), profile.levels)
    rows = surface.rows(levels, longest)
    sensitivity = sensitivity_of(profile)
    weights = sensitivity.weights(levels) if sensitivity is not None else step_sizes(levels)
    # the last solver step computes; a second-order solver's last two do (its final corrector
    # evaluation moves the sample most, while its repeated levels make the reuse look free)
    computed_tail = 2 if any(len(unit) > 1 for unit in units) else 1
    cost = np.full((longest + 1, steps), np.inf)
    cost[0] = 0.0
    for run in range(1, longest + 1):
        added = np.full(steps, np.inf)
        added[: steps - run] = rows[run - 1, : steps - run] * weights[run:]
        cost[run] = cost[run - 1] + added
        cost[run, max(steps - computed_tail - run, 0) :] = np.inf  # a run ends before the computed tail
    plan = plan_runs(cost)
    if not np.isfinite(plan.error[computes]):
        return _expand(spaced_table(steps, computes), units, len(grid))
    return _expand(plan.table(computes), units, len(grid))


#: How many grids' plans a :class:`GridPlanner` keeps (a server meets a handful of step counts).
KEPT_PLANS = 32


class GridPlanner:
    """One profile and budget, planned for whatever grid each generation runs on.

    :meth:`schedule_for` plans (milliseconds) the first time a grid is met and keeps the plan;
    :meth:`model_timesteps` turns a scheduler's timesteps into the model's (the calibration measured
    the scale between them)."""

    def __init__(
        self,
        profile: ErrorProfile,
        *,
        macs: float | None = None,
        speedup: float | None = None,
        method: str = "runs",
        fill: str = "quadratic",
        granularity: str = "type",
    ) -> None:
        if profile.noise_map is None:
            raise ScheduleError(
                "the profile does not record its steps' timesteps (made before smoothcache 0.3), so it cannot plan for other "
                "grids; recalibrate, or make a schedule for its own steps with profile.schedule(...)"
            )
        if method == "greedy":
            raise ScheduleError("a planner for every grid works at a MAC budget: give macs= or speedup= with method 'runs' or 'uniform'")
        self.profile = profile
        self.macs = mac_budget(macs, speedup)
        self.method, self.fill, self.granularity = method, fill, granularity
        self._plans: dict[tuple[float, ...], Schedule] = {}
        #: The plan for the calibrated grid itself, made once: it checks every argument, and a
        #: wrap checks it fits the model (not kept among the plans of the grids generations met).
        self.own_plan = self._plan(tuple(profile.timesteps.tolist()) if profile.timesteps is not None else ())

    @property
    def depth(self) -> int:
        """Computed values its plans' fill needs per component."""
        return FILL_DEPTH[self.fill]

    def model_timesteps(self, scheduler_timesteps: Sequence[float]) -> list[float]:
        """The timesteps the model receives for a scheduler's (the calibration's scale between them)."""
        scale = float(self.profile.metadata.get("timestep_scale", 1.0))
        return [scale * float(t) for t in scheduler_timesteps]

    def _plan(self, grid: tuple[float, ...]) -> Schedule:
        # a few evaluations allow only coarse fractions: the closest is the plan, shown in its provenance
        return plan_for_grid(
            self.profile, grid, macs=self.macs, method=self.method, fill=self.fill, granularity=self.granularity, warn_budget=False
        )

    def schedule_for(self, timesteps: Sequence[float]) -> Schedule:
        """The plan for a generation evaluating the model at ``timesteps`` (kept for the next one)."""
        grid = tuple(float(t) for t in timesteps)
        plan = self._plans.get(grid)
        if plan is None:
            plan = self._plan(grid)
            if len(self._plans) >= KEPT_PLANS:
                self._plans.pop(next(iter(self._plans)))
            self._plans[grid] = plan
        return plan

    @property
    def plans(self) -> dict[tuple[float, ...], Schedule]:
        """The plans made so far, by grid."""
        return dict(self._plans)
