"""benchmarks.peers: every peer runs where it says it does, skips work, leaks no state between
generations and leaves the model exactly as it found it; the original SmoothCache helper and
smoothcache give bit-identical outputs for the same schedule."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
from collections.abc import Callable

import pytest
import torch
from torch import nn

import smoothcache
from benchmarks import peers
from helpers import assert_pristine
from smoothcache.reference import pipelines
from smoothcache_core.macs import flop_counter

#: Evaluations per generation: cache-dit's DBCache never caches its first 8 steps.
STEPS = {"dit": 12, "stable-audio": 12, "stdit3": 4}

#: (peer class, model) pairs a peer must report unsupported, with a word its reason must contain.
UNSUPPORTED = {
    (peers.FirstBlockCache, "stdit3"): "hidden_states",
    (peers.PyramidAttentionBroadcast, "stdit3"): "Attention",
    (peers.DBCache, "stdit3"): "interleaved",
}

#: The optional package each peer needs, for a clean skip without it.
PACKAGES = {peers.DBCache: "cache_dit", peers.OriginalSmoothCache: "SmoothCache"}


def sample_stable_audio(model: nn.Module, steps: int, seed: int = 0, guidance: float = 7.0) -> torch.Tensor:
    """StableAudioPipeline's denoising loop on the bare transformer: cosine DPM-Solver++, guidance as
    one batch [uncond, cond], random conditioning."""
    from diffusers import CosineDPMSolverMultistepScheduler

    scheduler = CosineDPMSolverMultistepScheduler(
        sigma_min=0.3,
        sigma_max=500,
        sigma_data=1.0,
        sigma_schedule="exponential",
        solver_order=2,
        prediction_type="v_prediction",
        rho=7.0,
        final_sigmas_type="zero",
    )
    scheduler.set_timesteps(steps)
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, config.in_channels, config.sample_size, generator=generator) * scheduler.init_noise_sigma
    text = torch.randn(1, 3, config.cross_attention_input_dim, generator=generator)
    encoder_hidden_states = torch.cat([torch.zeros_like(text), text])
    global_hidden_states = torch.randn(1, 1, config.global_states_input_dim, generator=generator).expand(2, 1, -1)
    return pipelines.denoise_stable_audio(model, scheduler, latents, encoder_hidden_states, global_hidden_states, guidance, generator)


BUILDERS: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module, int, int], torch.Tensor]]] = {
    "dit": (lambda: pipelines.dit_transformer("tiny"), lambda model, steps, seed: pipelines.sample_dit(model, steps, seed=seed)),
    "stable-audio": (lambda: pipelines.stable_audio_transformer("tiny"), sample_stable_audio),
    "stdit3": (lambda: pipelines.stdit3("tiny"), lambda model, steps, seed: pipelines.sample_stdit3(model, steps, seed=seed)),
}


def counted(generate: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    counter = flop_counter()
    with counter:
        output = generate()
    return output, counter.get_total_flops()


@pytest.mark.parametrize("model_name", list(BUILDERS))
@pytest.mark.parametrize("peer", peers.PEERS, ids=lambda peer: peer.name)
def test_peer_skips_work_leaks_nothing_and_restores_the_model(peer: peers.Peer, model_name: str) -> None:
    package = PACKAGES.get(type(peer))
    if package is not None and importlib.util.find_spec(package) is None:
        assert "not installed" in peer.unsupported(nn.Linear(1, 1))
        pytest.skip(f"{package} is not installed: {peer.name} cannot be tested")
    build, sample = BUILDERS[model_name]
    model, steps = build(), STEPS[model_name]
    reason = peer.unsupported(model)
    expected = UNSUPPORTED.get((type(peer), model_name))
    if expected is not None:
        assert reason is not None and expected in reason
        with pytest.raises(ValueError, match="cannot run"):
            peer.apply(model, peer.values[0], steps)
        return
    assert reason is None

    def generate(seed: int = 0) -> torch.Tensor:
        return sample(model, steps, seed)

    keys = list(model.state_dict())
    plain, plain_flops = counted(generate)
    value = peer.values[-1]  # the most aggressive setting: it must skip work even on these short runs
    calibrate = lambda: generate(seed=1)  # noqa: E731 (only MagCache uses it)
    with peer.apply(model, value, steps, calibrate=calibrate):
        first, cached_flops = counted(generate)
        second = generate()
    with peer.apply(model, value, steps, calibrate=calibrate):
        fresh = generate()

    assert cached_flops < plain_flops, "the method skipped no work"
    assert not torch.equal(first, plain)
    assert torch.equal(first, second), "state leaked from one generation into the next"
    assert torch.equal(first, fresh)
    assert torch.equal(generate(), plain), "the model computes differently after the context"
    assert list(model.state_dict()) == keys
    assert_pristine(model)
    assert not any(hasattr(module, "_diffusers_hook") for module in model.modules())


def test_the_mildest_settings_are_exact_where_the_method_can_compute_everything() -> None:
    model = pipelines.dit_transformer("tiny")
    plain = pipelines.sample_dit(model, 6)
    for peer in (peers.TaylorSeer(), peers.PyramidAttentionBroadcast(), peers.OriginalSmoothCache()):
        if peer.unsupported(model) is not None:
            continue
        assert peer.values[0] == 1
        with peer.apply(model, 1, 6):
            assert torch.equal(pipelines.sample_dit(model, 6), plain), peer.name


def test_magcache_needs_a_calibration_run() -> None:
    model = pipelines.dit_transformer("tiny")
    with pytest.raises(ValueError, match="calibrate="), peers.MagCache().apply(model, 0.1, 4):
        pass
    assert_pristine(model)


def test_magcache_ratios_come_from_its_calibration_mode_and_average_generations() -> None:
    model = pipelines.dit_transformer("tiny")
    peer = peers.MagCache()
    one = peer.ratios(model, 4, lambda: pipelines.sample_dit(model, 4, seed=1))
    two = peer.ratios(model, 4, lambda: [pipelines.sample_dit(model, 4, seed=s) for s in (1, 1)])
    assert len(one) == 4 and one[0] == 1.0 and one == two
    with pytest.raises(RuntimeError, match="generations of 5 evaluations"):
        peer.ratios(model, 5, lambda: pipelines.sample_dit(model, 4, seed=1))
    assert_pristine(model)


def test_peers_report_missing_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "_installed", lambda module: False)
    model = pipelines.dit_transformer("tiny")
    assert "cache-dit is not installed" in peers.DBCache().unsupported(model)
    assert "dit-smoothcache" in peers.OriginalSmoothCache().unsupported(model)


def test_original_schedule_translates_keys_and_refuses_what_it_cannot_express() -> None:
    schedule = smoothcache.Schedule({"blocks.1.ff": [1, 0, 1], "attn1": [1, 1, 0]})
    assert peers.original_schedule(schedule) == {"ff-1": [1, 0, 1], "attn1": [1, 1, 0]}
    assert peers.original_schedule({"spatial.attn": [1, 0], "temporal.attn": [1, 0]}) == {"attn": [1, 0]}
    with pytest.raises(ValueError, match="different per stack"):
        peers.original_schedule({"spatial.attn": [1, 0], "temporal.attn": [1, 1]})


def test_original_helper_and_smoothcache_give_bit_identical_outputs() -> None:
    """DiffuserCacheHelper (attn1 of every BasicTransformerBlock) and smoothcache.wrap with the same
    ``{"attn1": [...]}`` schedule; then the peer (the generic helper) with attn1 and ff per block."""
    with contextlib.redirect_stdout(io.StringIO()):
        SmoothCache = pytest.importorskip("SmoothCache", reason="dit-smoothcache is not installed")
    steps = 8
    model = pipelines.dit_transformer("tiny")
    plain = pipelines.sample_dit(model, steps)
    schedule = {"attn1": [1, 0, 1, 0, 0, 1, 0, 1]}
    with smoothcache.wrap(model, schedule=schedule):
        ours = pipelines.sample_dit(model, steps)
    helper = SmoothCache.DiffuserCacheHelper(model, schedule=schedule)
    helper.enable()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints one line per attn1 call
            theirs = pipelines.sample_dit(model, steps)
    finally:
        helper.disable()
    assert not torch.equal(ours, plain)
    assert torch.equal(ours, theirs)

    model = pipelines.dit_transformer("tiny")
    per_block = smoothcache.Schedule(
        {"blocks.0.attn1": [1, 0, 1, 1, 0, 1, 0, 1], "blocks.1.ff": [1, 1, 0, 0, 1, 0, 0, 1], "ff": [1, 0, 1, 0, 1, 0, 1, 0]}
    )
    with smoothcache.wrap(model, schedule=per_block):
        ours = pipelines.sample_dit(model, steps)
    peer = dataclasses.replace(peers.OriginalSmoothCache(), values=(per_block,), schedule_for=lambda m, s, value: value)
    with peer.apply(model, per_block, steps):
        theirs = pipelines.sample_dit(model, steps)
    assert torch.equal(ours, theirs)
    assert_pristine(model)
