"""Engine overhead and speedup vs the MAC-ideal on a medium diffusers DiT (CPU or GPU).

Variants, interleaved in one process, median over rounds of one full denoising loop (DDIM, CFG as
one batch of 2) of a DiTTransformer2DModel with 8 layers, width 256, 32x32 latent, patch 2:

- unwrapped: the plain model;
- all-compute: wrapped with a schedule that computes everything (the engine's pure overhead);
- smoothcache fora-2: wrapped with a schedule reusing every other step for attn1 and ff;
- hand-written fora-2: the same reuse pattern by a minimal monkey-patched cache (no tracker, no
  checks): the floor any engine could reach.

Run: ``python -m benchmarks.overhead [--rounds 10 --steps 20]``. Writes benchmarks/results/overhead.json.
"""

from __future__ import annotations

import argparse

import torch

import smoothcache
from benchmarks.common import interleaved_times, median, print_table, write_results
from smoothcache.reference.pipelines import dit_transformer
from smoothcache_core.macs import count_macs


def denoise(transformer, steps: int, seed: int = 0, scale: float = 4.0) -> torch.Tensor:
    """DDIM with classifier-free guidance in one batch (cond, uncond), as DiTPipeline does."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler()
    scheduler.set_timesteps(steps)
    side = transformer.config.sample_size
    device = transformer.device
    latents = torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(seed)).to(device)
    labels = torch.tensor([7, 1000], device=device)
    for t in scheduler.timesteps:
        out = transformer(torch.cat([latents, latents]), timestep=t.expand(2).to(device), class_labels=labels).sample
        eps_c, eps_u = out[:, :4].chunk(2)
        latents = scheduler.step(eps_u + scale * (eps_c - eps_u), t, latents).prev_sample
    return latents


class HandWrittenFora:
    """The least a cache can do: patch forwards, count calls, reuse the last output on odd steps."""

    def __init__(self, modules: list[torch.nn.Module], steps: int) -> None:
        self.modules, self.steps = modules, steps

    def __enter__(self) -> HandWrittenFora:
        calls_per_step = len(self.modules)
        counter = [0]
        steps = self.steps
        for module in self.modules:
            original, store = module.forward, {}

            def forward(*args, _original=original, _store=store, **kwargs):
                step = counter[0] // calls_per_step
                counter[0] += 1
                if step % 2 == 1 and step != steps - 1:
                    return _store["value"]
                _store["value"] = _original(*args, **kwargs)
                return _store["value"]

            module.forward = forward
        return self

    def __exit__(self, *exc_info) -> None:
        for module in self.modules:
            del module.forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    transformer = dit_transformer("medium", seed=0).to(args.device)
    all_compute = smoothcache.Schedule({"attn1": [1] * args.steps, "ff": [1] * args.steps})
    fora = smoothcache.Schedule.fora(args.steps, 2, ["attn1", "ff"])

    def wrapped(schedule):
        def run():
            with smoothcache.wrap(transformer, schedule=schedule):
                denoise(transformer, args.steps)

        return run

    def hand_written():
        modules = [m for block in transformer.transformer_blocks for m in (block.attn1, block.ff)]
        with HandWrittenFora(modules, args.steps):
            denoise(transformer, args.steps)

    with smoothcache.wrap(transformer, schedule=fora) as handle:  # check both caches agree exactly
        expected = denoise(transformer, args.steps)
    modules = [m for block in transformer.transformer_blocks for m in (block.attn1, block.ff)]
    with HandWrittenFora(modules, args.steps):
        assert torch.equal(expected, denoise(transformer, args.steps)), "hand-written cache disagrees"

    side = transformer.config.sample_size
    example = (
        torch.randn(2, 4, side, side, device=args.device),
        torch.tensor([999, 999], device=args.device),
        torch.tensor([7, 1000], device=args.device),
    )
    macs = count_macs(handle.components, lambda: transformer(example[0], timestep=example[1], class_labels=example[2]))
    report = macs.for_schedule(fora.compile(handle.components), handle.components)

    times = interleaved_times(
        {
            "unwrapped": lambda: denoise(transformer, args.steps),
            "all-compute": wrapped(all_compute),
            "smoothcache fora-2": wrapped(fora),
            "hand-written fora-2": hand_written,
        },
        rounds=args.rounds,
    )
    medians = {name: median(values) for name, values in times.items()}
    base = medians["unwrapped"]
    speedup = base / medians["smoothcache fora-2"]
    results = {
        "model": "DiTTransformer2DModel 8 layers, width 256, 32x32 latent, patch 2, CFG batch 2",
        "steps": args.steps,
        "rounds": args.rounds,
        "device": args.device,
        "median_seconds": medians,
        "all_compute_over_unwrapped": medians["all-compute"] / base,
        "fora2_speedup": speedup,
        "fora2_mac_fraction": report.fraction,
        "fora2_ideal_speedup": report.ideal_speedup,
        "fora2_share_of_ideal": speedup / report.ideal_speedup,
        "smoothcache_over_hand_written": medians["smoothcache fora-2"] / medians["hand-written fora-2"],
        "cached_share_of_macs": macs.cached_share,
    }
    print_table(
        ["variant", "median s", "vs unwrapped"],
        [[name, value, value / base] for name, value in medians.items()],
    )
    print()
    print_table(
        ["measure", "value", "goal"],
        [
            ["all-compute / unwrapped", results["all_compute_over_unwrapped"], "<= 1.01"],
            ["fora-2 speedup", speedup, ""],
            ["fora-2 MAC-ideal speedup", report.ideal_speedup, ""],
            ["fora-2 share of MAC-ideal", results["fora2_share_of_ideal"], ">= 0.90"],
            ["smoothcache / hand-written", results["smoothcache_over_hand_written"], "<= 1.02"],
        ],
    )
    print(f"\nwrote {write_results('overhead', results)}")


if __name__ == "__main__":
    main()
