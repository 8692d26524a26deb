"""From error curves to compute/reuse tables: the paper's greedy scan and an optimal plan under a budget.

A *curve* is an array ``rows[l - 1, i]``: the mean relative error of reusing step ``i``'s output at
step ``i + l`` (NaN where unknown, which never allows reuse). Pure numpy; no model is run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

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
    for (cost, members, combined, traces), (rows, totals) in zip(reversed(class_results), reversed(back)):
        total = int(totals[best])
        best = int(rows[best])
        for member, argument in zip(reversed(members[1:]), reversed(traces)):
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
