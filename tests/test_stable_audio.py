"""Stable Audio Open: a real StableAudioPipeline (tiny, from a local folder) and stable-audio-tools' DiT."""

from __future__ import annotations

import math

import pytest
import torch

import smoothcache
from helpers import assert_pristine, zeros
from smoothcache.reference import pipelines

STEPS = 8
LAYERS = 2
ATTN1 = [1, 0, 1, 0, 1, 1, 0, 1]
ATTN2 = [1, 1, 0, 0, 1, 0, 1, 1]
FF = [1, 0, 0, 1, 0, 1, 1, 1]


def generate(pipe, seed=0, negative="low quality noise", steps=STEPS, prompt="a dog barking in the rain"):
    generator = torch.Generator().manual_seed(seed)
    return pipe(prompt, negative_prompt=negative, num_inference_steps=steps, audio_end_in_s=5.0, generator=generator).audios


def test_pipeline_all_compute_is_bit_identical_and_unwrap_restores(audio_pipe):
    transformer = audio_pipe.transformer
    reference = [generate(audio_pipe, 0), generate(audio_pipe, 1, negative=None)]
    keys = list(transformer.state_dict())
    with smoothcache.wrap(
        transformer, adapter="stable-audio", schedule={"attn1": [1] * STEPS, "attn2": [1] * STEPS, "ff": [1] * STEPS}
    ) as handle:
        assert list(transformer.state_dict()) == keys
        wrapped = [generate(audio_pipe, 0), generate(audio_pipe, 1, negative=None)]
        stats = handle.stats()
    for expected, actual in zip(reference, wrapped, strict=False):
        assert torch.equal(expected, actual)
    assert stats["computed"] == 2 * STEPS * LAYERS * 3 and stats["generations"] == 2
    assert_pristine(transformer)
    assert torch.equal(generate(audio_pipe, 0), reference[0])


@pytest.mark.parametrize("negative", ["low quality noise", None])
def test_pipeline_skipping_schedule_reuses_as_scheduled(audio_pipe, negative):
    reference = generate(audio_pipe, 0, negative=negative)
    with smoothcache.wrap(audio_pipe, schedule={"attn1": ATTN1, "attn2": ATTN2, "ff": FF}) as handle:
        assert handle.adapter.name == "stable-audio"
        first = generate(audio_pipe, 0, negative=negative)
        second = generate(audio_pipe, 0, negative=negative)
        stats = handle.stats()
    assert stats["by_kind"]["self_attn"]["reused"] == 2 * zeros(ATTN1) * LAYERS
    assert stats["by_kind"]["cross_attn"]["reused"] == 2 * zeros(ATTN2) * LAYERS
    assert stats["by_kind"]["ffn"]["reused"] == 2 * zeros(FF) * LAYERS
    assert stats["refreshed"] == 0
    assert torch.isfinite(first).all() and not torch.equal(first, reference)
    assert torch.equal(first, second)


def test_pipeline_calibration_gives_a_profile_and_a_schedule(audio_pipe, tmp_path):
    profile = smoothcache.calibrate(
        audio_pipe, lambda: [generate(audio_pipe, seed, negative=n) for seed, n in ((0, "low quality noise"), (1, None))]
    )
    assert_pristine(audio_pipe.transformer)
    assert {c.kind for c in profile.components} == {"self_attn", "cross_attn", "ffn"}
    assert profile.steps == STEPS and profile.metadata["solver"] == "CosineDPMSolverMultistepScheduler"
    assert int(profile.counts[0, 0, 0]) == 2 * 2  # two generations x (uncond, cond) rows
    schedule = profile.schedule(macs=0.7)
    assert set(schedule.tables) == {"attn1", "attn2", "ff"} and abs(schedule.provenance["mac_fraction"] - 0.7) <= 0.05
    profile.save(tmp_path / "audio.safetensors")
    with smoothcache.wrap(audio_pipe, schedule=schedule) as handle:
        audio = generate(audio_pipe, 2)
        assert handle.stats()["reused"] == LAYERS * sum(table.count(0) for table in schedule.tables.values())
    assert torch.isfinite(audio).all()


# -- stable-audio-tools --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tools_model():
    pytest.importorskip("stable_audio_tools", reason="stable-audio-tools is installed by `make test` (pip --no-deps)")
    return pipelines.stable_audio_tools_transformer("tiny", seed=0)


def sample_tools(model, steps: int, sampler: str = "euler", cfg_interval=(0.0, 1.0), seed: int = 0) -> torch.Tensor:
    """k-diffusion's v-denoiser loop as stable-audio-tools' sample_k runs it: Euler (one evaluation per
    step) or Heun (two; the second at the next sigma, which the next step's first evaluation repeats)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 8, 32, generator=generator)
    context, global_embed = torch.randn(1, 5, 64, generator=generator), torch.randn(1, 12, generator=generator)
    sigmas = torch.cat([torch.exp(torch.linspace(math.log(500.0), math.log(0.03), steps)), torch.zeros(1)])
    x = x * sigmas[0]

    def denoise(x, sigma):
        c_skip, c_out, c_in = 1 / (sigma**2 + 1), -sigma / (sigma**2 + 1) ** 0.5, 1 / (sigma**2 + 1) ** 0.5
        t = torch.atan(sigma) * 2 / math.pi
        v = model(x * c_in, t.reshape(1), cross_attn_cond=context, global_embed=global_embed, cfg_scale=6.0, cfg_interval=cfg_interval)
        return x * c_skip + v * c_out

    with torch.no_grad():
        for i in range(steps):
            denoised = denoise(x, sigmas[i])
            d = (x - denoised) / sigmas[i]
            dt = sigmas[i + 1] - sigmas[i]
            if sampler == "euler" or sigmas[i + 1] == 0:
                x = x + d * dt
            else:
                x_2 = x + d * dt
                d_2 = (x_2 - denoise(x_2, sigmas[i + 1])) / sigmas[i + 1]
                x = x + (d + d_2) / 2 * dt
    return x


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_tools_all_compute_is_bit_identical(tools_model, sampler):
    evaluations = STEPS if sampler == "euler" else 2 * STEPS - 1
    reference = sample_tools(tools_model, STEPS, sampler)
    with smoothcache.wrap(tools_model, schedule={"self_attn": [1] * evaluations, "ff": [1] * evaluations}) as handle:
        assert handle.adapter.name == "stable-audio"
        assert torch.equal(sample_tools(tools_model, STEPS, sampler), reference)
        assert handle.stats()["evaluations"] == evaluations
        assert handle.batch == 2  # classifier-free guidance doubles the batch inside forward
    assert_pristine(tools_model)


def test_tools_heun_schedule_is_indexed_by_evaluation(tools_model):
    evaluations = 2 * STEPS - 1
    table = [1] + [0, 1] * (STEPS - 1)
    reference = sample_tools(tools_model, STEPS, "heun")
    with smoothcache.wrap(tools_model, schedule={"self_attn": table, "cross_attn": table, "ff": table}) as handle:
        cached = sample_tools(tools_model, STEPS, "heun")
        stats = handle.stats()
    assert len(table) == evaluations
    assert stats["reused"] == 3 * LAYERS * zeros(table)
    assert torch.isfinite(cached).all() and not torch.equal(cached, reference)


def test_tools_guidance_switched_off_mid_run_recomputes(tools_model):
    """Outside cfg_interval the model runs one batch instead of two: cached values of the old shape are refreshed."""
    table = [1, 0, 1, 0, 1, 0, 1, 1]
    interval = (0.0, 0.999)  # sigma = sin(t * pi / 2) > 0.999 for the first steps: guidance off there
    reference = sample_tools(tools_model, STEPS, cfg_interval=interval)
    with smoothcache.wrap(tools_model, schedule={"self_attn": [1] * STEPS, "cross_attn": [1] * STEPS, "ff": [1] * STEPS}):
        assert torch.equal(sample_tools(tools_model, STEPS, cfg_interval=interval), reference)
    batches = []
    hook = tools_model.transformer.layers[0].self_attn.register_forward_hook(lambda m, a, o: batches.append(o.shape[0]))
    with smoothcache.wrap(tools_model, schedule={"self_attn": table, "cross_attn": table, "ff": table}) as handle:
        cached = sample_tools(tools_model, STEPS, cfg_interval=interval)
        stats = handle.stats()
    hook.remove()
    switch = batches.index(2)
    assert 0 < switch < STEPS and table[switch] == 0, f"the batch must change on a reuse step: {batches}"
    assert stats["refreshed"] == 3 * LAYERS
    assert stats["reused"] == 3 * LAYERS * (zeros(table) - 1)
    assert torch.isfinite(cached).all()


def test_tools_calibration_with_guidance_switching(tools_model):
    profile = smoothcache.calibrate(tools_model, lambda: sample_tools(tools_model, STEPS, cfg_interval=(0.0, 0.999)))
    assert profile.steps == STEPS
    # pairs across the batch change are skipped, not compared row by row
    assert int(profile.counts[0, 0, 0]) == 1 and int(profile.counts[0, 0, STEPS - 2]) == 2
    assert set(profile.schedule(alpha=0.5).tables) == {"self_attn", "cross_attn", "ff"}


def test_tools_model_inside_its_wrappers_is_found(tools_model):
    class DiTWrapper(torch.nn.Module):  # the shape of stable-audio-tools' wrapper: .model is the DiT
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x, t, **kwargs):
            return self.model(x, t, **kwargs)

    wrapper = DiTWrapper(tools_model).eval()
    with smoothcache.wrap(wrapper, schedule={"ff": [1, 0, 1, 1, 1, 1, 1, 1]}) as handle:
        assert handle.adapter.name == "stable-audio"
        sample_tools(wrapper, STEPS)
        assert handle.stats()["reused"] == LAYERS
    assert_pristine(wrapper)


def test_only_block_level_modules_are_cached(tools_model, audio_pipe):
    adapter = smoothcache.plugins.registry().get("stable-audio")
    tools = adapter.components(tools_model)
    assert [c.key for c in tools[:3]] == ["blocks.0.self_attn", "blocks.0.cross_attn", "blocks.0.ff"]
    assert all(c.module is getattr(tools_model.transformer.layers[c.index], c.name) for c in tools)
    assert not any(c.module is layer.ff.ff for c in tools for layer in tools_model.transformer.layers)
    audio = adapter.components(audio_pipe.transformer)
    assert [c.name for c in audio] == ["attn1", "attn2", "ff"] * LAYERS


def test_auto_detection_between_families(tools_model, audio_pipe):
    from smoothcache.reference.pipelines import dit_transformer

    registry = smoothcache.plugins.registry()
    assert registry.detect(audio_pipe.transformer).name == "stable-audio"
    assert registry.detect(tools_model).name == "stable-audio"
    assert not registry.get("dit").matches(audio_pipe.transformer)
    assert not registry.get("dit").matches(tools_model)
    assert not registry.get("stable-audio").matches(dit_transformer("tiny"))
