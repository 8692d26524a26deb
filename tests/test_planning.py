"""Schedules from profiles: the paper's scan reproduced, targets met, optimal never worse, resampling."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothcache import ErrorProfile, Schedule, ScheduleError
from smoothcache_core import ComponentSpec
from smoothcache_core.planning import BUDGET_TOLERANCE, estimated_error, greedy_scan, spaced_table


def original_scan(row_lists: list[list[float]], threshold: float, schedule_length: int) -> list[int]:
    """A direct re-statement of SmoothCache 0.1.1's CalibrationHelper._scan_nrows_sublists."""
    schedule = [None] * schedule_length
    i = 0
    while i < schedule_length:
        used = False
        for row_idx in range(len(row_lists) - 1, -1, -1):
            row = row_lists[row_idx]
            if i >= len(row):
                continue
            if row[i] <= threshold:
                schedule[i] = 1
                for s in range(1, row_idx + 2):
                    if i + s < schedule_length:
                        schedule[i + s] = 0
                i += row_idx + 2
                used = True
                break
        if not used:
            schedule[i] = 1
            i += 1
    schedule[0] = schedule[-1] = 1
    return [1 if value is None else value for value in schedule]


def additive_curves(velocities: np.ndarray, lags: int) -> np.ndarray:
    """rows[l-1, i] = error of spanning steps i..i+l, the sum of per-step changes (NaN past the end)."""
    steps = velocities.shape[-1] + 1
    rows = np.full(velocities.shape[:-1] + (lags, steps), np.nan)
    cumulative = np.concatenate([np.zeros(velocities.shape[:-1] + (1,)), np.cumsum(velocities, axis=-1)], axis=-1)
    for lag in range(1, lags + 1):
        rows[..., lag - 1, : steps - lag] = cumulative[..., lag:] - cumulative[..., :-lag]
    return rows


def synthetic_profile(curves: np.ndarray, macs: list[int], overhead: int = 10) -> ErrorProfile:
    """A profile with the given mean curves [components, lags, steps] (two blocks per type)."""
    count = curves.shape[0]
    components = tuple(
        ComponentSpec(
            f"blocks.{i // 2}.{'attn' if i % 2 == 0 else 'mlp'}",
            "self_attn" if i % 2 == 0 else "ffn",
            "attn" if i % 2 == 0 else "mlp",
            "blocks",
            i // 2,
        )
        for i in range(count)
    )
    counts = torch.where(torch.isfinite(torch.from_numpy(curves)), 4, 0).long()
    sums = torch.from_numpy(np.nan_to_num(curves)) * counts
    return ErrorProfile(components, sums, sums * sums / counts.clamp_min(1), counts, tuple(macs), sum(macs) + overhead, {"adapter": "dit"})


velocity_arrays = st.integers(4, 40).flatmap(
    lambda steps: st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=steps - 1, max_size=steps - 1).map(np.array)
)


@given(velocities=velocity_arrays, lags=st.integers(1, 4), alpha=st.floats(0, 2))
def test_greedy_reproduces_the_original_scan(velocities, lags, alpha):
    rows = additive_curves(velocities, lags)
    steps = rows.shape[1]
    row_lists = [list(rows[lag, : steps - lag - 1]) for lag in range(lags)]
    assert greedy_scan(rows, alpha) == original_scan(row_lists, alpha, steps)


@given(
    rows=st.integers(3, 30).flatmap(lambda n: st.lists(st.lists(st.floats(0, 1), min_size=n, max_size=n), min_size=1, max_size=4)),
    alpha=st.floats(0, 1),
)
def test_greedy_reproduces_the_original_scan_on_arbitrary_curves(rows, alpha):
    array = np.array(rows)
    lags, steps = array.shape
    for lag in range(lags):
        array[lag, max(steps - lag - 1, 0) :] = np.nan
    row_lists = [list(array[lag, : max(steps - lag - 1, 0)]) for lag in range(lags)]
    table = greedy_scan(array, alpha)
    assert table == original_scan(row_lists, alpha, steps)
    assert table[0] == table[-1] == 1
    longest = max(len(run) for run in "".join(map(str, table)).split("1"))
    assert longest <= lags


@given(velocities=velocity_arrays, lags=st.integers(1, 4), alphas=st.lists(st.floats(0, 3), min_size=2, max_size=2))
def test_compute_fraction_never_increases_as_alpha_grows(velocities, lags, alphas):
    rows = additive_curves(velocities, lags)
    low, high = sorted(alphas)
    assert sum(greedy_scan(rows, high)) <= sum(greedy_scan(rows, low))


two_type_velocities = st.integers(5, 30).flatmap(
    lambda steps: st.lists(st.lists(st.floats(0.001, 1.0), min_size=steps - 1, max_size=steps - 1), min_size=4, max_size=4).map(np.array)
)


@settings(max_examples=40, deadline=None)
@given(velocities=two_type_velocities, target=st.floats(0.3, 1.0))
def test_a_mac_target_lands_on_the_closest_greedy_schedule(velocities, target):
    """Within 1 % below the target; else the closer of the greedy schedules just below and just above
    it; out of reach, the most reuse; off by more than 1 %, a warning."""
    profile = synthetic_profile(additive_curves(velocities, 3), macs=[30, 60, 30, 60])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schedule = profile.schedule(macs=target)
    reached = schedule.provenance["mac_fraction"]
    assert profile.mac_report(schedule).fraction == pytest.approx(reached)
    warned = any("not reachable within 1%" in str(w.message) for w in caught)
    assert warned == (abs(reached - target) > BUDGET_TOLERANCE)
    fractions = sorted({profile.schedule(alpha=float(a)).provenance["mac_fraction"] for a in _greedy_alphas(profile)})
    below = [f for f in fractions if f <= target]
    if not below:  # out of reach: the most reuse
        assert reached == pytest.approx(min(fractions))
        return
    if target - max(below) <= BUDGET_TOLERANCE:
        assert reached == pytest.approx(max(below))
    else:
        above = [f for f in fractions if f > target]
        assert abs(reached - target) == pytest.approx(min(target - max(below), *(f - target for f in above[:1])))


def _greedy_alphas(profile) -> list[float]:
    """Every α where a greedy schedule of ``profile`` can change, and 0."""
    values = np.concatenate([curve[np.isfinite(curve)].ravel() for curve in profile.curves()[1]] + [np.zeros(1)])
    return list(np.unique(values))


@settings(max_examples=40, deadline=None)
@given(velocities=two_type_velocities, alpha=st.floats(0.0, 2.0), granularity=st.sampled_from(["type", "block"]))
def test_optimal_is_never_worse_than_greedy_at_the_same_macs(velocities, alpha, granularity):
    profile = synthetic_profile(additive_curves(velocities, 3), macs=[30, 60, 30, 60])
    greedy = profile.schedule(alpha=alpha, granularity=granularity)
    optimal = profile.schedule(macs=greedy.provenance["mac_fraction"], method="optimal", granularity=granularity)
    assert optimal.provenance["mac_fraction"] <= greedy.provenance["mac_fraction"] + 1e-12
    assert optimal.provenance["estimated_error"] <= greedy.provenance["estimated_error"] + 1e-9
    for table in optimal.tables.values():
        assert table[0] == table[-1] == 1
        assert max(len(run) for run in "".join(map(str, table)).split("1")) <= 3


def test_type_and_block_granularity_keys():
    profile = synthetic_profile(additive_curves(np.full((4, 9), 0.1), 3), macs=[30, 60, 30, 60])
    assert set(profile.schedule(alpha=0.15).tables) == {"attn", "mlp"}
    assert set(profile.schedule(alpha=0.15, granularity="block").tables) == {
        "blocks.0.attn",
        "blocks.0.mlp",
        "blocks.1.attn",
        "blocks.1.mlp",
    }
    schedule = profile.schedule(speedup=1.5)
    assert schedule.provenance["ideal_speedup"] >= 1.5
    assert schedule.provenance["method"] == "greedy" and schedule.provenance["alpha"] is not None


def test_estimated_error_adds_the_reused_values_errors():
    rows = np.array([[0.1, 0.2, 0.3, np.nan], [0.5, 0.6, np.nan, np.nan]])
    assert estimated_error(rows, [1, 0, 0, 1]) == pytest.approx(0.1 + 0.5)
    assert estimated_error(rows, [1, 1, 0, 1]) == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of alpha, speedup or macs"),
        ({"alpha": 0.1, "macs": 0.5}, "exactly one"),
        ({"alpha": -1}, "alpha must be a finite number"),
        ({"macs": 1.5}, "fraction of MACs to keep"),
        ({"speedup": 0.5}, "speedup must be >= 1"),
        ({"alpha": 0.1, "method": "optimal"}, "give macs= or speedup="),
        ({"macs": 0.5, "method": "magic"}, "method must be"),
        ({"alpha": 0.1, "granularity": "layer"}, "granularity must be"),
        ({"alpha": 0.1, "lookahead": 5}, "lookahead must be between 1 and the profile's 3"),
    ],
)
def test_schedule_arguments_are_checked(kwargs, message):
    profile = synthetic_profile(additive_curves(np.full((4, 9), 0.1), 3), macs=[30, 60, 30, 60])
    with pytest.raises(ScheduleError, match=message):
        profile.schedule(**kwargs)


@given(
    table=st.lists(st.sampled_from([0, 1]), min_size=3, max_size=60).map(lambda t: [1] + t[1:-1] + [1]),
    steps=st.integers(2, 120),
)
def test_resample_keeps_ends_and_run_lengths(table, steps):
    schedule = Schedule({"attn": table})
    resampled = schedule.resample(steps)
    new = resampled.tables["attn"]
    assert len(new) == steps and new[0] == new[-1] == 1
    longest = max(len(run) for run in "".join(map(str, table)).split("1"))
    assert max(len(run) for run in "".join(map(str, new)).split("1")) <= longest
    assert resampled.provenance["resampled_from"] == len(table)
    assert schedule.resample(len(table)).tables["attn"] == tuple(table)


def test_resample_follows_relative_position():
    schedule = Schedule({"attn": [1, 0, 1, 0, 1, 0, 1, 1, 1, 1]})
    assert schedule.resample(19).tables["attn"] == (1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1)


@pytest.mark.parametrize("method", ["greedy", "optimal"])
def test_an_unreachable_target_takes_the_most_reuse_with_a_warning(method):
    profile = synthetic_profile(additive_curves(np.full((4, 9), 0.1), 3), macs=[30, 60, 30, 60])
    most = profile.schedule(alpha=1e9).provenance["mac_fraction"]
    with pytest.warns(UserWarning, match=rf"macs=0.050 is not reachable within 1%: the most reuse .* keeps {most:.3f}"):
        schedule = profile.schedule(macs=0.05, method=method)
    assert schedule.provenance["mac_fraction"] == pytest.approx(most)


@pytest.mark.parametrize("method", ["greedy", "optimal", "runs"])
def test_mac_targets_land_within_one_percent_at_fifty_steps(method):
    """At 50 steps the step grid allows every target from the most reuse up: each lands within
    ±0.01 of the MAC fraction asked for, above or below, without a warning."""
    generator = np.random.default_rng(0)
    profile = synthetic_profile(additive_curves(generator.uniform(0.01, 0.2, (4, 49)), 3), macs=[30, 60, 30, 60])
    run_costs = torch.from_numpy(generator.uniform(0.01, 0.1, (3, 50)).cumsum(axis=0))
    profile = profile.with_probes(run_costs, torch.ones(3, 50, dtype=torch.long))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        most = profile.schedule(macs=1e-3, method=method).provenance["mac_fraction"]
    for target in np.linspace(most + BUDGET_TOLERANCE, 0.95, 12):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            schedule = profile.schedule(macs=float(target), method=method)
        assert abs(schedule.provenance["mac_fraction"] - target) <= BUDGET_TOLERANCE, (target, schedule.provenance["mac_fraction"])


@pytest.mark.parametrize("steps", [20, 25, 30, 50])
def test_uniform_is_fora_where_the_interval_fits_and_lands_on_any_budget(steps):
    profile = synthetic_profile(additive_curves(np.full((4, steps), 0.1), 3), macs=[30, 60, 30, 60])
    for interval in (2, 3, 4):
        fora = Schedule.fora(steps, interval, list(profile.schedule(alpha=0).tables))
        if (steps - 2) % interval == 0:
            assert spaced_table(steps, sum(next(iter(fora.tables.values())))) == list(next(iter(fora.tables.values())))
    for target in (0.75, 0.5, 0.4, 0.34):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            schedule = profile.schedule(macs=target, method="uniform")
        tables = {tuple(table) for table in schedule.tables.values()}
        assert len(tables) == 1 and schedule.provenance["method"] == "uniform"
        table = tables.pop()
        reached = schedule.provenance["mac_fraction"]
        assert table[0] == table[-1] == 1 and abs(reached - target) <= 0.5 / steps  # every list alike: the grid is one step
        assert bool(caught) == (abs(reached - target) > BUDGET_TOLERANCE)
        gaps = {b - a for a, b in itertools.pairwise([i for i, c in enumerate(table[:-1]) if c])}
        assert max(gaps) - min(gaps) <= 1  # as even as the grid allows
