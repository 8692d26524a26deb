"""Step sensitivity probes: measured on a real DiTPipeline, stored with the profile, used by schedules."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_planning import synthetic_profile

import smoothcache
from helpers import assert_pristine
from smoothcache import CalibrationError, ErrorProfile, ScheduleError
from smoothcache_core.planning import interpolated_run_costs, plan_runs, step_weights, weighted_rows
from smoothcache_core.sensitivity import per_sample_l1, probe_positions, significantly_better

STEPS = 8


def generate(pipe, seed: int = 0, steps: int = STEPS):
    return lambda: pipe(class_labels=[1, 2], num_inference_steps=steps, generator=torch.manual_seed(seed), output_type="pt").images


@pytest.fixture
def probed(dit_pipe):
    profile = smoothcache.calibrate(dit_pipe, generate(dit_pipe))
    return profile, smoothcache.probe(dit_pipe, profile, generate(dit_pipe))


def test_probe_measures_every_interior_step_and_leaves_the_model_as_it_was(dit_pipe, probed, tmp_path):
    profile, result = probed
    assert not profile.probed and result.probed
    assert result.probe_counts.tolist() == [[0] + [1] * (STEPS - 2) + [0]] and result.probed_run_length == 1
    assert (result.probe_sums[0, 1:-1] > 0).all() and torch.isfinite(result.probe_sums).all()
    assert torch.equal(result.sums, profile.sums)  # the calibration itself is untouched
    assert_pristine(dit_pipe.transformer)
    reference = generate(dit_pipe)()
    assert torch.equal(generate(dit_pipe)(), reference)  # no cache left: output as uncached

    weights = result.step_weights()
    assert weights.shape == (STEPS,) and np.isfinite(weights).all() and (weights >= 0).all()
    assert weights.mean() == pytest.approx(1.0)

    path = tmp_path / "probed.safetensors"
    result.save(path)
    loaded = ErrorProfile.load(path)
    assert torch.equal(loaded.probe_sums, result.probe_sums) and torch.equal(loaded.probe_counts, result.probe_counts)
    merged = loaded.merge(result)
    assert merged.probe_counts.tolist() == [[0] + [2] * (STEPS - 2) + [0]]
    assert np.allclose(merged.step_weights(), weights)
    assert merged.merge(profile).probe_counts.tolist() == merged.probe_counts.tolist()  # unprobed adds no probes


def test_sensitivity_weighting_is_asked_for_and_recorded(probed):
    profile, result = probed
    assert result.schedule(macs=0.7).tables == profile.schedule(macs=0.7).tables  # the paper's measure unless asked
    assert result.schedule(macs=0.7).provenance["weighting"] == "uniform"
    weighted = result.schedule(macs=0.7, weighting="sensitivity")
    assert (
        weighted.provenance["weighting"] == "sensitivity" and abs(weighted.provenance["mac_fraction"] - 0.7) <= 0.05
    )  # 8 steps: a coarse grid
    with pytest.raises(ScheduleError, match="no probes.*smoothcache.probe"):
        profile.schedule(macs=0.7, weighting="sensitivity")
    with pytest.raises(ScheduleError, match="weighting must be one of"):
        result.schedule(macs=0.7, weighting="final")


def test_a_generation_that_is_not_deterministic_is_refused(dit_pipe):
    profile = smoothcache.calibrate(dit_pipe, generate(dit_pipe))
    seeds = iter(range(100))
    with pytest.raises(CalibrationError, match="different outputs in two calls.*fixed generator"):
        smoothcache.probe(dit_pipe, profile, lambda: generate(dit_pipe, seed=next(seeds))())
    with pytest.raises(CalibrationError, match="ran 6 steps with this model but the profile has 8"):
        smoothcache.probe(dit_pipe, profile, generate(dit_pipe, steps=6))  # calibrated for 8 steps
    with pytest.raises(CalibrationError, match="must return the generated tensor"):
        smoothcache.probe(dit_pipe, profile, lambda: None)
    assert_pristine(dit_pipe.transformer)


def test_sensitivity_moves_reuse_to_the_steps_the_sample_tolerates():
    """Equal component errors everywhere, but late steps move the sample 10x more: the weighted
    greedy and optimal schedules reuse early and compute late; the paper's measure spreads evenly."""
    steps = 20
    curves = np.repeat(np.array([[[0.1], [0.2], [0.3]]]), 4, axis=0) * np.ones((4, 3, steps))
    for lag in range(1, 4):
        curves[:, lag - 1, steps - lag :] = np.nan
    profile = synthetic_profile(curves, [100, 100, 100, 100])
    finals = np.concatenate(([0.0], np.linspace(0.01, 0.1, steps - 2), [0.0]))
    counts = torch.tensor([[0] + [1] * (steps - 2) + [0]])
    probed = profile.with_probes(torch.from_numpy(finals)[None], counts)
    for method in ("greedy", "optimal"):
        table = probed.schedule(macs=0.6, method=method, weighting="sensitivity").tables["attn"]
        early, late = table[: steps // 2].count(0), table[steps // 2 :].count(0)
        assert early >= late + 2, (method, table)
    uniform = profile.schedule(macs=0.6).tables["attn"]
    assert abs(uniform[: steps // 2].count(0) - uniform[steps // 2 :].count(0)) <= 2


def test_step_weights_interpolate_between_probes_and_weight_the_step_reused_at():
    finals = np.array([0, 0.1, 0, 0, 0.4, 0, 0, 0.7, 0])
    probed = np.array([False, True, False, False, True, False, False, True, False])
    component = np.full(9, 0.1)
    weights = step_weights(finals, probed, component)
    assert weights.mean() == pytest.approx(1.0)
    assert np.all(np.diff(weights) >= -1e-12)  # 1, 4, 7 interpolated linearly: rising throughout
    rows = np.arange(6, dtype=float).reshape(2, 3)
    assert np.array_equal(weighted_rows(rows, [1, 2, 3]), np.array([[0 * 2, 1 * 3, np.nan], [3 * 3, np.nan, np.nan]]), equal_nan=True)
    assert probe_positions(50, None) == list(range(1, 49))
    spaced = probe_positions(50, 12)
    assert len(spaced) == 12 and spaced[0] == 1 and spaced[-1] == 48
    with pytest.raises(CalibrationError, match="at least 3 steps"):
        probe_positions(2, None)


@pytest.fixture
def run_probed(dit_pipe):
    profile = smoothcache.calibrate(dit_pipe, generate(dit_pipe))
    return profile, smoothcache.probe(dit_pipe, profile, generate(dit_pipe), run_lengths=2)


def test_runs_are_probed_and_planned_on_a_real_pipeline(dit_pipe, run_probed):
    profile, probed = run_probed
    # runs of 1 from every interior step, runs of 2 where they end before the last step
    assert probed.probe_counts.tolist() == [[0] + [1] * (STEPS - 2) + [0], [0] + [1] * (STEPS - 3) + [0, 0]]
    assert probed.probed_run_length == 2 and (probed.probe_sums[1, 1:-2] > 0).all()
    assert_pristine(dit_pipe.transformer)

    schedule = probed.schedule(macs=0.7, method="runs")
    tables = set(map(tuple, schedule.tables.values()))
    assert len(tables) == 1 and set(schedule.tables) == set(profile.schedule(alpha=0).tables)  # one plan, every type
    table = list(tables.pop())
    assert table[0] == table[-1] == 1 and "000" not in "".join(map(str, table))  # runs of at most 2
    assert schedule.provenance["method"] == "runs" and abs(schedule.provenance["mac_fraction"] - 0.7) <= 0.07  # one step ~ 0.12
    # the estimate is the sum of the probed errors of the chosen runs (every start was probed: no interpolation)
    runs, start = [], None
    for step, compute in enumerate(table + [1]):
        if not compute and start is None:
            start = step
        elif compute and start is not None:
            runs.append((start, step - start))
            start = None
    assert runs and schedule.provenance["estimated_error"] == pytest.approx(
        sum(float(probed.probe_sums[length - 1, s]) for s, length in runs)
    )

    reference = generate(dit_pipe)()
    with smoothcache.wrap(dit_pipe, schedule=schedule) as handle:
        cached = generate(dit_pipe)()
        assert handle.stats()["reused"] == 2 * table.count(0) * len(schedule.tables)  # 2 blocks per type
    assert torch.isfinite(cached).all() and not torch.equal(cached, reference)
    assert torch.equal(generate(dit_pipe)(), reference)


def test_run_probes_round_trip_merge_and_read_single_step_files(run_probed, tmp_path):
    profile, probed = run_probed
    path = tmp_path / "runs.safetensors"
    probed.save(path)
    loaded = ErrorProfile.load(path)
    assert torch.equal(loaded.probe_sums, probed.probe_sums) and torch.equal(loaded.probe_counts, probed.probe_counts)
    single = profile.with_probes(probed.probe_sums[:1], probed.probe_counts[:1])
    merged = single.merge(probed)  # one run length and two: the shorter is padded
    assert merged.probe_counts.tolist() == [[0] + [2] * (STEPS - 2) + [0], [0] + [1] * (STEPS - 3) + [0, 0]]
    # files written before runs were probed hold one value per step
    from safetensors.torch import load, save

    tensors = load(single.to_bytes())
    tensors["probe_sum"], tensors["probe_count"] = tensors["probe_sum"][0], tensors["probe_count"][0]
    header = {"smoothcache": json.dumps(single._header())}
    old = ErrorProfile.from_bytes(save(tensors, metadata=header))
    assert torch.equal(old.probe_counts, single.probe_counts) and old.probed_run_length == 1


def test_runs_schedule_refuses_what_it_cannot_plan(run_probed):
    profile, probed = run_probed
    with pytest.raises(ScheduleError, match="no probes.*run_lengths=2"):
        profile.schedule(macs=0.7, method="runs")
    with pytest.raises(ScheduleError, match="give macs= or speedup=, not alpha"):
        probed.schedule(0.1, method="runs")
    with pytest.raises(ScheduleError, match="longest probed run \\(2\\).*run_lengths=3"):
        probed.schedule(macs=0.7, method="runs", lookahead=3)
    with pytest.raises(ScheduleError, match="weighting at its default"):
        probed.schedule(macs=0.7, method="runs", weighting="sensitivity")
    with pytest.warns(
        UserWarning,
        match=r"macs=0.300 is not reachable within 1%: the most reuse with runs of at most 1 steps keeps 0\.\d+ .*probe longer runs",
    ):
        most = probed.schedule(macs=0.3, method="runs", lookahead=1)
    for table in most.tables.values():  # fewest computes: first and last computed, never two reuses in a row
        text = "".join(map(str, table))
        assert text[0] == text[-1] == "1" and "00" not in text and text.count("1") == STEPS // 2 + 1


@given(costs=st.lists(st.floats(0, 1), min_size=2 * 9, max_size=2 * 9))
@settings(max_examples=30, deadline=None)
def test_plan_runs_finds_the_cheapest_runs_for_every_compute_count(costs):
    """Against brute force over every table of 9 steps with runs of at most 2 (first and last computed)."""
    steps = 9
    run_cost = np.vstack([np.zeros(steps), np.array(costs).reshape(2, steps)])
    plan = plan_runs(run_cost)
    best: dict[int, float] = {}
    for middle in itertools.product((0, 1), repeat=steps - 2):
        table = [1, *middle, 1]
        if "000" in "".join(map(str, table)):
            continue
        total, last = 0.0, 0
        for step in range(1, steps):
            if table[step]:
                total += run_cost[step - last - 1, last]
                last = step
        best[sum(table)] = min(best.get(sum(table), np.inf), total)
    for computes, cost in best.items():
        assert plan.error[computes] == pytest.approx(cost)
        assert sum(plan.table(computes)) == computes
    assert np.isinf(plan.error[: min(best)]).all()


def test_unprobed_starts_are_interpolated_and_runs_end_before_the_last_step():
    steps = 8
    sums, counts = np.zeros((3, steps)), np.zeros((3, steps), dtype=np.int64)
    sums[0, [1, 5]], counts[0, [1, 5]] = [0.2, 0.6], 1
    sums[1, [1, 5]], counts[1, [1, 5]] = [1.0, 3.0], 2  # means 0.5 and 1.5
    run_cost = interpolated_run_costs(sums, counts)
    assert run_cost.shape == (4, steps) and (run_cost[0] == 0).all()
    # run_cost[l, q]: the run of l steps after a compute at q, i.e. from step q + 1
    assert np.allclose(run_cost[1, :6], [0.2, 0.3, 0.4, 0.5, 0.6, 0.6]) and np.isinf(run_cost[1, 6:]).all()
    assert np.allclose(run_cost[2, :5], [0.5, 0.75, 1.0, 1.25, 1.5]) and np.isinf(run_cost[2, 5:]).all()
    assert np.isinf(run_cost[3]).all()  # never probed: forbidden


def test_a_candidate_must_beat_the_evenly_spaced_plan_beyond_noise():
    baseline = np.array([0.10, 0.20, 0.30, 0.40])
    assert significantly_better(baseline * 0.8, baseline)  # lower on every sample by the same share
    assert not significantly_better(baseline * [0.5, 1.6, 0.6, 1.5], baseline)  # lower on average, by chance
    assert not significantly_better(baseline, baseline)
    # a tenfold smaller error on the sample with the largest one does not outweigh the others
    assert not significantly_better(baseline * [1.1, 1.1, 1.1, 0.1], baseline)
    assert significantly_better(np.array([0.1]), np.array([0.2])) and not significantly_better(np.array([0.3]), np.array([0.2]))
    output, reference = torch.tensor([[1.0, 1.0], [2.0, 2.0]]), torch.tensor([[1.0, 2.0], [2.0, 2.0]])
    assert per_sample_l1(output, reference).tolist() == pytest.approx([1 / 3, 0.0])


def test_select_schedule_measures_every_plan_and_keeps_the_closest_output(dit_pipe, run_probed):
    _, probed = run_probed
    with pytest.warns(UserWarning, match="closest evenly spaced schedule keeps 0.568"):  # 8 steps: one step ~ 0.12
        selected = smoothcache.select_schedule(dit_pipe, probed, generate(dit_pipe, seed=3), macs=0.6)
    assert_pristine(dit_pipe.transformer)
    measured = selected.provenance["selected_from"]
    # runs of at most 1 step cannot reuse this much: it would compute more than the baseline, so it is left out
    assert {"uniform", "uniform, linear", "uniform, quadratic", "greedy", "runs, lookahead 2", "spaced runs"} <= set(measured)
    assert "runs, lookahead 1" not in measured
    # the run plan filled by the line and the parabola too: the same tables
    runs = {
        name: measured[name]["mac_fraction"] for name in ("runs, lookahead 2", "runs, lookahead 2, linear", "runs, lookahead 2, quadratic")
    }
    assert len(set(runs.values())) == 1
    assert all(entry["mac_fraction"] <= 0.6 + 0.01 for entry in measured.values()) and selected.provenance["selected"] in measured
    # the error recorded for the chosen schedule is what it does to the output of that same generation
    reference = generate(dit_pipe, seed=3)()
    with smoothcache.wrap(dit_pipe, schedule=selected):
        output = generate(dit_pipe, seed=3)()
    error = float((output.double() - reference.double()).abs().sum() / reference.double().abs().sum())
    assert error == pytest.approx(measured[selected.provenance["selected"]]["error"], rel=1e-9)
    least = selected.provenance["least_measured"]
    assert measured[least]["error"] == min(entry["error"] for entry in measured.values())
    # the baseline (spaced runs where runs as long as the interval were probed) unless beaten beyond noise
    assert selected.provenance["baseline"] == "spaced runs" and selected.provenance["selected"] in (least, "spaced runs")
    assert selected.fill == "reuse"  # the probed fill
    with pytest.raises(ScheduleError, match="exactly one of macs="):
        smoothcache.select_schedule(dit_pipe, probed, generate(dit_pipe), macs=0.5, speedup=2.0)
    # at 0.3 of the MACs the evenly spaced plan skips runs longer than the 2 probed: no spaced runs candidate
    with pytest.warns(UserWarning, match="closest evenly spaced schedule"):
        low = smoothcache.select_schedule(dit_pipe, probed, generate(dit_pipe, seed=3), macs=0.3)
    assert "spaced runs" not in low.provenance["selected_from"] and "uniform" in low.provenance["selected_from"]
    assert low.provenance["baseline"] == "uniform" and low.provenance["selected"] in (low.provenance["least_measured"], "uniform")


def _runs_of(table: list[int]) -> list[tuple[int, int]]:
    """(last compute, length) of every run of skipped steps between two computes."""
    computes = [step for step, compute in enumerate(table) if compute]
    return [(a, b - a - 1) for a, b in itertools.pairwise(computes)]


@given(costs=st.lists(st.floats(0, 1), min_size=4 * 14, max_size=4 * 14), target=st.sampled_from([0.36, 0.45, 0.6, 0.8]))
@settings(max_examples=25, deadline=None)
def test_spaced_runs_keep_the_even_run_lengths_and_place_the_long_runs_where_they_cost_least(costs, target):
    """Against brute force over every table of 14 steps with the evenly spaced plan's computes, run
    lengths and last two steps: the same MACs as the evenly spaced plan, the least summed probed cost."""
    steps = 14
    profile = synthetic_profile(np.full((2, 1, steps), 0.1), [100, 100])
    sums = torch.tensor(costs, dtype=torch.float64).reshape(4, steps)
    counts = torch.ones(4, steps, dtype=torch.long)
    probed = profile.with_probes(sums, counts, fill="linear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the grid of 14 steps misses some targets by more than 1 %
        spaced = probed.schedule(macs=target, method="spaced-runs")
        uniform = probed.schedule(macs=target, method="uniform")
    table, even = list(spaced.tables["attn"]), list(uniform.tables["attn"])
    computes = sum(even)
    assert sum(table) == computes and spaced.provenance["mac_fraction"] == uniform.provenance["mac_fraction"]
    assert spaced.fill == "linear" and spaced.provenance["method"] == "spaced-runs"
    assert table[-2:] == even[-2:] == [1, 1]  # at every target here the evenly spaced plan computes the last two steps
    head, head_computes = steps - 1, computes - 1  # the runs are planned up to the step before last
    lengths = {(head - head_computes) // (head_computes - 1), -(-(head - head_computes) // (head_computes - 1))}
    run_cost = interpolated_run_costs(sums.numpy(), counts.numpy())
    best = np.inf
    for middle in itertools.product((0, 1), repeat=steps - 3):
        candidate = [1, *middle, 1, 1]
        runs = _runs_of(candidate[:-1])
        if sum(candidate) == computes and all(length in lengths for _, length in runs):
            best = min(best, sum(run_cost[length, start] for start, length in runs))
    assert all(length in lengths for _, length in _runs_of(table[:-1]))
    assert spaced.provenance["estimated_error"] == pytest.approx(best)
    assert spaced.provenance["estimated_error"] == pytest.approx(sum(run_cost[length, start] for start, length in _runs_of(table)))


def test_spaced_runs_refuse_runs_longer_than_probed(run_probed):
    _, probed = run_probed  # runs of at most 2 probed, 8 steps
    with pytest.raises(
        ScheduleError, match=r"skips runs of (\d) steps but the profile probed runs of at most 2; probe with run_lengths=\1"
    ):
        probed.schedule(macs=0.3, method="spaced-runs")
    with pytest.raises(ScheduleError, match="leave lookahead unset"):
        probed.schedule(macs=0.6, method="spaced-runs", lookahead=2)
    with pytest.raises(ScheduleError, match="method='spaced-runs' spends a MAC budget"):
        probed.schedule(0.1, method="spaced-runs")
