"""No host synchronisation per component, the cache's memory, and (on CUDA machines) device and sync checks."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import smoothcache
from smoothcache.reference.pipelines import dit_transformer, sample_dit
from smoothcache_core import StepTracker

STEPS = 8
FORA = smoothcache.Schedule.fora(STEPS, 2, ["attn1", "ff"])
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class HostReads(TorchDispatchMode):
    """Counts the ops that move a tensor's value to the host: ``.item()``, ``bool()``, ``int()``, ..."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def host_reads(run) -> int:
    with HostReads() as counter:
        run()
    return counter.count


@pytest.fixture(scope="module")
def model():
    return dit_transformer("tiny")


def test_inference_reads_the_host_once_per_evaluation_and_never_per_component(model):
    plain = host_reads(lambda: sample_dit(model, STEPS))
    with smoothcache.wrap(model, schedule=FORA) as handle:
        cached = host_reads(lambda: sample_dit(model, STEPS))
        assert handle.stats()["reused"] > 0
    assert cached - plain == STEPS  # the timestep of each evaluation; 32 component calls read nothing
    with smoothcache.wrap(model, schedule=FORA, sync_free=True) as handle:
        assert host_reads(lambda: sample_dit(model, STEPS)) == plain
        assert handle.stats()["reused"] > 0


def test_calibration_reads_the_host_once_per_evaluation(model):
    def extra(steps: int) -> int:
        plain = host_reads(lambda: sample_dit(model, steps))
        return host_reads(lambda: smoothcache.calibrate(model, lambda: sample_dit(model, steps))) - plain

    # the difference between two step counts is one read per extra evaluation (the rest is a
    # constant: the one check for non-finite values at the end)
    assert extra(12) - extra(6) == 6


def test_sync_free_counts_steps_and_generations(model):
    reference = None
    with smoothcache.wrap(model, schedule=FORA) as handle:
        reference = sample_dit(model, STEPS)
    with smoothcache.wrap(model, schedule=FORA, sync_free=True) as handle:
        first = sample_dit(model, STEPS)
        second = sample_dit(model, STEPS)
        assert handle.stats()["generations"] == 2
    assert torch.equal(first, reference) and torch.equal(second, reference)
    with pytest.raises(smoothcache.WrapError, match="sync_free=True counts steps"):
        smoothcache.wrap(model, sync_free=True)


def test_counting_tracker_with_branches():
    starts: list[int] = []
    tracker = StepTracker(starts.append, steps=3, branches=2)
    coordinates = []
    for _ in range(8):
        tracker.count()
        coordinates.append((tracker.step, tracker.branch))
    assert coordinates == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (0, 0), (0, 1)]
    assert starts == [0, 3]


def test_cache_memory_is_reported_and_freed(model):
    schedule = {"attn1": [1, 0, 1], "ff": [1, 0, 1]}
    x, labels = torch.randn(2, 4, 8, 8), torch.tensor([1, 1000])
    with torch.no_grad(), smoothcache.wrap(model, schedule=schedule) as handle:
        model(x, timestep=torch.tensor([900, 900]), class_labels=labels)
        held = handle.stats()["cache_bytes"]
        assert held == 2 * 2 * (2 * 16 * 32 * 4)  # 2 blocks x (attn1, ff) x [2, 16, 32] float32
        handle.reset()
        assert handle.stats()["cache_bytes"] == 0
        model(x, timestep=torch.tensor([900, 900]), class_labels=labels)
        assert handle.stats()["cache_bytes"] == held
    assert handle.stats()["cache_bytes"] == 0  # unwrap frees it


@cuda
def test_cuda_cache_stays_on_device_and_dtype_without_any_sync():
    """A loop with everything on the device (no scheduler host math), so any sync would be ours."""
    model = dit_transformer("tiny").to("cuda", torch.float16)
    timesteps = torch.linspace(999, 0, STEPS, device="cuda").long()
    labels = torch.tensor([1, 1000], device="cuda")
    x = torch.randn(1, 4, 8, 8, device="cuda", dtype=torch.float16)
    with torch.no_grad(), smoothcache.wrap(model, schedule=FORA, sync_free=True) as handle:
        torch.cuda.set_sync_debug_mode("error")
        held = []
        try:
            for t in timesteps:
                eps = model(torch.cat([x, x]), timestep=t.expand(2), class_labels=labels).sample[:, :4]
                x = x - 0.05 * (eps[1:] + 4.0 * (eps[:1] - eps[1:]))
                held += [value for cache in handle._caches for _, value, _ in cache.values()]
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert handle.stats()["reused"] > 0 and held
        assert all(v.device.type == "cuda" and v.dtype == torch.float16 for v in held)
    assert torch.isfinite(x).all()
