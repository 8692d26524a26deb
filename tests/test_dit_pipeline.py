"""A real DiTPipeline (tiny, loaded from a local folder) accelerated with two lines."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REFERENCE_SCHEDULES

import smoothcache
from helpers import ProjAdapter, assert_pristine, zeros
from smoothcache import GenerationError, Schedule

STEPS = 6
LAYERS = 2  # the tiny DiT
ATTN = [1, 0, 1, 0, 1, 1]
FF = [1, 1, 0, 0, 1, 1]


def generate(pipe, seed: int, labels=(1, 2), steps: int = STEPS) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return pipe(class_labels=list(labels), num_inference_steps=steps, generator=generator, output_type="pt").images


def test_all_compute_is_bit_identical_and_unwrap_restores(dit_pipe):
    transformer = dit_pipe.transformer
    reference = [generate(dit_pipe, seed) for seed in (0, 1)]
    keys = list(transformer.state_dict())

    handle = smoothcache.wrap(transformer, schedule={"attn1": [1] * STEPS, "ff": [1] * STEPS})
    assert handle.adapter.name == "dit"
    assert list(transformer.state_dict()) == keys
    wrapped = [generate(dit_pipe, seed) for seed in (0, 1)]
    stats = handle.stats()
    handle.unwrap()

    for expected, actual in zip(reference, wrapped, strict=False):
        assert torch.equal(expected, actual)
    assert stats["computed"] == 2 * STEPS * LAYERS * 2
    assert stats["reused"] == 0
    assert stats["generations"] == 2
    assert stats["evaluations"] == 2 * STEPS
    assert_pristine(transformer)
    assert torch.equal(generate(dit_pipe, 0), reference[0])


def test_no_schedule_computes_everything_and_counts(dit_pipe):
    reference = generate(dit_pipe, 3)
    with smoothcache.wrap(dit_pipe.transformer) as handle:
        assert torch.equal(generate(dit_pipe, 3), reference)
        assert handle.stats()["computed"] == STEPS * LAYERS * 2
    assert_pristine(dit_pipe.transformer)


def test_skipping_schedule_reuses_as_scheduled(dit_pipe):
    reference = generate(dit_pipe, 0)
    with smoothcache.wrap(dit_pipe.transformer, schedule={"attn1": ATTN, "ff": FF}) as handle:
        first = generate(dit_pipe, 0)
        second = generate(dit_pipe, 0)
        stats = handle.stats()
    assert stats["reused"] == 2 * (zeros(ATTN) + zeros(FF)) * LAYERS
    assert stats["computed"] == 2 * (sum(ATTN) + sum(FF)) * LAYERS
    assert stats["by_kind"]["self_attn"]["reused"] == 2 * zeros(ATTN) * LAYERS
    assert stats["by_kind"]["ffn"]["reused"] == 2 * zeros(FF) * LAYERS
    assert stats["refreshed"] == 0
    assert stats["cache_entries"] == 0  # nothing is held once the last reuse is served
    assert torch.isfinite(first).all()
    assert not torch.equal(first, reference)
    assert torch.equal(first, second)  # a new generation never sees the previous one's cache
    assert torch.equal(generate(dit_pipe, 0), reference)


def test_feed_forward_chunking_is_cached_call_by_call(dit_pipe):
    """With feed-forward chunking every block calls ``ff`` once per chunk of tokens; each call
    has its own cache slot, so the cached output equals the unchunked cached output."""
    transformer = dit_pipe.transformer
    schedule = {"attn1": ATTN, "ff": FF}
    reference = generate(dit_pipe, 0)
    with smoothcache.wrap(transformer, schedule=schedule):
        unchunked = generate(dit_pipe, 0)
    tokens = (transformer.config.sample_size // transformer.config.patch_size) ** 2
    chunks = tokens // 4
    for block in transformer.transformer_blocks:
        block.set_chunk_feed_forward(4, dim=1)
    try:
        assert torch.allclose(generate(dit_pipe, 0), reference, atol=1e-5)
        with smoothcache.wrap(transformer, schedule=schedule) as handle:
            chunked = generate(dit_pipe, 0)
            stats = handle.stats()
    finally:
        for block in transformer.transformer_blocks:
            block.set_chunk_feed_forward(None)
    assert stats["by_kind"]["ffn"]["reused"] == chunks * zeros(FF) * LAYERS
    assert stats["by_kind"]["ffn"]["computed"] == chunks * sum(FF) * LAYERS
    assert torch.allclose(chunked, unchunked, atol=1e-5) and not torch.allclose(chunked, reference, atol=1e-3)


def test_original_smoothcache_file_loads_unchanged(dit_pipe):
    path = REFERENCE_SCHEDULES / "diffuser_schedule.json"
    table = json.loads(path.read_text())["attn1"]
    with smoothcache.wrap(dit_pipe.transformer, schedule=path) as handle:
        image = generate(dit_pipe, 0, steps=len(table))
        assert handle.stats()["by_kind"]["self_attn"]["reused"] == zeros(table) * LAYERS
        assert handle.stats()["by_kind"]["ffn"]["reused"] == 0
    assert torch.isfinite(image).all()


def test_per_block_keys_win_over_type_keys(dit_pipe):
    schedule = {"attn1": ATTN, "attn1-1": [1] * STEPS, "blocks.0.ff": FF}
    with smoothcache.wrap(dit_pipe.transformer, schedule=schedule) as handle:
        generate(dit_pipe, 0)
        by_component = handle.stats()
    assert by_component["by_kind"]["self_attn"]["reused"] == zeros(ATTN)  # block 1 overridden to compute
    assert by_component["by_kind"]["ffn"]["reused"] == zeros(FF)  # only block 0 has an ff table


def _sample_split_cfg(transformer, labels, steps, seed, split: bool, scale: float = 4.0):
    """A DDIM loop with classifier-free guidance, as two model calls per step when ``split``."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler()
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    side = transformer.config.sample_size
    latents = torch.randn(len(labels), 4, side, side, generator=generator)
    cond = torch.tensor(labels)
    null = torch.full_like(cond, 1000)
    both_labels = torch.cat([cond, null])  # built once, as DiTPipeline does: the conditioning of every step
    with torch.no_grad():
        for t in scheduler.timesteps:
            if split:
                eps_c = transformer(latents, timestep=t.expand(len(labels)), class_labels=cond).sample[:, :4]
                eps_u = transformer(latents, timestep=t.expand(len(labels)), class_labels=null).sample[:, :4]
            else:
                both = transformer(torch.cat([latents, latents]), timestep=t.expand(2 * len(labels)), class_labels=both_labels).sample[
                    :, :4
                ]
                eps_c, eps_u = both.chunk(2)
            latents = scheduler.step(eps_u + scale * (eps_c - eps_u), t, latents).prev_sample
    return latents


def test_split_cfg_gets_one_cache_per_branch(dit_pipe):
    transformer = dit_pipe.transformer
    labels = [3, 7]
    reference = _sample_split_cfg(transformer, labels, STEPS, 0, split=True)
    with smoothcache.wrap(transformer, schedule={"attn1": [1] * STEPS, "ff": [1] * STEPS}):
        assert torch.equal(_sample_split_cfg(transformer, labels, STEPS, 0, split=True), reference)

    with smoothcache.wrap(transformer, schedule={"attn1": ATTN, "ff": FF}) as handle:
        split = _sample_split_cfg(transformer, labels, STEPS, 0, split=True)
        stats = handle.stats()
        handle.reset()
        batched = _sample_split_cfg(transformer, labels, STEPS, 0, split=False)
    assert stats["evaluations"] == 2 * STEPS
    assert stats["reused"] == 2 * (zeros(ATTN) + zeros(FF)) * LAYERS  # two branches
    assert not torch.allclose(split, reference, atol=1e-4)
    # the branches never see each other's values: split CFG caches exactly like one CFG batch
    torch.testing.assert_close(split, batched, rtol=1e-4, atol=1e-5)


def test_batch_size_change_mid_generation_recomputes(dit_pipe):
    """Guidance switched off mid-run halves the batch: a cached value of the old shape is never returned."""
    from diffusers import DDIMScheduler

    transformer = dit_pipe.transformer
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(STEPS)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 2])
    guided = torch.cat([labels, torch.full_like(labels, 1000)])
    schedule = {"attn1": [1, 0, 1, 0, 1, 1], "ff": [1, 0, 1, 0, 1, 1]}
    with smoothcache.wrap(transformer, schedule=schedule) as handle, torch.no_grad():
        for step, t in enumerate(scheduler.timesteps):
            if step < 3:  # guidance on: batch 4
                model_in, classes = torch.cat([latents, latents]), guided
            else:  # guidance off from step 3, a reuse step: batch 2
                model_in, classes = latents, labels
            eps = transformer(model_in, timestep=t.expand(len(model_in)), class_labels=classes).sample[:, :4]
            latents = scheduler.step(eps[: len(latents)], t, latents).prev_sample
        stats = handle.stats()
    assert stats["refreshed"] == 2 * LAYERS  # step 3: both components, every block
    assert stats["reused"] == 2 * LAYERS  # step 1 only
    assert torch.isfinite(latents).all()


@pytest.mark.parametrize("wrapped", ["pipe", "pipe.transformer", "pipe, sync_free"])
def test_generation_longer_than_schedule_names_both_lengths(dit_pipe, wrapped):
    target = dit_pipe.transformer if wrapped == "pipe.transformer" else dit_pipe
    with smoothcache.wrap(target, schedule={"attn1": ATTN, "ff": FF}, sync_free=wrapped.endswith("sync_free")) as handle:
        with pytest.raises(GenerationError, match=r"schedule has 6 steps but this generation has run 7 model evaluations.*resample"):
            generate(dit_pipe, 0, steps=STEPS + 2)
        # the failed generation leaves no state behind: the next one is as if fresh
        after = generate(dit_pipe, 0)
    with smoothcache.wrap(dit_pipe.transformer, schedule={"attn1": ATTN, "ff": FF}):
        fresh = generate(dit_pipe, 0)
    assert torch.equal(after, fresh)
    assert handle.stats()["generations"] >= 2


@pytest.mark.parametrize("wrapped", ["pipe", "pipe.transformer", "pipe, sync_free"])
def test_generation_shorter_than_schedule_warns(dit_pipe, wrapped):
    target = dit_pipe.transformer if wrapped == "pipe.transformer" else dit_pipe
    with smoothcache.wrap(target, schedule={"attn1": ATTN, "ff": FF}, sync_free=wrapped.endswith("sync_free")):
        generate(dit_pipe, 0, steps=4)
        with pytest.warns(UserWarning, match="ran 4 model evaluations but the schedule has 6"):
            generate(dit_pipe, 0, steps=4)


def test_wrap_accepts_the_pipeline_and_schedule_objects(dit_pipe, tmp_path):
    schedule = Schedule({"attn1": ATTN, "ff": FF}, {"adapter": "dit"})
    path = tmp_path / "s.json"
    schedule.save(path)
    with smoothcache.wrap(dit_pipe, adapter="dit", schedule=path) as handle:
        assert handle.model is dit_pipe.transformer
        assert handle.schedule == schedule
        generate(dit_pipe, 0)
        assert handle.stats()["reused"] == (zeros(ATTN) + zeros(FF)) * LAYERS


def test_stats_report_skipped_macs_and_cache_memory(dit_pipe):
    transformer = dit_pipe.transformer
    with smoothcache.wrap(transformer, schedule={"attn1": ATTN, "ff": FF}) as handle:
        generate(dit_pipe, 0)
        stats = handle.stats()
        # one reuse of attn1 at step 1 is held from step 0 until served: check the peak mid-run
        handle.reset()
        transformer(torch.randn(4, 4, 8, 8), timestep=torch.tensor([999] * 4), class_labels=torch.tensor([1, 2, 1000, 1000]))
        held = handle.stats()
    tokens, width = 16, 32  # 8x8 latent, patch 2; 2 heads x 16
    attn_macs = 4 * tokens * (4 * width * width) + 2 * 4 * 2 * tokens * tokens * 16  # projections + scores/values
    ff_macs = 4 * tokens * (width * 4 * width * 2)  # tanh-GELU MLP, 4x wide
    assert stats["macs_skipped"] == LAYERS * (zeros(ATTN) * attn_macs + zeros(FF) * ff_macs)
    assert held["cache_entries"] == LAYERS  # attn1 is reused at step 1, ff is not
    assert held["cache_bytes"] == LAYERS * 4 * tokens * width * 4
    handle.reset()
    assert handle.stats()["cache_bytes"] == 0


class _InPlaceModel(torch.nn.Module):
    """Scales a sub-module's output in place, as some research code does."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x, t):
        out = self.proj(x)
        out.mul_(0.5)
        return x + out


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_in_place_modification_of_a_cached_output_is_an_error(mode):
    """A model that edits a sub-module's output in place would corrupt the cache: refused loudly,
    also under inference mode, whose tensors have no version counter (a kept value is a normal one)."""
    model = _InPlaceModel().eval()
    with smoothcache.wrap(model, adapter=ProjAdapter(_InPlaceModel), schedule={"proj": [1, 0, 0, 1]}), mode():
        x = torch.randn(2, 4)
        model(x, torch.tensor(900))  # keeps the value the model then halves in place
        with pytest.raises(GenerationError, match="modified the output of 'proj' in place"):
            model(x, torch.tensor(500))  # its first reuse


def test_a_kept_value_under_inference_mode_is_exact_and_costs_one_copy(dit_pipe):
    """Under inference mode the value kept for a later step is a normal copy: outputs are those of no_grad."""
    with smoothcache.wrap(dit_pipe, schedule={"attn1": ATTN, "ff": FF}):
        with torch.no_grad():
            expected = generate(dit_pipe, 0)
        with torch.inference_mode():
            assert torch.equal(generate(dit_pipe, 0), expected)
