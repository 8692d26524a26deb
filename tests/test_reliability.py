"""Composition with other hooks, faults, threads, dtypes and grad modes: never a silent mix of caches."""

from __future__ import annotations

import threading

import pytest
import torch
from test_dit_pipeline import ATTN, FF, STEPS, generate

import smoothcache
from helpers import assert_pristine, zeros
from smoothcache import GenerationError, WrapError
from smoothcache.reference.pipelines import dit_pipeline, dit_transformer, sample_dit

ALL = {"attn1": [1] * STEPS, "ff": [1] * STEPS}
SKIP = {"attn1": ATTN, "ff": FF}


# -- composition ---------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["offload-then-wrap", "wrap-then-offload"])
def test_model_cpu_offload_composes(order):
    plain = dit_pipeline("tiny")
    plain.set_progress_bar_config(disable=True)
    plain.enable_model_cpu_offload(device="cpu")
    reference = generate(plain, 0)

    pipe = dit_pipeline("tiny")
    pipe.set_progress_bar_config(disable=True)
    if order == "offload-then-wrap":
        pipe.enable_model_cpu_offload(device="cpu")
    handle = smoothcache.wrap(pipe.transformer, schedule=ALL)
    if order == "wrap-then-offload":
        pipe.enable_model_cpu_offload(device="cpu")
    assert torch.equal(generate(pipe, 0), reference)
    handle.unwrap()
    assert hasattr(pipe.transformer, "_hf_hook")  # accelerate's hook survives our unwrap
    assert torch.equal(generate(pipe, 0), reference)


def test_sequential_cpu_offload_composes():
    plain = dit_pipeline("tiny")
    plain.set_progress_bar_config(disable=True)
    try:
        plain.enable_sequential_cpu_offload(device="cpu")
        reference = generate(plain, 0)
    except Exception as error:  # accelerate's meta-device offload needs an accelerator here
        pytest.skip(f"sequential offload does not run without smoothcache on this machine: {type(error).__name__}")
    pipe = dit_pipeline("tiny")
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_sequential_cpu_offload(device="cpu")
    with smoothcache.wrap(pipe.transformer, schedule=ALL):
        assert torch.equal(generate(pipe, 0), reference)
    assert torch.equal(generate(pipe, 0), reference)


def test_accelerate_hook_added_after_wrap_keeps_working_after_unwrap():
    from accelerate.hooks import ModelHook, add_hook_to_module

    class Doubling(ModelHook):
        def post_forward(self, module, output):
            return output * 2

    model = dit_transformer("tiny")
    reference = sample_dit(model, STEPS)
    attention = model.transformer_blocks[0].attn1
    handle = smoothcache.wrap(model, schedule=ALL)
    add_hook_to_module(attention, Doubling())  # wraps our gate
    hooked = sample_dit(model, STEPS)
    handle.unwrap()
    assert torch.equal(sample_dit(model, STEPS), hooked)  # accelerate's hook still runs, on the original forward
    assert not torch.equal(hooked, reference)


@pytest.mark.parametrize("how", ["first_block_cache", "pyramid_attention_broadcast"])
def test_diffusers_cache_hooks_are_refused_with_the_fix(how):
    from diffusers.hooks import (
        FirstBlockCacheConfig,
        PyramidAttentionBroadcastConfig,
        apply_first_block_cache,
        apply_pyramid_attention_broadcast,
    )

    model = dit_transformer("tiny")
    if how == "first_block_cache":  # hooks on the blocks
        apply_first_block_cache(model, FirstBlockCacheConfig(threshold=0.1))
    else:  # hooks on the attention modules smoothcache would gate
        apply_pyramid_attention_broadcast(
            model, PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=2, current_timestep_callback=lambda: 500)
        )
    modules = [m for block in model.transformer_blocks for m in (block.attn1, block.ff)]
    before = [m.__dict__.get("forward") for m in modules]
    with pytest.raises(WrapError, match=r"another step cache is active on this model: .*disable_cache"):
        smoothcache.wrap(model, schedule=SKIP)
    assert [m.__dict__.get("forward") for m in modules] == before  # nothing of ours installed


def test_a_step_cache_enabled_after_wrap_is_refused_at_the_next_generation():
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache

    model = dit_transformer("tiny")
    with smoothcache.wrap(model, schedule=SKIP):
        sample_dit(model, STEPS)
        apply_first_block_cache(model, FirstBlockCacheConfig(threshold=0.1))
        with pytest.raises(GenerationError, match=r"another step cache was enabled on this wrapped model: .*FBCHeadBlockHook"):
            sample_dit(model, STEPS)


def test_cache_dit_enabled_after_wrap_is_refused_at_the_next_generation():
    pytest.importorskip("cache_dit")
    from benchmarks.peers import DBCache

    model = dit_transformer("tiny")
    with smoothcache.wrap(model, schedule=SKIP):
        sample_dit(model, STEPS)
        with DBCache().apply(model, 0.1, STEPS), pytest.raises(GenerationError, match=r"cache-dit's enable_cache"):
            sample_dit(model, STEPS)


def test_unwrap_works_beneath_group_offloading_added_after_wrap():
    """diffusers' HookRegistry wraps gated forwards after wrap (leaf-level offloading wraps FLUX's
    gated single-block ``proj_out`` Linear): unwrap puts the originals into its chain, so the model
    then runs as with offloading alone, and can be wrapped again."""
    from diffusers.hooks import apply_group_offloading

    from smoothcache.reference.zoo import pipelines

    pipe = pipelines.BUILDERS["flux"](0)
    pipe.set_progress_bar_config(disable=True)
    reference = pipelines.call("flux", pipe, seed=1, steps=4)
    with smoothcache.wrap(pipe) as probe:
        keys = [c.key for c in probe.components]
    schedule = smoothcache.Schedule({key: [1, 0, 1, 1] for key in keys})
    handle = smoothcache.wrap(pipe, schedule=schedule)
    cached = pipelines.call("flux", pipe, seed=1, steps=4)
    apply_group_offloading(pipe.transformer, onload_device=torch.device("cpu"), offload_type="leaf_level")
    assert torch.equal(pipelines.call("flux", pipe, seed=1, steps=4), cached)
    handle.unwrap()
    assert not handle.active and torch.equal(pipelines.call("flux", pipe, seed=1, steps=4), reference)
    with smoothcache.wrap(pipe, schedule=schedule):
        assert torch.equal(pipelines.call("flux", pipe, seed=1, steps=4), cached)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_all_compute_is_bit_identical_and_reuse_is_finite(dtype):
    model = dit_transformer("tiny").to(dtype)

    def run():
        with torch.no_grad():
            return sample_dit(model, STEPS)

    reference = run()
    with smoothcache.wrap(model, schedule=ALL):
        assert torch.equal(run(), reference)
    with smoothcache.wrap(model, schedule=SKIP) as handle:
        cached = run()
        assert handle.stats()["reused"] == (zeros(ATTN) + zeros(FF)) * 2
    assert torch.isfinite(cached).all() and not torch.equal(cached, reference)


def test_inference_mode_and_no_grad_give_the_same_result():
    model = dit_transformer("tiny")
    with smoothcache.wrap(model, schedule=SKIP):
        with torch.no_grad():
            no_grad = sample_dit(model, STEPS)
        with torch.inference_mode():
            inference = sample_dit(model, STEPS)
    assert torch.equal(no_grad, inference)


def test_train_mode_warns_and_reuse_with_gradients_is_refused():
    model = dit_transformer("tiny").train()
    with pytest.warns(UserWarning, match="training mode"):
        handle = smoothcache.wrap(model, schedule={"attn1": [1, 0, 1]})
    x, labels = torch.randn(2, 4, 8, 8), torch.tensor([1, 1000])
    model(x, timestep=torch.tensor([900, 900]), class_labels=labels)
    with pytest.raises(GenerationError, match="gradients enabled.*torch.no_grad"):
        model(x, timestep=torch.tensor([500, 500]), class_labels=labels)
    handle.unwrap()
    assert_pristine(model)


def test_lora_style_adapter_added_after_wrap_is_used():
    class LoRALinear(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear) -> None:
            super().__init__()
            self.base = base
            self.down = torch.nn.Linear(base.in_features, 2, bias=False)
            self.up = torch.nn.Linear(2, base.out_features, bias=False)
            torch.nn.init.normal_(self.up.weight, std=0.5)

        def forward(self, x):
            return self.base(x) + self.up(self.down(x))

    def add_lora(model):
        torch.manual_seed(3)
        for block in model.transformer_blocks:
            block.attn1.to_q = LoRALinear(block.attn1.to_q)

    wrapped, reference = dit_transformer("tiny"), dit_transformer("tiny")
    with smoothcache.wrap(wrapped, schedule=SKIP):
        add_lora(wrapped)  # after wrap, as a user loading an adapter would
        cached = sample_dit(wrapped, STEPS)
    add_lora(reference)
    with smoothcache.wrap(reference, schedule=SKIP):
        expected = sample_dit(reference, STEPS)
    assert torch.equal(cached, expected)


# -- faults --------------------------------------------------------------------------------------


class FailOnce:
    """A forward hook that raises once at the ``at``-th call of its module."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, module, args, output):
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("component failed")


@pytest.mark.parametrize("at", [1, 4])
def test_an_exception_inside_a_component_leaves_no_stale_state(at):
    model = dit_transformer("tiny")
    with smoothcache.wrap(model, schedule=SKIP):
        fresh = sample_dit(model, STEPS)
    hook = model.transformer_blocks[1].ff.register_forward_hook(FailOnce(at))
    with smoothcache.wrap(model, schedule=SKIP):
        with pytest.raises(RuntimeError, match="component failed"):
            sample_dit(model, STEPS)
        after = sample_dit(model, STEPS)
    hook.remove()
    assert torch.equal(after, fresh)


@pytest.mark.parametrize("wrapped", ["pipe", "pipe.transformer"])
def test_an_exception_in_a_user_callback_at_the_first_step_leaves_no_stale_state(audio_pipe, wrapped):
    """Stable Audio's callback raises right after step 0; the next call repeats step 0's timestep."""
    from test_stable_audio import ATTN1, ATTN2
    from test_stable_audio import FF as AUDIO_FF
    from test_stable_audio import generate as generate_audio

    schedule = {"attn1": ATTN1, "attn2": ATTN2, "ff": AUDIO_FF}
    # the next call's first step looks like a second batch of the interrupted one: without the
    # pipeline's calls to tell, the first reuse computes (it is exact either way; see guarantees)
    expected = schedule if wrapped == "pipe" else {key: [table[0], 1, *table[2:]] for key, table in schedule.items()}
    with smoothcache.wrap(audio_pipe, schedule=expected):
        fresh = generate_audio(audio_pipe, 0)

    def callback(step, timestep, latents):
        raise KeyboardInterrupt

    with smoothcache.wrap(audio_pipe if wrapped == "pipe" else audio_pipe.transformer, schedule=schedule):
        with pytest.raises(KeyboardInterrupt):
            audio_pipe(
                "a dog barking in the rain",
                negative_prompt="low quality noise",
                num_inference_steps=len(ATTN1),
                audio_end_in_s=5.0,
                generator=torch.Generator().manual_seed(0),
                callback=callback,
            )
        after = generate_audio(audio_pipe, 0)
    assert torch.equal(after, fresh)
    assert_pristine(audio_pipe.transformer)


def test_two_threads_on_one_wrapped_model_are_detected():
    model = dit_transformer("tiny")
    first_step_done, go_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def pause_after_first_evaluation(module, args, output):
        if not first_step_done.is_set():
            first_step_done.set()
            go_on.wait(timeout=30)

    hook = model.register_forward_hook(pause_after_first_evaluation)

    def generate_in_thread():
        try:
            sample_dit(model, STEPS, seed=1)
        except BaseException as error:
            errors.append(error)

    with smoothcache.wrap(model, schedule=SKIP) as handle:
        worker = threading.Thread(target=generate_in_thread)
        worker.start()
        assert first_step_done.wait(timeout=30)
        with pytest.raises(GenerationError, match="two threads are generating with one wrapped model"):
            sample_dit(model, STEPS, seed=2)
        go_on.set()
        worker.join(timeout=60)
        assert not errors
        handle.reset()
        sample_dit(model, STEPS, seed=3)  # after the other thread finished, this thread may generate
    hook.remove()


def _twin_pipeline(pipe):
    """A second pipeline over the same transformer and VAE, with its own scheduler (two request handlers)."""
    from diffusers import DDIMScheduler, DiTPipeline

    twin = DiTPipeline(transformer=pipe.transformer, vae=pipe.vae, scheduler=DDIMScheduler.from_config(pipe.scheduler.config))
    twin.set_progress_bar_config(disable=True)
    return twin


@pytest.mark.parametrize("watched_runs_first", [False, True])
def test_two_pipelines_sharing_a_wrapped_transformer_in_two_threads_never_mix(watched_runs_first):
    """One pipeline is wrapped (its calls start generations), the other shares its transformer. While
    one thread's generation is part-way, the other thread's call is refused, whichever pipeline
    either uses; the first thread's output is that of a generation alone."""
    watched = dit_pipeline("tiny")
    watched.set_progress_bar_config(disable=True)
    other = _twin_pipeline(watched)
    first, second = (watched, other) if watched_runs_first else (other, watched)
    with smoothcache.wrap(watched, schedule=SKIP):
        alone = generate(first, 1)
    first_step_done, go_on = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def pause_after_first_evaluation(module, args, output):
        if threading.current_thread().name == "first" and not first_step_done.is_set():
            first_step_done.set()
            go_on.wait(timeout=30)

    hook = watched.transformer.register_forward_hook(pause_after_first_evaluation)

    def run_first():
        try:
            results["first"] = generate(first, 1)
        except BaseException as error:
            results["first"] = error

    try:
        with smoothcache.wrap(watched, schedule=SKIP):
            worker = threading.Thread(target=run_first, name="first")
            worker.start()
            assert first_step_done.wait(timeout=30)
            with pytest.raises(GenerationError, match="two threads are generating with one wrapped model"):
                generate(second, 2)
            go_on.set()
            worker.join(timeout=60)
    finally:
        go_on.set()
        hook.remove()
    assert isinstance(results["first"], torch.Tensor) and torch.equal(results["first"], alone)


def test_a_scheduler_replaced_after_wrap_still_starts_every_generation(dit_pipe):
    """``pipe.scheduler = X.from_config(...)`` after wrap(pipe): the new scheduler is watched, so a
    generation cancelled after its first step is not continued by the next call."""
    from diffusers import DDIMScheduler

    def cancelling_scheduler():
        """A new scheduler whose first ``step`` raises: the generation stops after its first evaluation."""
        scheduler = DDIMScheduler.from_config(dit_pipe.scheduler.config)

        def step(*args, **kwargs):
            raise KeyboardInterrupt

        scheduler.step = step
        return scheduler

    with smoothcache.wrap(dit_pipe, schedule=SKIP):
        dit_pipe.scheduler = DDIMScheduler.from_config(dit_pipe.scheduler.config)
        alone = generate(dit_pipe, 4, labels=(3, 5))
    with smoothcache.wrap(dit_pipe, schedule=SKIP) as handle:
        dit_pipe.scheduler = cancelling_scheduler()
        with pytest.raises(KeyboardInterrupt):
            generate(dit_pipe, 0, labels=(7, 8))
        dit_pipe.scheduler = DDIMScheduler.from_config(dit_pipe.scheduler.config)  # and once more, between calls
        assert torch.equal(generate(dit_pipe, 4, labels=(3, 5)), alone)
        assert handle.stats()["ambiguous"] == 0
    assert "set_timesteps" not in vars(dit_pipe.scheduler)  # unwrap leaves the scheduler as it is


def _count_calls(modules) -> tuple[list[int], list]:
    calls = [0]
    hooks = [module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1)) for module in modules]
    return calls, hooks


def test_stats_count_only_the_calls_that_ran():
    """SD3 with skip-layer guidance: a third model call per step skips a block for part of the
    generation; those components never ran there, and nothing counts them."""
    from smoothcache.reference.zoo import pipelines as zoo

    pipe = zoo.BUILDERS["sd3"](0)
    pipe.set_progress_bar_config(disable=True)
    with smoothcache.wrap(pipe) as handle:
        components = [component.module for component in handle.components]
    calls, hooks = _count_calls(components)
    try:
        table = [1, 0, 1, 0, 1, 1]
        with smoothcache.wrap(pipe, schedule={"attn": table, "ff": table, "ff_context": table}) as handle:
            zoo.call(
                "sd3", pipe, steps=6, prompt="a cat", skip_guidance_layers=[1], skip_layer_guidance_start=0.0, skip_layer_guidance_stop=0.5
            )
            stats = handle.stats()
    finally:
        for hook in hooks:
            hook.remove()
    assert stats["computed"] + stats["reused"] == calls[0] and stats["reused"] > 0  # the hooks see every call, reused too
    assert stats["computed"] + stats["reused"] < len(components) * stats["evaluations"]  # a skipped block is no call


def test_gradient_checkpointing_recomputation_is_not_another_call():
    model = dit_transformer("tiny")
    model.enable_gradient_checkpointing()
    model.train()
    latents = torch.randn(2, 4, 8, 8, requires_grad=True)
    with pytest.warns(UserWarning, match="training mode"):
        handle = smoothcache.wrap(model)
    with handle:
        model(latents, timestep=torch.tensor([500, 500]), class_labels=torch.tensor([1, 2])).sample.sum().backward()
        stats = handle.stats()
    assert stats["computed"] == len(handle.components) and stats["evaluations"] == 1
    assert latents.grad is not None and torch.isfinite(latents.grad).all()
