"""The trained reference models and the schedules shipped for them.

The digits DiT is exercised for real (shipped weights, diffusers schedulers, the digit classifier):
its samples must be digits, caching at the shipped 2x schedule must keep them digits, and every
shipped schedule must have been calibrated on the weights that ship today.
"""

from __future__ import annotations

import pytest
import torch

import smoothcache
from smoothcache import schedules
from smoothcache.reference import digits, weights_digest, workloads

SHIPPED = {
    "digits-dit-ddim-50": "digits",
    "digits-dit-dpm-25": "digits",
    "tones-dit-cosine-dpm-50": "tones",
    "moving-digits-stdit3-rflow-30": "moving_digits",
}


@pytest.fixture(scope="module")
def digit_model():
    return digits.load_digits_dit()


@pytest.fixture(scope="module")
def classifier():
    return digits.load_digit_classifier()


def test_classifier_reads_held_out_digits(classifier):
    images, labels = digits.load_digits_16("test")
    assert digits.digit_accuracy((images + 1) / 2, labels, classifier) >= 0.98


def test_trained_dit_draws_the_digit_it_is_asked_for(digit_model, classifier):
    labels = list(range(10))
    images = digits.sample_digits(digit_model, labels, 25, scheduler="dpm", seed=7)
    assert images.shape == (10, 1, 16, 16)
    assert digits.digit_accuracy(images, labels, classifier) >= 0.9


def test_shipped_schedule_halves_the_work_and_keeps_the_digits(digit_model, classifier):
    labels = list(range(10))
    uncached = digits.sample_digits(digit_model, labels, 25, scheduler="dpm", seed=11)
    schedule = schedules.load("digits-dit-dpm-25")
    with smoothcache.wrap(digit_model, schedule=schedule) as handle:
        cached = digits.sample_digits(digit_model, labels, 25, scheduler="dpm", seed=11)
        stats = handle.stats()
    compiled = schedule.compile(schedules.profile("digits-dit-dpm-25").components)
    reused = sum(decisions.count(False) for decisions in compiled.compute)
    assert reused > 0 and stats["reused"] == reused and stats["computed"] == 12 * 25 - reused
    # the profile's MACs were measured on the same batch (10 labels, guidance halves): the skipped
    # share is what the schedule promised, and the schedule promised about half
    evaluation_macs = schedules.profile("digits-dit-dpm-25").evaluation_macs
    promised = 1 - schedule.provenance["mac_fraction"]
    assert abs(stats["macs_skipped"] / (25 * evaluation_macs) - promised) < 0.005
    assert 0.45 <= promised <= 0.55
    assert torch.isfinite(cached).all() and not torch.equal(cached, uncached)
    assert digits.digit_accuracy(cached, labels, classifier) >= 0.9


def test_unwrapped_after_shipped_schedule_is_bit_identical(digit_model):
    before = digits.sample_digits(digit_model, [3, 5], 10, scheduler="ddim", seed=2)
    with smoothcache.wrap(digit_model, schedule=schedules.load("digits-dit-ddim-50").resample(10)):
        digits.sample_digits(digit_model, [3, 5], 10, scheduler="ddim", seed=2)
    assert torch.equal(digits.sample_digits(digit_model, [3, 5], 10, scheduler="ddim", seed=2), before)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_schedule_was_calibrated_on_the_shipped_weights(name):
    schedule = schedules.load(name)
    calibration = schedule.provenance["calibration"]
    workload = getattr(workloads, SHIPPED[name])()
    assert calibration["workload"] == f"smoothcache.reference.workloads:{SHIPPED[name]}"
    assert calibration["weights_sha256"] == weights_digest(workload.model), (
        f"{name} was calibrated on other weights; rerun python scripts/make_schedules.py --only {name}"
    )
    profile = schedules.profile(name)
    assert schedule.steps == calibration["steps"] == profile.steps
    assert 0.45 <= schedule.provenance["mac_fraction"] <= 0.5
    assert profile.probed_run_length == calibration["probes"]["run_lengths"]  # every method can be derived again
    provenance = schedule.provenance
    # made before budgets landed on the closest point: derived again at the fraction it reached
    again = profile.schedule(macs=provenance["mac_fraction"], method=provenance["method"], granularity=provenance["granularity"])
    assert again.tables == schedule.tables and again.fill == schedule.fill == calibration["probes"]["fill"]
    compiled = schedule.compile(schedules.profile(name).components)  # every component has a table
    assert all(decisions is not None for decisions in compiled.compute)


def test_unknown_shipped_name_lists_the_available_ones():
    with pytest.raises(smoothcache.ScheduleError, match="digits-dit-ddim-50"):
        schedules.load("dit-xl-1000")


def test_trained_workload_runs_through_the_command_line(tmp_path, capsys):
    from smoothcache.cli import main

    profile = tmp_path / "digits.profile.safetensors"
    args = [
        "calibrate",
        "smoothcache.reference.workloads:digits",
        "--steps",
        "8",
        "--samples",
        "1",
        "--scheduler",
        "dpm",
        "-o",
        str(profile),
    ]
    assert main(args) == 0
    loaded = smoothcache.ErrorProfile.load(profile)
    assert loaded.steps == 8 and loaded.metadata["solver"] == "dpm"
    assert main(["schedule", str(profile), "--macs", "0.6", "-o", str(tmp_path / "s.json")]) == 0
    assert "wrote" in capsys.readouterr().out


def test_video_reference_uses_its_class_caption():
    """The STDiT3 reads the class from its caption: at mid-path, the velocity it predicts for the true
    class is clearly closer to the target than for a wrong one (a one-token caption gave no margin)."""
    from smoothcache.reference import moving_digits

    model, table = moving_digits.load_moving_digits_stdit3()
    videos, labels = moving_digits.moving_digits("test", seed=1)
    x0, labels = videos[:20], labels[:20]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((20,), 500.0)
    x_t = moving_digits.add_noise(x0, noise, t)

    def error(classes: torch.Tensor) -> float:
        with torch.no_grad():
            velocity = model(x_t, t, y=moving_digits.class_captions(table, classes), **moving_digits.model_kwargs(20))
        return torch.nn.functional.mse_loss(velocity, x0 - noise).item()

    assert error((labels + 3) % 10) > 1.04 * error(labels)
