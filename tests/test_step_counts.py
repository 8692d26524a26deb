"""One calibration for every step count and sampler: noise levels, the one-pass sensitivity, plans per grid."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler

import smoothcache
from helpers import assert_pristine
from smoothcache_core.grid import plan_for_grid, sensitivity_of
from smoothcache_core.noise import NoiseMap, solver_steps

STEPS = 8
LABELS = (1, 2)
SEEDS = (0, 1)


def generate(pipe, seed: int, steps: int = STEPS, labels=LABELS) -> torch.Tensor:
    images = pipe(
        class_labels=list(labels), num_inference_steps=steps, generator=torch.Generator().manual_seed(seed), output_type="np"
    ).images
    return torch.from_numpy(images)


@pytest.fixture(scope="module")
def calibrated(dit_pipeline_dir):
    """A tiny DiT pipeline's profile of DDIM 8 steps with its one-pass sensitivity."""
    from conftest import load_pipeline

    pipe = load_pipeline(dit_pipeline_dir)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    references = [generate(pipe, seed) for seed in SEEDS]
    profile = smoothcache.calibrate(pipe, lambda: [generate(pipe, seed) for seed in SEEDS], sensitivity=True)
    return profile, references


def test_profile_knows_its_timesteps_and_noise_levels(calibrated, dit_pipe, tmp_path):
    profile, _ = calibrated
    dit_pipe.scheduler = DDIMScheduler.from_config(dit_pipe.scheduler.config)
    dit_pipe.scheduler.set_timesteps(STEPS)
    assert profile.timesteps.tolist() == dit_pipe.scheduler.timesteps.tolist()
    alphas = dit_pipe.scheduler.alphas_cumprod[dit_pipe.scheduler.timesteps].double()
    expected = 0.5 * torch.log((1 - alphas) / alphas)
    np.testing.assert_allclose(profile.levels, expected.numpy(), rtol=1e-6)
    assert profile.metadata["noise_coordinate"] == "log-noise" and profile.metadata["probe_kind"] == "in-batch"
    profile.save(tmp_path / "p.safetensors")
    loaded = smoothcache.ErrorProfile.load(tmp_path / "p.safetensors")
    assert torch.equal(loaded.timesteps, profile.timesteps)
    np.testing.assert_array_equal(loaded.levels, profile.levels)
    assert loaded.metadata == profile.metadata


def test_one_pass_sensitivity_equals_probing_each_step_alone(calibrated, dit_pipe):
    """Each sample's row of the in-batch pass is the generation that reuses at its step alone: its final
    error equals that of a generation where every sample reuses at that step (rows do not interact)."""
    profile, references = calibrated
    dit_pipe.scheduler = DDIMScheduler.from_config(dit_pipe.scheduler.config)
    counts, sums = profile.probe_counts[0].numpy(), profile.probe_sums[0].numpy()
    assert counts.sum() == len(SEEDS) * len(LABELS) and counts[0] == counts[-1] == 0
    keys = profile.curves("type")[0]
    assigned = [int(s) for s in np.round(np.linspace(1, STEPS - 2, len(SEEDS) * len(LABELS)))]
    for k, step in enumerate(assigned):
        generation, row = divmod(k, len(LABELS))
        table = [1] * STEPS
        table[step] = 0
        schedule = smoothcache.Schedule(dict.fromkeys(keys, table), {"steps": STEPS})
        with smoothcache.wrap(dit_pipe, schedule=schedule):
            output = generate(dit_pipe, SEEDS[generation])
        reference = references[generation].double()
        alone = float((output[row].double() - reference[row]).abs().sum() / reference[row].abs().sum())
        assert alone > 0
        assert sums[step] / counts[step] == pytest.approx(alone, rel=1e-4)
    assert sensitivity_of(profile) is None  # four probed steps are too few to fit the curve: plans weigh by step size


def test_sensitivity_needs_the_samples_and_seeds(dit_pipe):
    dit_pipe.scheduler = DDIMScheduler.from_config(dit_pipe.scheduler.config)
    with pytest.raises(smoothcache.CalibrationError, match="return them"):
        smoothcache.calibrate(dit_pipe, lambda: dit_pipe(class_labels=[1], num_inference_steps=4, output_type="pil"), sensitivity=True)
    assert_pristine(dit_pipe.transformer)
    calls = iter(range(10))
    with pytest.raises(smoothcache.CalibrationError, match="seed every generation"):
        smoothcache.calibrate(dit_pipe, lambda: generate(dit_pipe, next(calls)), sensitivity=True)
    assert_pristine(dit_pipe.transformer)


def test_plans_for_other_grids_keep_the_budget_and_the_solver_steps(calibrated):
    profile, _ = calibrated
    dpm = DPMSolverMultistepScheduler.from_config(DDIMScheduler().config)
    dpm.set_timesteps(12)
    plan = profile.schedule(macs=0.6, timesteps=dpm.timesteps.tolist())
    table = next(iter(plan.tables.values()))
    assert plan.steps == 12 and table[0] == table[-1] == 1 and 0 < sum(table) < 12
    assert abs(plan.provenance["mac_fraction"] - 0.6) < 0.05 and plan.provenance["fill_at"] == "timesteps"
    longest = max(len(run) for run in "".join(map(str, table)).split("1"))
    assert longest <= -(-12 // sum(table))
    heun = HeunDiscreteScheduler.from_config(DDIMScheduler().config)
    heun.set_timesteps(6)
    grid = heun.timesteps.tolist()
    assert solver_steps(grid) == [[i, i + 1] for i in range(0, 10, 2)] + [[10]]  # the last step is first order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_for_grid(profile, grid, macs=0.6)
    table = next(iter(plan.tables.values()))
    assert 0 in table and all(table[i] == table[i + 1] for i in range(0, 10, 2)) and table[-3:] == (1, 1, 1)


def test_wrapped_pipeline_plans_for_every_step_count_and_scheduler(calibrated, dit_pipe):
    profile, _ = calibrated
    dit_pipe.scheduler = DDIMScheduler.from_config(dit_pipe.scheduler.config)
    uncached = {steps: generate(dit_pipe, 7, steps) for steps in (6, 12)}
    with smoothcache.wrap(dit_pipe, profile=profile, macs=1.0) as handle:  # nothing skipped: exact
        for steps, reference in uncached.items():
            assert torch.equal(generate(dit_pipe, 7, steps), reference)
        assert handle.stats()["reused"] == 0
    with smoothcache.wrap(dit_pipe, profile=profile, macs=0.55) as handle:
        for steps in (6, 12, 6):
            output = generate(dit_pipe, 7, steps)
            assert torch.isfinite(output).all() and not torch.equal(output, uncached[steps])
            assert handle.schedule.steps == steps
        stats = handle.stats()
        assert stats["planned_grids"] == 2 and stats["generations"] == 3 and stats["reused"] > 0
        dit_pipe.scheduler = EulerDiscreteScheduler.from_config(dit_pipe.scheduler.config, timestep_spacing="linspace")
        generate(dit_pipe, 7, 6)
        assert handle.stats()["planned_grids"] == 3 and handle.stats()["interrupted"] == 0
        assert handle.schedule.provenance["timesteps"] == tuple(float(t) for t in dit_pipe.scheduler.timesteps)
    assert_pristine(dit_pipe.transformer)


def test_a_bare_model_follows_the_grid_it_was_told_and_no_other(calibrated):
    """Without a pipeline the grid comes from plan_for(); a generation starting elsewhere computes
    everything rather than follow a plan made for another grid."""
    from smoothcache.reference import pipelines

    profile, _ = calibrated
    model = pipelines.dit_pipeline("tiny", seed=0).transformer
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(10)
    reference = pipelines.sample_dit(model, 10)
    other = pipelines.sample_dit(model, 5)
    with smoothcache.wrap(model, profile=profile, macs=0.55) as handle:
        with pytest.warns(UserWarning, match="plan_for"):
            assert torch.equal(pipelines.sample_dit(model, 10), reference)
        assert handle.stats()["reused"] == 0
        plan = handle.plan_for(scheduler.timesteps.tolist())
        output = pipelines.sample_dit(model, 10)
        assert not torch.equal(output, reference) and handle.stats()["reused"] > 0
        assert handle.schedule is plan
        reused = handle.stats()["reused"]
        assert torch.equal(pipelines.sample_dit(model, 5), other)  # starts off the grid given: computes
        assert handle.stats()["reused"] == reused


def test_planning_refuses_what_it_cannot_do(calibrated, dit_pipe):
    profile, _ = calibrated
    model = dit_pipe.transformer
    with pytest.raises(smoothcache.WrapError, match="not both"):
        smoothcache.wrap(dit_pipe, schedule=profile.schedule(macs=0.6), profile=profile, macs=0.6)
    with pytest.raises(smoothcache.WrapError, match="profile= too"):
        smoothcache.wrap(dit_pipe, macs=0.6)
    with pytest.raises(smoothcache.WrapError, match="budget"):
        smoothcache.wrap(dit_pipe, profile=profile)
    old = type(profile)(profile.components, profile.sums, profile.sums_sq, profile.counts, profile.macs, profile.evaluation_macs, {})
    with pytest.raises(smoothcache.ScheduleError, match="recalibrate"):
        smoothcache.wrap(dit_pipe, profile=old, macs=0.6)
    with (
        smoothcache.wrap(dit_pipe, schedule=profile.schedule(macs=0.6)) as handle,
        pytest.raises(smoothcache.ScheduleError, match="fixed schedule"),
    ):
        handle.plan_for([900.0, 500.0, 100.0])
    foreign = dataclasses.replace(profile, metadata={**profile.metadata, "adapter": "stable-audio"})
    with pytest.raises(smoothcache.ScheduleError, match="made for adapter 'stable-audio'"):
        smoothcache.wrap(dit_pipe, profile=foreign, macs=0.6)
    with pytest.raises(smoothcache.ScheduleError, match="caches components"):
        smoothcache.wrap(dit_pipe, profile=profile, macs=0.6, unit="block")
    assert_pristine(model)


def test_the_fill_follows_the_timesteps_of_its_grid():
    """On an unevenly spaced grid a plan's polynomial fill sits at the timesteps, not the step indices."""
    timesteps = (999.0, 700.0, 500.0, 360.0, 250.0, 120.0)
    table = [1, 1, 1, 0, 1, 1]
    planned = smoothcache.Schedule({"attn": table}, {"steps": 6, "timesteps": timesteps, "fill_at": "timesteps"}, "quadratic")
    by_index = smoothcache.Schedule({"attn": table}, {"steps": 6}, "quadratic")
    from smoothcache_core.fills import lagrange_weights
    from smoothcache_core.schedule import _fill_weights

    assert _fill_weights(tuple(map(bool, table)), 3, planned.fill_positions)[3] == lagrange_weights([999.0, 700.0, 500.0], 360.0)
    assert by_index.fill_positions is None
    assert smoothcache.Schedule.from_dict(planned.to_dict()).fill_positions == timesteps


def test_noise_map_extends_linearly_past_its_table():
    noise = NoiseMap(np.array([0.0, 1.0, 2.0]), np.array([0.0, 2.0, 3.0]))
    np.testing.assert_allclose(noise([-1.0, 0.5, 3.0]), [-2.0, 1.0, 4.0])


def test_a_call_starting_part_way_down_its_grid_is_planned_for_the_steps_it_runs(calibrated, dit_pipe):
    """An img2img-style call sets 10 timesteps and runs the last 6: the plan is for those 6."""
    profile, _ = calibrated
    dit_pipe.scheduler = DDIMScheduler.from_config(dit_pipe.scheduler.config)
    model, scheduler = dit_pipe.transformer, dit_pipe.scheduler
    latent = torch.randn(
        4, model.config.in_channels, model.config.sample_size, model.config.sample_size, generator=torch.Generator().manual_seed(0)
    )
    labels = torch.tensor([1, 2, 1000, 1000])
    with smoothcache.wrap(dit_pipe, profile=profile, macs=0.6) as handle, torch.no_grad():
        scheduler.set_timesteps(10)
        for t in scheduler.timesteps[4:]:
            model(latent, timestep=t.expand(4), class_labels=labels)
        assert handle.schedule.steps == 6 and handle.schedule.provenance["timesteps"] == tuple(float(t) for t in scheduler.timesteps[4:])
        assert handle.stats()["reused"] > 0
