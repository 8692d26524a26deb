"""Speedup vs the MAC-ideal per model family, for a calibrated schedule that skips about 40 % of MACs.

For each model: calibrate on two generations, derive ``profile.schedule(macs=0.6)`` (the paper's
greedy scan at the α that meets the target), then time plain and cached generations interleaved in
one process; the speedup is the median of per-round ratios, the MAC-ideal comes from the profile's
flop counts. The same with whole blocks cached (``unit="block"``, its own calibration and schedule)
where the model has blocks to cache. Random weights: this measures speed, not quality (see
benchmarks/frontier.py).

Run: ``python -m benchmarks.speedup [--models flux wan] [--rounds 10]``.
Writes benchmarks/results/speedup.json.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Callable
from typing import Any

import torch

import smoothcache
from benchmarks.common import RESULTS, interleaved_times, machine, median, paired_ratio, print_table, write_results
from smoothcache.reference import pipelines

STORED = RESULTS / "speedup.json"


def stable_audio_case() -> tuple[str, Any, Callable[[int], Any]]:
    """Medium StableAudioDiTModel (8 layers, width 256, 256 latent frames) in a StableAudioPipeline, CFG."""
    pipe = pipelines.stable_audio_pipeline("medium", seed=0)
    pipe.set_progress_bar_config(disable=True)

    def generate(seed: int) -> Any:
        generator = torch.Generator().manual_seed(seed)
        return pipe("a dog barking in the rain", negative_prompt="low quality noise", num_inference_steps=20, generator=generator)

    return "StableAudioDiTModel 8 layers, width 256, 256 frames, CFG batch 2, 20 cosine DPM++ steps", pipe, generate


def stdit3_case() -> tuple[str, Any, Callable[[int], Any]]:
    """Medium STDiT3 (depth 4, width 128, 8 frames, 16x16 latent), RFLOW with CFG batch 2."""
    model = pipelines.stdit3("medium", seed=0)
    return (
        "STDiT3 depth 4, width 128, 8 frames x 16x16 latent, CFG batch 2, 20 RFLOW steps",
        model,
        lambda seed: pipelines.sample_stdit3(model, 20, seed=seed, size="medium"),
    )


def mmdit_case() -> tuple[str, Any, Callable[[int], Any]]:
    """Medium MMDiT (2 double + 4 single blocks, width 256, 4 frames x 16x16 latent), CFG batch 3."""
    model = pipelines.mmdit("medium", seed=0)
    return (
        "MMDiT 2 double + 4 single blocks, width 256, 256 image + 32 text tokens, CFG batch 3, 20 steps",
        model,
        lambda seed: pipelines.sample_mmdit(model, 20, seed=seed, size="medium"),
    )


def _flow_loop(
    model: torch.nn.Module, scheduler: Any, steps: int, latent_shape: tuple[int, ...], call: Callable[..., torch.Tensor]
) -> Callable[[int], torch.Tensor]:
    """A flow-matching denoising loop with ``scheduler`` as the pipelines run it: ``call(latents, t)``
    returns the velocity (guidance included)."""

    def generate(seed: int) -> torch.Tensor:
        latents = torch.randn(latent_shape, generator=torch.Generator().manual_seed(seed))
        scheduler.set_timesteps(steps)
        for t in scheduler.timesteps:
            latents = scheduler.step(call(latents, t), t, latents).prev_sample
        return latents

    return generate


def flux_case() -> tuple[str, Any, Callable[[int], Any]]:
    """Medium FluxTransformer2DModel (2 double + 4 single blocks, width 256, guidance-distilled),
    256 image tokens (a 32x32 latent packed 2x2) and 64 text tokens, 20 Euler steps, batch 1."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    torch.manual_seed(0)
    model = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=2,
        num_single_layers=4,
        attention_head_dim=64,
        num_attention_heads=4,
        joint_attention_dim=256,
        pooled_projection_dim=256,
        guidance_embeds=True,
        axes_dims_rope=(16, 24, 24),
    ).eval()
    text = torch.randn(1, 64, 256, generator=torch.Generator().manual_seed(1))
    pooled = torch.randn(1, 256, generator=torch.Generator().manual_seed(2))
    rows, columns = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    image_ids = torch.stack([torch.zeros_like(rows), rows, columns], dim=-1).reshape(-1, 3).float()
    text_ids = torch.zeros(64, 3)
    guidance = torch.tensor([3.5])

    def call(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(
            hidden_states=latents,
            encoder_hidden_states=text,
            pooled_projections=pooled,
            timestep=t.expand(1) / 1000,
            img_ids=image_ids,
            txt_ids=text_ids,
            guidance=guidance,
            return_dict=False,
        )[0]

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return (
        "FluxTransformer2DModel 2 double + 4 single blocks, width 256, 256 image + 64 text tokens, distilled guidance, 20 Euler steps",
        model,
        _flow_loop(model, scheduler, 20, (1, 256, 64), call),
    )


def wan_case() -> tuple[str, Any, Callable[[int], Any]]:
    """Medium WanTransformer3DModel (6 blocks, width 256), 4 latent frames x 32x32 (1024 tokens),
    guidance as two calls per step as WanPipeline runs it, 20 UniPC flow steps."""
    from diffusers import UniPCMultistepScheduler, WanTransformer3DModel

    torch.manual_seed(0)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=4,
        attention_head_dim=64,
        in_channels=16,
        out_channels=16,
        text_dim=256,
        freq_dim=256,
        ffn_dim=1024,
        num_layers=6,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,
    ).eval()
    prompt = torch.randn(1, 64, 256, generator=torch.Generator().manual_seed(1))
    negative = torch.randn(1, 64, 256, generator=torch.Generator().manual_seed(2))

    def call(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        timestep = t.expand(1)
        conditional = model(hidden_states=latents, timestep=timestep, encoder_hidden_states=prompt, return_dict=False)[0]
        unconditional = model(hidden_states=latents, timestep=timestep, encoder_hidden_states=negative, return_dict=False)[0]
        return unconditional + 5.0 * (conditional - unconditional)

    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return (
        "WanTransformer3DModel 6 blocks, width 256, 4 frames x 32x32 latent (1024 tokens), CFG as two calls, 20 UniPC steps",
        model,
        _flow_loop(model, scheduler, 20, (1, 16, 4, 32, 32), call),
    )


CASES: dict[str, Callable[[], tuple[str, Any, Callable[[int], Any]]]] = {
    "stable-audio": stable_audio_case,
    "stdit3": stdit3_case,
    "mmdit": mmdit_case,
    "flux": flux_case,
    "wan": wan_case,
}


def measure(name: str, rounds: int) -> dict[str, Any]:
    description, model, generate = CASES[name]()
    profile = smoothcache.calibrate(model, lambda: [generate(seed) for seed in (100, 101)])
    schedule = profile.schedule(macs=0.6)

    def cached(chosen: smoothcache.Schedule) -> Callable[[], None]:
        def run() -> None:
            with smoothcache.wrap(model, schedule=chosen):
                generate(0)

        return run

    variants = {"plain": lambda: generate(0), "cached": cached(schedule)}
    block_schedule: smoothcache.Schedule | None = None
    try:
        block_profile = smoothcache.calibrate(model, lambda: [generate(seed) for seed in (100, 101)], unit="block")
    except smoothcache.AdapterError as error:  # no block unit for this model: say why
        no_blocks = str(error)
    else:
        block_schedule = block_profile.schedule(macs=0.6)
        variants["blocks"] = cached(block_schedule)
    times = interleaved_times(variants, rounds=rounds)
    speedup = 1 / paired_ratio(times, "cached", "plain")
    ideal = schedule.provenance["ideal_speedup"]
    result = {
        "model": description,
        "schedule_alpha": schedule.provenance["alpha"],
        "mac_fraction": schedule.provenance["mac_fraction"],
        "ideal_speedup": ideal,
        "speedup": speedup,
        "share_of_ideal": speedup / ideal,
        "median_seconds": {key: median(values) for key, values in times.items()},
    }
    if block_schedule is None:
        return {**result, "blocks": {"unsupported": no_blocks}}
    block_speedup, block_ideal = 1 / paired_ratio(times, "blocks", "plain"), block_schedule.provenance["ideal_speedup"]
    blocks = {"mac_fraction": block_schedule.provenance["mac_fraction"], "ideal_speedup": block_ideal, "speedup": block_speedup}
    return {**result, "blocks": {**blocks, "share_of_ideal": block_speedup / block_ideal}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Should have t[ab]")
    torch.set_grad_enabled(False)
    today = machine()["date"]
    results = {name: {**measure(name, args.rounds), "rounds": args.rounds, "date": today} for name in args.models}
    print_table(
        ["model", "unit", "MAC fraction", "ideal speedup", "measured speedup", "share of ideal"],
        [
            [name, unit, r["mac_fraction"], r["ideal_speedup"], r["speedup"], r["share_of_ideal"]]
            for name, result in results.items()
            for unit, r in (("component", result), ("block", result["blocks"]))
            if "speedup" in r
        ],
    )
    stored = json.loads(STORED.read_text())["models"] if STORED.exists() else {}
    models = {name: results.get(name, stored.get(name)) for name in CASES if name in results or name in stored}
    print(f"\nwrote {write_results('speedup', {'models': models})} (models not re-run keep their stored results)")


if __name__ == "__main__":
    main()
