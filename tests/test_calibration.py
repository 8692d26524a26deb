"""Calibration on a real DiTPipeline and on small models whose errors are known exactly."""

from __future__ import annotations

import pytest
import torch

import smoothcache
from helpers import ProjAdapter, assert_pristine
from smoothcache import CalibrationError, ErrorProfile, ProfileError

STEPS = 8
LAYERS = 2


def run_pipeline(pipe, seeds=(0, 1), labels=(1, 2), steps=STEPS):
    def run():
        for seed in seeds:
            pipe(class_labels=list(labels), num_inference_steps=steps, generator=torch.manual_seed(seed), output_type="pt")

    return run


def test_calibration_profile_of_a_dit_pipeline(dit_pipe, tmp_path):
    profile = smoothcache.calibrate(dit_pipe, run_pipeline(dit_pipe), lookahead=3)
    assert_pristine(dit_pipe.transformer)
    assert [c.key for c in profile.components] == ["blocks.0.attn1", "blocks.0.ff", "blocks.1.attn1", "blocks.1.ff"]
    assert tuple(profile.sums.shape) == (2 * LAYERS, 3, STEPS)
    samples = 2 * 2 * 2  # generations x labels x CFG rows
    for lag in (1, 2, 3):
        assert (profile.counts[:, lag - 1, : STEPS - lag] == samples).all()
        assert (profile.counts[:, lag - 1, STEPS - lag :] == 0).all()
    measured = profile.counts > 0
    assert torch.isfinite(profile.mean[measured]).all() and (profile.mean[measured] >= 0).all()
    assert (profile.std[measured] >= 0).all()
    assert profile.metadata["solver"] == "DDIMScheduler" and profile.metadata["generations"] == 2
    assert profile.evaluation_macs > sum(profile.macs) > 0

    path = tmp_path / "dit.profile.safetensors"
    profile.save(path)
    loaded = ErrorProfile.load(path)
    for name in ("sums", "sums_sq", "counts"):
        assert torch.equal(getattr(loaded, name), getattr(profile, name))
    assert loaded.components == profile.components and loaded.macs == profile.macs
    assert loaded.metadata == profile.metadata and loaded.evaluation_macs == profile.evaluation_macs

    schedule = profile.schedule(alpha=0.5)
    assert set(schedule.tables) == {"attn1", "ff"} and schedule.steps == STEPS
    with smoothcache.wrap(dit_pipe, schedule=schedule) as handle:  # provenance fits this model: no warning
        run_pipeline(dit_pipe, seeds=(0,))()
        assert handle.stats()["reused"] == LAYERS * sum(table.count(0) for table in schedule.tables.values())


def test_split_cfg_branches_are_compared_only_with_themselves(dit_pipe):
    from test_dit_pipeline import _sample_split_cfg

    transformer = dit_pipe.transformer
    split = smoothcache.calibrate(transformer, lambda: _sample_split_cfg(transformer, [3, 7], STEPS, 0, split=True))
    batched = smoothcache.calibrate(transformer, lambda: _sample_split_cfg(transformer, [3, 7], STEPS, 0, split=False))
    assert torch.equal(split.counts, batched.counts)
    torch.testing.assert_close(split.mean, batched.mean, rtol=1e-4, atol=1e-6, equal_nan=True)


class Drifting(torch.nn.Module):
    """``forward(x, t)``: a projection of ``x`` plus a term that moves with ``t`` only for chosen samples."""

    def __init__(self, moving: list[bool], nan_at: float | None = None) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        self.register_buffer("moving", torch.tensor(moving, dtype=torch.float32)[:, None])
        self.nan_at = nan_at
        self.eval()

    def forward(self, x, t):
        if self.nan_at is not None and float(t) == self.nan_at:
            x = x * float("nan")
        return self.proj(x + self.moving * t / 1000)


def DriftingAdapter() -> ProjAdapter:
    return ProjAdapter(Drifting)


def drive(model, timesteps=(900.0, 700.0, 500.0, 300.0, 100.0), x=None):
    x = torch.ones(2, 4) if x is None else x

    def run():
        for t in timesteps:
            model(x, torch.tensor(t))

    return run


def test_constant_input_has_zero_error_and_errors_are_per_sample():
    torch.manual_seed(0)
    model = Drifting(moving=[False, True])
    profile = smoothcache.calibrate(model, drive(model), adapter=DriftingAdapter(), lookahead=2)
    # sample 0 sees the same input every step: its lag-1 error is exactly 0
    still = Drifting(moving=[False, False])
    still.proj.load_state_dict(model.proj.state_dict())
    zero = smoothcache.calibrate(still, drive(still), adapter=DriftingAdapter(), lookahead=2)
    assert (zero.mean[0, :, :3] == 0).all()
    # per sample: the mean is the average of sample 0's zero and sample 1's own relative error
    timesteps = (900.0, 700.0, 500.0, 300.0, 100.0)
    with torch.no_grad():
        outputs = [model.proj(torch.ones(1, 4) + t / 1000) for t in timesteps]

    def sample_error(earlier: int, later: int) -> float:
        return ((outputs[earlier] - outputs[later]).abs().sum() / outputs[later].abs().sum()).item()

    assert profile.mean[0, 0, 0].item() == pytest.approx(sample_error(0, 1) / 2, rel=1e-5)
    assert profile.std[0, 0, 0].item() == pytest.approx(sample_error(0, 1) / 2**0.5, rel=1e-5)
    for lag in (1, 2):
        for step in range(len(timesteps) - lag):
            assert profile.mean[0, lag - 1, step].item() == pytest.approx(sample_error(step, step + lag) / 2, rel=1e-5)
    assert int(profile.counts[0, 0, 0]) == 2


def test_profiles_merge_like_one_calibration():
    torch.manual_seed(0)
    model = Drifting(moving=[True, True])
    first = smoothcache.calibrate(model, drive(model, x=torch.randn(2, 4)), adapter=DriftingAdapter())
    second = smoothcache.calibrate(model, drive(model, x=torch.randn(2, 4)), adapter=DriftingAdapter())
    torch.manual_seed(0)
    model_again = Drifting(moving=[True, True])
    inputs = [torch.randn(2, 4), torch.randn(2, 4)]

    def both():
        drive(model_again, x=inputs[0])()
        drive(model_again, x=inputs[1])()

    together = smoothcache.calibrate(model_again, both, adapter=DriftingAdapter())
    merged = first.merge(second)
    assert torch.equal(merged.counts, together.counts)
    torch.testing.assert_close(merged.sums, together.sums)
    torch.testing.assert_close(merged.sums_sq, together.sums_sq)
    assert merged.metadata["generations"] == 2


def test_mismatched_profiles_do_not_merge():
    model = Drifting(moving=[True, True])
    five = smoothcache.calibrate(model, drive(model), adapter=DriftingAdapter())
    four = smoothcache.calibrate(model, drive(model, timesteps=(900.0, 600.0, 300.0, 100.0)), adapter=DriftingAdapter())
    with pytest.raises(ProfileError, match="cannot merge profiles that differ in steps/lookahead .5/3 vs 4/3."):
        five.merge(four)


def test_nan_output_names_component_and_step():
    model = Drifting(moving=[True, True], nan_at=500.0)
    with pytest.raises(CalibrationError, match="component 'proj' produced NaN or inf at step 2"):
        smoothcache.calibrate(model, drive(model), adapter=DriftingAdapter())
    assert_pristine(model)


def test_run_without_a_generation_is_an_error():
    model = Drifting(moving=[True, True])
    with pytest.raises(CalibrationError, match=r"run\(\) performed no model evaluation"):
        smoothcache.calibrate(model, lambda: None, adapter=DriftingAdapter())
    assert_pristine(model)


def test_generations_of_different_lengths_are_refused():
    model = Drifting(moving=[True, True])

    def run():
        drive(model)()
        drive(model, timesteps=(800.0, 400.0, 200.0))()

    with pytest.raises(CalibrationError, match=r"ran \[5, 3\] model evaluations"):
        smoothcache.calibrate(model, run, adapter=DriftingAdapter())


def test_interrupted_calibration_leaves_the_model_unwrapped():
    model = Drifting(moving=[True, True])

    def run():
        model(torch.ones(2, 4), torch.tensor(900.0))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        smoothcache.calibrate(model, run, adapter=DriftingAdapter())
    assert_pristine(model)
    assert smoothcache.calibrate(model, drive(model), adapter=DriftingAdapter()).steps == 5


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda data: data[: len(data) // 2], "not a valid safetensors profile"),
        (lambda data: b"\x00" * 40, "not a valid safetensors profile"),
        (lambda data: b"", "not a valid safetensors profile"),
        (lambda data: data.replace(b"evaluation_macs", b"evaluation_macX"), "missing or malformed fields"),
        (lambda data: data.replace(b"smoothcache.profile", b"smoothcache.profilX"), "not a smoothcache profile"),
    ],
)
def test_corrupt_profile_files_are_clear_errors(tmp_path, corrupt, message):
    model = Drifting(moving=[True, True])
    path = tmp_path / "p.safetensors"
    smoothcache.calibrate(model, drive(model), adapter=DriftingAdapter()).save(path)
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(ProfileError, match=message):
        ErrorProfile.load(path)


def test_profile_plot_writes_a_png(tmp_path):
    model = Drifting(moving=[True, True])
    profile = smoothcache.calibrate(model, drive(model), adapter=DriftingAdapter())
    profile.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
