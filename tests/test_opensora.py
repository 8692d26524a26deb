"""Open-Sora v1.2 STDiT3 and 2.0 MMDiT (re-implementations with the original names), with their samplers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import smoothcache
from helpers import assert_pristine, zeros
from smoothcache.reference import pipelines
from smoothcache_core import count_macs

DATA = Path(__file__).parent / "data" / "opensora"
STEPS = 6
DEPTH = 2  # tiny STDiT3


@pytest.fixture(scope="module")
def stdit3():
    return pipelines.stdit3("tiny", seed=0)


@pytest.fixture(scope="module", params=[False, True], ids=["released-layout", "flux-layout"])
def mmdit(request):
    return pipelines.mmdit("tiny", seed=0, fused=request.param)


@pytest.mark.parametrize(
    ("fixture", "file"),
    [("stdit3", "stdit3_tiny_state_dict.json"), ("mmdit", None)],
)
def test_original_state_dicts_load_strictly(fixture, file, request):
    """Key names and shapes recorded from the original Open-Sora modules load with strict=True."""
    from smoothcache.reference.opensora_v2 import MMDiTConfig, MMDiTModel
    from smoothcache.reference.opensora_v12 import STDiT3, STDiT3Config

    files = [file] if file else ["mmdit_tiny_state_dict.json", "mmdit_tiny_fused_state_dict.json"]
    for name in files:
        recorded = json.loads((DATA / name).read_text())
        model = STDiT3(STDiT3Config(**recorded["config"])) if fixture == "stdit3" else MMDiTModel(MMDiTConfig(**recorded["config"]))
        state = {key: torch.zeros(shape) for key, shape in recorded["state_dict"].items()}
        model.load_state_dict(state, strict=True)
        assert {k: list(v.shape) for k, v in model.state_dict().items()} == recorded["state_dict"]


def test_stdit3_all_compute_is_bit_identical_over_generations(stdit3):
    reference = [pipelines.sample_stdit3(stdit3, STEPS, seed=seed) for seed in (0, 1)]
    keys = list(stdit3.state_dict())
    table = [1] * STEPS
    with smoothcache.wrap(stdit3, adapter="opensora", schedule={"attn": table, "cross_attn": table, "mlp": table}) as handle:
        assert list(stdit3.state_dict()) == keys
        cached = [pipelines.sample_stdit3(stdit3, STEPS, seed=seed) for seed in (0, 1)]
        stats = handle.stats()
    assert all(torch.equal(a, b) for a, b in zip(reference, cached, strict=False))
    assert stats["computed"] == 2 * STEPS * DEPTH * 2 * 3 and stats["generations"] == 2
    assert_pristine(stdit3)
    assert torch.equal(pipelines.sample_stdit3(stdit3, STEPS, seed=0), reference[0])


def test_stdit3_reuse_counts_per_kind_and_stack(stdit3):
    schedule = {
        "spatial.attn": [1, 0, 1, 0, 1, 1],
        "temporal.attn": [1, 1, 0, 1, 0, 1],
        "cross_attn": [1, 0, 0, 1, 1, 1],  # both stacks
        "temporal.mlp-1": [1, 1, 1, 0, 1, 1],  # one block
    }
    reference = pipelines.sample_stdit3(stdit3, STEPS, seed=0)
    with smoothcache.wrap(stdit3, schedule=schedule) as handle:
        first = pipelines.sample_stdit3(stdit3, STEPS, seed=0)
        second = pipelines.sample_stdit3(stdit3, STEPS, seed=0)
        by_kind = handle.stats()["by_stack"]
    assert by_kind["spatial.self_attn"]["reused"] == 2 * 2 * DEPTH
    assert by_kind["temporal.self_attn"]["reused"] == 2 * 2 * DEPTH
    assert by_kind["spatial.cross_attn"]["reused"] == by_kind["temporal.cross_attn"]["reused"] == 2 * 2 * DEPTH
    assert by_kind["temporal.ffn"]["reused"] == 2 * 1 and by_kind["spatial.ffn"]["reused"] == 0
    assert torch.isfinite(first).all() and not torch.equal(first, reference)
    assert torch.equal(first, second)


def test_stdit3_never_caches_embedder_mlps(stdit3):
    components = smoothcache.plugins.registry().get("opensora").components(stdit3)
    modules = {id(c.module) for c in components}
    assert id(stdit3.t_embedder.mlp) not in modules and id(stdit3.fps_embedder.mlp) not in modules
    assert [c.key for c in components[:6]] == [
        "spatial.0.attn",
        "spatial.0.cross_attn",
        "spatial.0.mlp",
        "temporal.0.attn",
        "temporal.0.cross_attn",
        "temporal.0.mlp",
    ]


def test_mmdit_all_compute_is_bit_identical_and_unwrap_restores(mmdit):
    reference = [pipelines.sample_mmdit(mmdit, STEPS, seed=seed) for seed in (0, 1)]
    processors = [block.processor for block in (*mmdit.double_blocks, *mmdit.single_blocks)]
    keys = list(mmdit.state_dict())
    with smoothcache.wrap(mmdit, schedule={"double.attn": [1] * STEPS, "single.linear2": [1] * STEPS}) as handle:
        assert list(mmdit.state_dict()) == keys
        cached = [pipelines.sample_mmdit(mmdit, STEPS, seed=seed) for seed in (0, 1)]
        assert handle.batch == 3  # text, negative, negative
    assert all(torch.equal(a, b) for a, b in zip(reference, cached, strict=False))
    assert [block.processor for block in (*mmdit.double_blocks, *mmdit.single_blocks)] == processors
    assert_pristine(mmdit)


def test_mmdit_reuse_skips_the_attention_and_counts_per_kind(mmdit):
    joint, parallel, mlp = [1, 0, 1, 0, 1, 1], [1, 1, 0, 0, 1, 1], [1, 0, 1, 1, 0, 1]
    calls = []
    hooks = [block.img_attn.proj.register_forward_hook(lambda *_: calls.append("proj")) for block in mmdit.double_blocks]
    hooks += [block.linear2.register_forward_hook(lambda *_: calls.append("linear2")) for block in mmdit.single_blocks]
    reference = pipelines.sample_mmdit(mmdit, STEPS, seed=0)
    calls.clear()
    with smoothcache.wrap(mmdit, schedule={"double.attn": joint, "single.linear2": parallel, "img_mlp": mlp}) as handle:
        cached = pipelines.sample_mmdit(mmdit, STEPS, seed=0)
        by_kind = handle.stats()["by_stack"]
    for hook in hooks:
        hook.remove()
    assert calls.count("proj") == sum(joint) and calls.count("linear2") == sum(parallel)  # reuse skipped them
    assert by_kind["double.joint_attn"]["reused"] == zeros(joint)
    assert by_kind["single.parallel_attn_mlp"]["reused"] == zeros(parallel)
    assert by_kind["double.ffn"]["reused"] == zeros(mlp)  # img_mlp only; txt_mlp computes
    assert torch.isfinite(cached).all() and not torch.equal(cached, reference)


def test_mmdit_macs_of_the_joint_attention_exclude_the_mlps_inside_it(mmdit):
    adapter = smoothcache.plugins.registry().get("opensora")
    components = adapter.components(mmdit)

    def evaluate() -> None:  # one model evaluation, through the sampler's inputs
        pipelines.sample_mmdit(mmdit, 1)

    everything = count_macs(components, evaluate)
    attention_only = count_macs([c for c in components if c.key == "double.0.attn"], evaluate)
    mlps = everything.components["double.0.img_mlp"] + everything.components["double.0.txt_mlp"]
    assert mlps > 0
    assert everything.components["double.0.attn"] == attention_only.components["double.0.attn"] - mlps
    assert sum(everything.components.values()) <= everything.total


def test_calibration_separates_stacks_and_types(stdit3, mmdit):
    video = smoothcache.calibrate(stdit3, lambda: pipelines.sample_stdit3(stdit3, STEPS, seed=0))
    assert {c.block_kind for c in video.components} == {"spatial", "temporal"}
    assert set(video.schedule(alpha=0.3).tables) == {f"{s}.{n}" for s in ("spatial", "temporal") for n in ("attn", "cross_attn", "mlp")}
    assert int(video.counts[0, 0, 0]) == 2  # (cond, uncond) rows of one sample, grouped per sample
    flow = smoothcache.calibrate(mmdit, lambda: pipelines.sample_mmdit(mmdit, STEPS, seed=0))
    assert {c.block_kind for c in flow.components} == {"double", "single"}
    assert set(flow.schedule(alpha=0.3).tables) == {"double.attn", "double.img_mlp", "double.txt_mlp", "single.linear2"}
    schedule = flow.schedule(macs=0.7, method="optimal", granularity="block")
    with smoothcache.wrap(mmdit, schedule=schedule) as handle:
        pipelines.sample_mmdit(mmdit, STEPS, seed=1)
        assert handle.stats()["reused"] == sum(table.count(0) for table in schedule.tables.values())


def test_auto_detection_across_families(stdit3, mmdit):
    registry = smoothcache.plugins.registry()
    assert registry.detect(stdit3).name == registry.detect(mmdit).name == "opensora"
    for other in ("dit", "stable-audio"):
        assert not registry.get(other).matches(stdit3) and not registry.get(other).matches(mmdit)
    assert not registry.get("opensora").matches(pipelines.dit_transformer("tiny"))
    assert not registry.get("opensora").matches(pipelines.stable_audio_transformer("tiny"))
