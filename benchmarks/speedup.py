"""Speedup vs the MAC-ideal per model family, for a calibrated schedule that skips about 40 % of MACs.

For each model: calibrate on two generations, derive ``profile.schedule(macs=0.6)`` (the paper's
greedy scan at the α that meets the target), then time plain and cached generations interleaved in
one process; the speedup is the median of per-round ratios, the MAC-ideal comes from the profile's
flop counts. Random weights: this measures speed, not quality (see benchmarks/frontier.py).

Run: ``python -m benchmarks.speedup [--models stable-audio] [--rounds 10]``.
Writes benchmarks/results/speedup.json.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any, Callable

import torch

import smoothcache
from benchmarks.common import interleaved_times, median, paired_ratio, print_table, write_results
from smoothcache.reference import pipelines


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


CASES: dict[str, Callable[[], tuple[str, Any, Callable[[int], Any]]]] = {
    "stable-audio": stable_audio_case,
    "stdit3": stdit3_case,
    "mmdit": mmdit_case,
}


def measure(name: str, rounds: int) -> dict[str, Any]:
    description, model, generate = CASES[name]()
    profile = smoothcache.calibrate(model, lambda: [generate(seed) for seed in (100, 101)])
    schedule = profile.schedule(macs=0.6)

    def cached() -> None:
        with smoothcache.wrap(model, schedule=schedule):
            generate(0)

    times = interleaved_times({"plain": lambda: generate(0), "cached": cached}, rounds=rounds)
    speedup = 1 / paired_ratio(times, "cached", "plain")
    ideal = schedule.provenance["ideal_speedup"]
    return {
        "model": description,
        "schedule_alpha": schedule.provenance["alpha"],
        "mac_fraction": schedule.provenance["mac_fraction"],
        "ideal_speedup": ideal,
        "speedup": speedup,
        "share_of_ideal": speedup / ideal,
        "median_seconds": {key: median(values) for key, values in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Should have t[ab]")
    torch.set_grad_enabled(False)
    results = {name: measure(name, args.rounds) for name in args.models}
    print_table(
        ["model", "MAC fraction", "ideal speedup", "measured speedup", "share of ideal"],
        [[name, r["mac_fraction"], r["ideal_speedup"], r["speedup"], r["share_of_ideal"]] for name, r in results.items()],
    )
    print(f"\nwrote {write_results('speedup', {'rounds': args.rounds, 'models': results})}")


if __name__ == "__main__":
    main()
