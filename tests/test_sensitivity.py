"""Step sensitivity probes: measured on a real DiTPipeline, stored with the profile, used by schedules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_pristine
from test_planning import synthetic_profile

import smoothcache
from smoothcache import CalibrationError, ErrorProfile, ScheduleError
from smoothcache_core.planning import step_weights, weighted_rows
from smoothcache_core.sensitivity import probe_positions

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
    assert result.probe_counts.tolist() == [0] + [1] * (STEPS - 2) + [0]
    assert (result.probe_sums[1:-1] > 0).all() and torch.isfinite(result.probe_sums).all()
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
    assert merged.probe_counts.tolist() == [0] + [2] * (STEPS - 2) + [0]
    assert np.allclose(merged.step_weights(), weights)
    assert merged.merge(profile).probe_counts.tolist() == merged.probe_counts.tolist()  # unprobed adds no probes


def test_sensitivity_weighting_is_asked_for_and_recorded(probed):
    profile, result = probed
    assert result.schedule(macs=0.7).tables == profile.schedule(macs=0.7).tables  # the paper's measure unless asked
    assert result.schedule(macs=0.7).provenance["weighting"] == "uniform"
    weighted = result.schedule(macs=0.7, weighting="sensitivity")
    assert weighted.provenance["weighting"] == "sensitivity" and weighted.provenance["mac_fraction"] <= 0.7
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
    counts = torch.tensor([0] + [1] * (steps - 2) + [0])
    probed = profile.with_probes(torch.from_numpy(finals), counts)
    for method in ("greedy", "optimal"):
        table = probed.schedule(macs=0.6, method=method, weighting="sensitivity").tables["attn"]
        early, late = table[: steps // 2].count(0), table[steps // 2 :].count(0)
        assert early > late + 2, (method, table)
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
