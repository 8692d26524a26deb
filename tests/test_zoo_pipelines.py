"""The zoo's pipelines end to end, offline, with tiny components: Flux, SD3, Wan 2.1, Wan 2.2 with two
experts, Stable Audio 3, LTX-Video and Qwen-Image.

``wrap(pipe)``: nothing skipped is bit-identical generation after generation, a calibrated schedule
reuses and skips MACs with a finite, changed output, unwrap restores the pipeline exactly. Then the
CLI's ``inspect``, ``calibrate``, ``schedule`` and ``compare`` on the saved pipeline folder, loaded
back with ``from_pretrained``. With ``SMOOTHCACHE_ZOO_RESULTS=folder`` the results are written to
``folder/pipelines.json`` for the support matrix (``python scripts/support_matrix.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import smoothcache
from helpers import assert_pristine
from smoothcache.cli import main
from smoothcache.reference.zoo import pipelines

STEPS = 6
NAMES = ["flux", "sd3", "wan", "wan22", "stable_audio3", "ltx", "qwen_image"]
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def built():
    """Each pipeline built once for the module (the CLI test saves it)."""
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = pipelines.BUILDERS[name](0)
            cache[name].set_progress_bar_config(disable=True)
        return cache[name]

    return get


def _denoisers(pipe) -> list[torch.nn.Module]:
    return [module for module in (pipe.transformer, getattr(pipe, "transformer_2", None)) if module is not None]


@pytest.mark.parametrize("name", NAMES)
def test_wrapped_pipeline_is_exact_caches_and_restores(name, built):
    pipe = built(name)
    reference = pipelines.call(name, pipe, seed=1, steps=STEPS)
    assert reference.shape == pipelines.OUTPUTS[name].shape

    evaluations = []
    hooks = [module.register_forward_pre_hook(lambda *_: evaluations.append(1)) for module in _denoisers(pipe)]
    try:
        with smoothcache.wrap(pipe) as handle:
            first = pipelines.call(name, pipe, seed=1, steps=STEPS)
            second = pipelines.call(name, pipe, seed=1, steps=STEPS)
            stats = handle.stats()
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.equal(first, reference) and torch.equal(second, reference), "an all-compute wrap changed the output"
    assert len(evaluations) >= 2 * STEPS  # guidance as one batched call or as two calls per step
    assert stats["computed"] == len(evaluations) * len(handle.components) and stats["reused"] == 0
    for module in _denoisers(pipe):
        assert_pristine(module)

    profile = smoothcache.calibrate(pipe, lambda: pipelines.call(name, pipe, seed=0, steps=STEPS))
    assert profile.steps == STEPS and bool(torch.isfinite(profile.mean[:, 0, : STEPS - 1]).all())
    schedule = profile.schedule(alpha=10.0)  # reuse wherever the lookahead allows
    with smoothcache.wrap(pipe, schedule=schedule) as handle:
        cached = pipelines.call(name, pipe, seed=1, steps=STEPS)
        stats = handle.stats()
    assert stats["reused"] > 0 and stats["macs_skipped"] > 0
    assert bool(torch.isfinite(cached).all()) and not torch.equal(cached, reference)
    assert torch.equal(pipelines.call(name, pipe, seed=1, steps=STEPS), reference), "unwrap did not restore the pipeline"
    for module in _denoisers(pipe):
        assert_pristine(module)
    RESULTS.setdefault(name, {}).update(
        pipeline=type(pipe).__name__,
        transformer=type(pipe.transformer).__name__,
        adapter=handle.adapter.name,
        components=len(handle.components),
        mac_fraction=profile.mac_report(schedule).fraction,
    )


def test_two_experts_share_one_schedule_over_the_whole_generation(built):
    """Wan 2.2 A14B: ``transformer`` runs the high-noise steps, ``transformer_2`` the rest; each
    component is one value of the generation, gated in both, and the profile spans both."""
    pipe = built("wan22")
    calls = {"transformer": 0, "transformer_2": 0}
    hooks = [
        getattr(pipe, member).register_forward_pre_hook(lambda *_, member=member: calls.__setitem__(member, calls[member] + 1))
        for member in calls
    ]
    try:
        with smoothcache.wrap(pipe) as handle:
            pipelines.call("wan22", pipe, steps=STEPS)
            group = handle.model
    finally:
        for hook in hooks:
            hook.remove()
    assert isinstance(group, smoothcache.ModelGroup) and set(group.members) == set(calls)
    assert calls["transformer"] > 0 and calls["transformer_2"] > 0  # both experts ran and were gated
    assert handle.components[0].key == "blocks.0.attn1" and len(handle.components[0].alternates) == 1

    profile = smoothcache.calibrate(pipe, lambda: pipelines.call("wan22", pipe, steps=STEPS))
    boundary = calls["transformer"] // 2  # two evaluations per step (guidance)
    assert profile.metadata["model_class"] == "ModelGroup" and profile.steps == STEPS
    assert bool((profile.counts[:, 0, : STEPS - 1] > 0).all()), "the change across the experts' boundary is measured"
    changes = profile.mean[:, 0, : STEPS - 1].mean(dim=0)
    assert changes[boundary - 1] > changes[boundary], "the step into the other expert should change the most"


@pytest.mark.parametrize("name", NAMES)
def test_cli_inspects_calibrates_schedules_and_compares_a_saved_pipeline(name, built, tmp_path, capsys):
    folder = tmp_path / "pipeline"
    built(name).save_pretrained(folder)
    assert main(["inspect", str(folder)]) == 0
    inspected = capsys.readouterr().out
    assert "components:" in inspected and "cacheable share of an evaluation" in inspected

    profile, schedule, out = tmp_path / "p.safetensors", tmp_path / "s.json", tmp_path / "out"
    assert main(["calibrate", str(folder), "--steps", "5", "--samples", "1", "-o", str(profile)]) == 0
    assert main(["schedule", str(profile), "--alpha", "10", "-o", str(schedule)]) == 0
    assert main(["compare", str(folder), "--schedule", str(schedule), "--samples", "1", "-o", str(out)]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["steps"] == 5 and result["mac_fraction"] < 0.9 and result["ideal_speedup"] > 1.1
    assert (out / "compare.png").stat().st_size > 0
    RESULTS.setdefault(name, {}).update(cli="inspect, calibrate, schedule, compare")


def teardown_module() -> None:
    folder = os.environ.get("SMOOTHCACHE_ZOO_RESULTS")
    if folder and RESULTS:
        Path(folder).mkdir(parents=True, exist_ok=True)
        Path(folder, "pipelines.json").write_text(json.dumps(RESULTS, indent=1, sort_keys=True) + "\n")
