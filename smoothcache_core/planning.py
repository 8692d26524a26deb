"""The planners: from an error profile to a schedule, without running the model.

The algorithms work on *curves*, arrays ``rows[l - 1, i]``: the mean relative error of reusing
step ``i``'s output at step ``i + l`` (NaN where unknown, which never allows reuse): the paper's
greedy scan, an optimal plan under a MAC budget, and the plan of probed runs of reuse (pure numpy).
:func:`plan` applies them to a profile; :meth:`ErrorProfile.schedule` is its public entry.
The profile module holds the data; every planning decision lives here.
"""

from __future__ import annotations

import functools
import math
import numbers
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ScheduleError
from .files import library_version
from .schedule import FILLS, Schedule

if TYPE_CHECKING:
    from .profile import ErrorProfile

#: The planners of :func:`plan`.
METHODS = ("greedy", "optimal", "runs", "spaced-runs", "uniform")
#: How schedules weigh a step's error: all alike (the paper), or by the probed sensitivity of the final sample.
WEIGHTINGS = ("uniform", "sensitivity")
#: How far (in MAC fraction) a ``macs=`` request may land from its target without a warning. At 50
#: steps one step of every component is about 2 % of the MACs, so the step grid always allows this.
BUDGET_TOLERANCE = 0.01

#: Moving-average window over steps for the step weights: one probe is one batch, and its noise is
#: larger than the weight's change from one step to the next.
SMOOTHING_WINDOW = 5


def greedy_scan(rows: np.ndarray, alpha: float) -> list[int]:
    """The paper's greedy k-lookahead scan (SmoothCache's ``_scan_nrows_sublists``).

    At step ``i`` try the longest reuse first (``l = k .. 1``): if the error of reusing step ``i``
    at step ``i + l`` is at most ``alpha`` (and ``i + l`` is a step), compute at ``i``, reuse for
    the next ``l`` steps and continue at ``i + l + 1``; otherwise compute at ``i`` and continue at
    ``i + 1``. The first and the last step are always computed.
    """
    lags, steps = rows.shape
    table = [1] * steps
    i = 0
    while i < steps:
        for lag in range(lags, 0, -1):
            if i + lag <= steps - 1 and rows[lag - 1, i] <= alpha:
                table[i + 1 : i + lag + 1] = [0] * lag
                i += lag + 1
                break
        else:
            i += 1
    table[0] = table[-1] = 1
    return table


def estimated_error(rows: np.ndarray, table: list[int]) -> float:
    """Sum over reused steps of the error of the value they reuse (inf where unknown or lag > k)."""
    total, last = 0.0, 0
    for i, compute in enumerate(table):
        if compute:
            last = i
            continue
        lag = i - last
        value = rows[lag - 1, last] if lag <= rows.shape[0] else np.inf
        total += value if np.isfinite(value) else np.inf
    return total


@dataclass(frozen=True)
class CurvePlan:
    """For one curve: the least estimated error reachable with each number of computes."""

    error: np.ndarray  # error[n] for n computes (inf where impossible; index 0 and 1 unused unless steps == 1)
    choice: np.ndarray  # choice[n, p]: reuse run length before the compute at p, for backtracking

    def table(self, computes: int) -> list[int]:
        steps = self.choice.shape[1]
        table = [0] * steps
        position, n = steps - 1, computes
        while True:
            table[position] = 1
            if n == 1:
                break
            run = int(self.choice[n, position])
            position -= run + 1
            n -= 1
        return table


def plan_curve(rows: np.ndarray) -> CurvePlan:
    """Dynamic programming over steps: best error with ``n`` computes, first and last step computed.

    Reusing the value computed at ``q`` for ``r <= k`` steps costs ``rows[0, q] + ... + rows[r - 1, q]``.
    """
    lags, steps = rows.shape
    safe = np.where(np.isfinite(rows), rows, np.inf)
    run_cost = np.zeros((lags + 1, steps))
    for run in range(1, lags + 1):
        run_cost[run] = run_cost[run - 1] + safe[run - 1]
    return plan_runs(run_cost)


def plan_runs(run_cost: np.ndarray) -> CurvePlan:
    """Dynamic programming over steps: best total cost with ``n`` computes, first and last step computed.

    ``run_cost[r, q]`` is the cost of reusing the value computed at step ``q`` for the ``r`` steps
    after it (``run_cost[0] == 0``; inf forbids the run). ``best[n, p]`` is the least cost of steps
    ``0..p`` with ``n`` computes, the last at ``p``; a compute at ``p`` follows one at ``p - r - 1``.
    """
    lags, steps = run_cost.shape[0] - 1, run_cost.shape[1]
    run_cost = np.where(np.isnan(run_cost), np.inf, run_cost)
    best = np.full((steps + 1, steps), np.inf)
    choice = np.zeros((steps + 1, steps), dtype=np.int64)
    best[1, 0] = 0.0
    for n in range(2, steps + 1):
        candidates = np.full((lags + 1, steps), np.inf)
        for run in range(lags + 1):
            shift = run + 1
            candidates[run, shift:] = best[n - 1, :-shift] + run_cost[run, :-shift]
        choice[n] = candidates.argmin(axis=0)
        best[n] = candidates.min(axis=0)
    return CurvePlan(error=best[:, steps - 1].copy(), choice=choice)


def interpolated_run_costs(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``run_cost[r, q]`` for :func:`plan_runs` from probed runs: ``sums[l - 1, s] / counts[l - 1, s]``
    is the mean final error of reusing every component for ``l`` steps from step ``s``.

    Starts that were not probed take the linear interpolation of the probed ones of the same length;
    a run must leave the last step computed, and lengths never probed are forbidden (inf).
    """
    lengths, steps = sums.shape
    run_cost = np.full((lengths + 1, steps), np.inf)
    run_cost[0] = 0.0
    for length in range(1, lengths + 1):
        starts = np.arange(1, steps - length)  # the run covers start .. start + length - 1 <= steps - 2
        known = starts[counts[length - 1, starts] > 0]
        if len(known) == 0:
            continue
        means = sums[length - 1, known] / counts[length - 1, known]
        run_cost[length, starts - 1] = np.interp(starts, known, means)
    return run_cost


def _min_plus(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """c[t] = min over i + j = t of first[i] + second[j], with the i achieving it."""
    merged = np.full(len(first) + len(second) - 1, np.inf)
    argument = np.zeros(len(merged), dtype=np.int64)
    for i, value in enumerate(first):
        if not np.isfinite(value):
            continue
        candidate = value + second
        window = merged[i : i + len(second)]
        better = candidate < window
        window[better] = candidate[better]
        argument[i : i + len(second)][better] = i
    return merged, argument


def optimal_counts(plans: list[CurvePlan], costs: list[int], weights: list[float], budget: int) -> list[int] | None:
    """Number of computes per curve minimising the weighted error with ``sum(cost * n) <= budget``.

    Exact: curves of equal cost are merged by min-plus convolution over their total compute count;
    the cost classes are then combined as Pareto fronts (cost, error), dropping points over the
    budget or dominated. Returns None when even the fewest computes exceed the budget.
    """
    classes: dict[int, list[int]] = {}
    for index, cost in enumerate(costs):
        classes.setdefault(cost, []).append(index)
    class_results = []
    for cost, members in classes.items():
        combined = plans[members[0]].error * weights[members[0]]
        traces = []
        for member in members[1:]:
            combined, argument = _min_plus(combined, plans[member].error * weights[member])
            traces.append(argument)
        class_results.append((cost, members, combined, traces))

    front_cost = np.array([0], dtype=np.int64)
    front_error = np.array([0.0])
    back: list[tuple[np.ndarray, np.ndarray]] = []
    for cost, _, combined, _ in class_results:
        totals = np.flatnonzero(np.isfinite(combined))
        pair_cost = front_cost[:, None] + cost * totals[None, :]
        pair_error = front_error[:, None] + combined[totals][None, :]
        keep = pair_cost <= budget
        if not keep.any():
            return None
        rows, columns = np.nonzero(keep)
        order = np.lexsort((pair_error[rows, columns], pair_cost[rows, columns]))
        rows, columns = rows[order], columns[order]
        errors = pair_error[rows, columns]
        running = np.minimum.accumulate(errors)
        pareto = np.concatenate(([True], errors[1:] < running[:-1]))
        rows, columns = rows[pareto], columns[pareto]
        front_cost, front_error = pair_cost[rows, columns], pair_error[rows, columns]
        back.append((rows, totals[columns]))
    best = int(np.argmin(front_error))
    counts = [0] * len(plans)
    for (_, members, _, traces), (rows, totals) in zip(reversed(class_results), reversed(back), strict=False):
        total = int(totals[best])
        best = int(rows[best])
        for member, argument in zip(reversed(members[1:]), reversed(traces), strict=False):
            first = int(argument[total])
            counts[member] = total - first
            total = first
        counts[members[0]] = total
    return counts


def step_weights(final_errors: np.ndarray, probed: np.ndarray, component_errors: np.ndarray) -> np.ndarray:
    """Per step, the final-output error per unit of component error, interpolated between probes,
    smoothed, and scaled to a mean of 1 (so weighted errors stay on the scale of the paper's α).

    ``final_errors[s]``: mean final relative error of reusing at step ``s`` (where ``probed[s]``);
    ``component_errors[s]``: the components' mean error of reusing step ``s - 1`` at step ``s``.
    """
    steps = len(final_errors)
    known = probed & np.isfinite(component_errors)
    if not known.any():
        raise ValueError("no probed step has a measured component error")
    positions = np.flatnonzero(known)
    ratios = np.where(component_errors[known] > 0, final_errors[known] / np.maximum(component_errors[known], 1e-12), 0.0)
    weights = np.interp(np.arange(steps), positions, ratios)
    padded = np.pad(weights, SMOOTHING_WINDOW // 2, mode="edge")
    smoothed = np.convolve(padded, np.ones(SMOOTHING_WINDOW) / SMOOTHING_WINDOW, mode="valid")
    mean = smoothed.mean()
    return smoothed / mean if mean > 0 else np.ones(steps)


def weighted_rows(rows: np.ndarray, weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """``rows[l - 1, i] * weights[i + l]``: an error curve in units of the final sample's error."""
    weights = np.asarray(weights, dtype=np.float64)
    lags, steps = rows.shape
    result = np.full_like(rows, np.nan)
    for lag in range(1, lags + 1):
        result[lag - 1, : steps - lag] = rows[lag - 1, : steps - lag] * weights[lag:]
    return result


def mac_budget(macs: Any, speedup: Any) -> float:
    """The fraction of MACs to keep, from exactly one of ``macs`` (in (0, 1]) or ``speedup`` (a finite
    number >= 1, its inverse); anything else is refused with what was given."""
    if (macs is None) == (speedup is None):
        raise ScheduleError("give exactly one of macs= (the fraction of MACs to keep) or speedup=")
    name, value = ("macs", macs) if macs is not None else ("speedup", speedup)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ScheduleError(f"{name} must be a finite number, got {value!r:.40}")
    if speedup is not None:
        if not speedup >= 1:
            raise ScheduleError(f"speedup must be >= 1 (1 = no caching), got {speedup}")
        return 1.0 / float(speedup)
    if not 0 < macs <= 1:
        raise ScheduleError(f"macs is the fraction of MACs to keep, in (0, 1]; got {macs}")
    return float(macs)


# -- planners: a profile in, a schedule out ---------------------------------------------------
def plan(
    profile: ErrorProfile,
    alpha: float | None = None,
    *,
    speedup: float | None = None,
    macs: float | None = None,
    granularity: str = "type",
    method: str = "greedy",
    lookahead: int | None = None,
    weighting: str = "uniform",
    fill: str | None = None,
) -> Schedule:
    """The schedule :meth:`ErrorProfile.schedule` returns (see there for the methods and arguments)."""
    targets = [name for name, value in (("alpha", alpha), ("speedup", speedup), ("macs", macs)) if value is not None]
    if len(targets) != 1:
        raise ScheduleError(f"give exactly one of alpha, speedup or macs (got {targets or 'none'})")
    if alpha is None:
        macs = mac_budget(macs, speedup)
    if weighting not in WEIGHTINGS:
        raise ScheduleError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if method in ("runs", "spaced-runs"):
        return _runs_schedule(profile, alpha, macs, granularity, lookahead, weighting, fill, spaced=method == "spaced-runs")
    fill = fill or "reuse"
    if fill not in FILLS:
        raise ScheduleError(f"fill must be one of {FILLS}, got {fill!r}")
    keys, curves, members = profile.curves(granularity, lookahead)
    if weighting == "sensitivity":
        weights = profile.step_weights()
        curves = [weighted_rows(curve, weights) for curve in curves]
    group_macs = _group_macs(profile, members)
    if method == "greedy":
        if macs is None:
            if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
                raise ScheduleError(f"alpha must be a finite number >= 0, got {alpha!r}")
            tables = [greedy_scan(curve, alpha) for curve in curves]
        else:
            alpha, tables = _greedy_for_target(profile, curves, group_macs, macs)
    elif method == "optimal":
        if macs is None:
            raise ScheduleError("method='optimal' spends a MAC budget: give macs= or speedup=, not alpha")
        plans = [plan_curve(curve) for curve in curves]
        lags = curves[0].shape[0]
        tables = _optimal(
            profile, plans, group_macs, [len(m) for m in members], macs, f"lookahead {lags}", "calibrate with a larger lookahead"
        )
    elif method == "uniform":
        if macs is None:
            raise ScheduleError("method='uniform' spends a MAC budget: give macs= or speedup=, not alpha")
        tables = [_uniform_for_target(profile, group_macs, macs)] * len(curves)
    else:
        raise ScheduleError(f"method must be one of {METHODS}, got {method!r}")
    error = sum(len(m) * estimated_error(curve, table) for curve, table, m in zip(curves, tables, members, strict=False))
    return _make_schedule(
        profile, keys, tables, group_macs, lookahead or profile.lookahead, granularity, method, weighting, alpha, macs, error, fill
    )


def _make_schedule(
    profile: ErrorProfile,
    keys: list[str],
    tables: list[list[int]],
    group_macs: list[int],
    lookahead: int,
    granularity: str,
    method: str,
    weighting: str | None,
    alpha: float | None,
    macs: float | None,
    error: float,
    fill: str,
) -> Schedule:
    fraction = _fraction(profile, tables, group_macs)
    provenance = {
        **{key: profile.metadata.get(key) for key in ("adapter", "model_class", "config_fingerprint", "solver")},
        "unit": profile.unit,
        "steps": profile.steps,
        "lookahead": lookahead,
        "granularity": granularity,
        "method": method,
        "fill": fill,
        "weighting": weighting,
        "alpha": alpha,
        "target_macs": macs,
        "mac_fraction": fraction,
        "ideal_speedup": 1.0 / fraction,
        "estimated_error": error,
        "calibration_generations": profile.metadata.get("generations"),
        "created_by": f"smoothcache {library_version()}",
    }
    return Schedule(dict(zip(keys, tables, strict=False)), provenance, fill)


def _runs_schedule(
    profile: ErrorProfile,
    alpha: float | None,
    macs: float | None,
    granularity: str,
    lookahead: int | None,
    weighting: str,
    fill: str | None,
    spaced: bool = False,
) -> Schedule:
    """``method="runs"`` (or ``"spaced-runs"``): one reuse plan for every component from the probed
    runs (see :meth:`ErrorProfile.schedule`)."""
    method = "spaced-runs" if spaced else "runs"
    if macs is None:
        raise ScheduleError(f"method={method!r} spends a MAC budget: give macs= or speedup=, not alpha")
    if weighting != "uniform":
        raise ScheduleError(f"method={method!r} plans on probed final-output errors already; leave weighting at its default")
    if spaced and lookahead is not None:
        raise ScheduleError("method='spaced-runs' takes its run lengths from the budget; leave lookahead unset")
    probed = profile.probed_run_length
    if probed == 0:
        raise ScheduleError(
            "method='runs' needs the final-output error of runs of reuse, and this profile has no probes; probe it "
            "(smoothcache.probe(model, profile, generate, run_lengths=2) or `smoothcache calibrate --probes N --run-lengths 2`)"
        )
    if fill not in (None, profile.probe_fill):
        raise ScheduleError(
            f"method='runs' plans on probes measured with the {profile.probe_fill!r} fill, so its schedule fills the same "
            f"way; probe with fill={fill!r} for a {fill!r} schedule"
        )
    length = probed if lookahead is None else lookahead
    if not 1 <= length <= probed:
        raise ScheduleError(
            f"lookahead must be between 1 and the longest probed run ({probed}), got {lookahead}; probe with run_lengths={lookahead}"
        )
    probe_sums, probe_counts = profile._probe_tensors()
    run_cost = interpolated_run_costs(probe_sums[:length].numpy(), probe_counts[:length].numpy())
    keys, _, members = profile.curves(granularity)
    group_macs = _group_macs(profile, members)
    if spaced:
        table, error = _spaced_runs_table(profile, run_cost, group_macs, macs)
    else:
        plan = plan_runs(run_cost)
        table = _optimal(profile, [plan], [sum(group_macs)], [1], macs, f"runs of at most {length} steps", "probe longer runs")[0]
        error = float(plan.error[sum(table)])
    return _make_schedule(
        profile, keys, [table] * len(keys), group_macs, length, granularity, method, None, None, macs, error, profile.probe_fill
    )


def _spaced_runs_table(profile: ErrorProfile, run_cost: np.ndarray, group_macs: list[int], macs: float) -> tuple[list[int], float]:
    """The evenly spaced plan's computes and run lengths (the two around the interval the budget
    allows), with the longer runs placed where the probes measured them cheapest; like the evenly
    spaced plan (and FORA) it computes the step before last and the last.

    Probed costs of runs do not simply add up: a plan free to mix runs of every length trades a
    cluster of computes at the steps where one run costs most for long runs elsewhere, and the
    errors of those long runs compound. Keeping every run at the interval FORA would use leaves
    the probes only the choice they measure well: where a run one step longer hurts least. The
    last steps' errors are corrected by no later step: spreading that compute over the other runs
    instead lost 1-12 dB on the trained digits DiT (all six sampler settings of
    ``benchmarks/planning.py``, 2x-3x MACs).
    """
    uniform = _uniform_for_target(profile, group_macs, macs)
    tail = [1] if uniform[-2] else []  # the step before last and the last computed: plan up to the former
    head = profile.steps - len(tail)
    computes = sum(uniform) - len(tail)
    skipped, runs = head - computes, computes - 1  # the head computes its first and last step: at least one run
    short, long = skipped // runs, -(-skipped // runs)
    probed = run_cost.shape[0] - 1
    if long > probed:
        raise ScheduleError(
            f"at macs={macs:g} the evenly spaced plan skips runs of {long} steps but the profile probed runs of at most "
            f"{probed}; probe with run_lengths={long} (`smoothcache calibrate --run-lengths {long}`)"
        )
    allowed = np.full((run_cost.shape[0], head), np.inf)
    allowed[[short, long]] = run_cost[[short, long], :head]
    plan = plan_runs(allowed)
    return plan.table(computes) + tail, float(plan.error[computes])


def _group_macs(profile: ErrorProfile, members: list[list[int]]) -> list[int]:
    """MACs of one call of each schedule list's components together."""
    return [sum(profile.macs[i] for i in group) for group in members]


def _fraction(profile: ErrorProfile, tables: Sequence[list[int]], group_macs: Sequence[int]) -> float:
    if profile.evaluation_macs * profile.steps <= 0:
        raise ScheduleError("the profile has no MAC counts; recalibrate to derive schedules by compute")
    return mac_fraction(profile.evaluation_macs, tables, group_macs)


def mac_fraction(evaluation_macs: int, tables: Sequence[Sequence[int]], group_macs: Sequence[int]) -> float:
    """The MACs ``tables`` keep (one per group of ``group_macs``), as a fraction of computing every
    evaluation of their grid (``evaluation_macs`` each)."""
    total = evaluation_macs * len(tables[0])
    skipped = sum(m * list(table).count(0) for m, table in zip(group_macs, tables, strict=False))
    return (total - skipped) / total


def _greedy_for_target(
    profile: ErrorProfile, curves: list[np.ndarray], group_macs: list[int], target: float
) -> tuple[float, list[list[int]]]:
    """The α whose greedy tables keep the MAC fraction closest to ``target`` (see :meth:`_closest`)."""
    values = np.concatenate([curve[np.isfinite(curve)].ravel() for curve in curves] + [np.zeros(1)])
    candidates = np.unique(values)

    def tables_at(index: int) -> list[list[int]]:
        return [greedy_scan(curve, float(candidates[index])) for curve in curves]

    fraction = functools.partial(_fraction, profile, group_macs=group_macs)
    most = tables_at(len(candidates) - 1)
    if fraction(most) > target:
        _warn_budget(target, fraction(most), f"the most reuse with lookahead {curves[0].shape[0]}", "calibrate with a larger lookahead")
        return float(candidates[-1]), most
    low, high = 0, len(candidates) - 1  # invariant: the schedule at `high` meets the target
    while low < high:
        middle = (low + high) // 2
        if fraction(tables_at(middle)) <= target:
            high = middle
        else:
            low = middle + 1
    index, tables = high, tables_at(high)
    gap = target - fraction(tables)
    if high > 0 and gap > BUDGET_TOLERANCE and fraction(tables_at(high - 1)) - target < gap:
        index, tables = high - 1, tables_at(high - 1)
    _warn_budget(target, fraction(tables), "the closest greedy schedule", "method='optimal' has a finer grid")
    return float(candidates[index]), tables


def _optimal(
    profile: ErrorProfile, plans: list[CurvePlan], group_macs: list[int], weights: list[int], target: float, limit: str, remedy: str
) -> list[list[int]]:
    """The tables of least weighted error whose MAC fraction is closest to ``target``.

    The least error within the budget usually lands within :data:`BUDGET_TOLERANCE` below it;
    where the step grid leaves a larger gap, the least error within the same distance above the
    target is taken if it lands closer. Out of reach, the most reuse is taken, with a warning."""
    steps, total = profile.steps, profile.evaluation_macs * profile.steps
    if total <= 0:
        raise ScheduleError("the profile has no MAC counts; recalibrate to derive schedules by compute")
    fixed = total - steps * sum(group_macs)  # MACs outside every cached component
    weights_ = [float(w) for w in weights]

    def fraction(counts: list[int]) -> float:
        return (fixed + sum(m * n for m, n in zip(group_macs, counts, strict=False))) / total

    def within(share: float) -> list[int] | None:  # a fraction computed from integers maps back exactly
        return optimal_counts(plans, group_macs, weights_, math.floor(share * total * (1 + 1e-12)) - fixed)

    counts = within(target)
    if counts is None:
        counts = [int(np.flatnonzero(np.isfinite(plan.error))[0]) for plan in plans]
        _warn_budget(target, fraction(counts), f"the most reuse with {limit}", remedy)
    elif target - fraction(counts) > BUDGET_TOLERANCE:
        gap = target - fraction(counts)
        above = within(target + gap)
        if above is not None and abs(fraction(above) - target) < gap:
            counts = above
        _warn_budget(target, fraction(counts), f"the closest schedule with {limit}", "the step grid allows no closer")
    return [plan.table(count) for plan, count in zip(plans, counts, strict=False)]


def spaced_table(steps: int, computes: int) -> list[int]:
    """FORA's fixed interval at any budget: ``computes - 1`` steps computed as evenly as the grid
    allows from the first step to the one before last, and the last step (as FORA computes it).

    Where the interval divides ``steps - 2`` this is FORA's table exactly."""
    table = [0] * steps
    for position in np.round(np.linspace(0, steps - 2, computes - 1)).astype(int):
        table[int(position)] = 1
    table[-1] = 1
    return table


def _uniform_for_target(profile: ErrorProfile, group_macs: list[int], target: float) -> list[int]:
    """The evenly spaced table (every list alike) whose MAC fraction is closest to ``target``."""
    steps = profile.steps
    tables = [spaced_table(steps, computes) for computes in range(2, steps + 1)]
    fractions = [_fraction(profile, [table] * len(group_macs), group_macs) for table in tables]
    best = int(np.argmin([abs(fraction - target) for fraction in fractions]))
    _warn_budget(target, fractions[best], "the closest evenly spaced schedule", "the step grid allows no closer")
    return tables[best]


def _warn_budget(target: float, reached: float, what: str, remedy: str) -> None:
    """Warn when a MAC target is missed by more than :data:`BUDGET_TOLERANCE`."""
    if abs(reached - target) <= BUDGET_TOLERANCE:
        return
    warnings.warn(
        f"macs={target:.3f} is not reachable within {BUDGET_TOLERANCE:.0%}: {what} keeps {reached:.3f} of the MACs, used instead; {remedy}",
        stacklevel=_outside_the_library(),
    )


def _outside_the_library() -> int:
    """The ``stacklevel`` of the first caller outside smoothcache, so a warning names the user's line."""
    frame, level = sys._getframe(2), 2  # level 1 is the function that warns
    while frame.f_back is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("smoothcache", "smoothcache_core"):
        frame, level = frame.f_back, level + 1
    return level
