"""What calibration costs: calibrated generations vs the same plain generations, and schedule derivation.

Medium diffusers DiT (8 layers, width 256, 32x32 latent, DDIM, CFG as one batch of 2). Each round
runs the same generations once plainly and once under ``smoothcache.calibrate`` (lookahead 3),
interleaved; the ratio of medians is the calibration overhead. Then a profile is saved, and new
schedules are derived from the file (greedy by α, by MAC target, optimal per block) and timed.

Run: ``python -m benchmarks.calibration_cost [--rounds 5 --steps 20 --generations 4]``.
Writes benchmarks/results/calibration_cost.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import smoothcache
from benchmarks.common import interleaved_times, median, paired_ratio, print_table, write_results
from smoothcache.reference.pipelines import dit_transformer, sample_dit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--generations", type=int, default=4)
    args = parser.parse_args()

    transformer = dit_transformer("medium", seed=0)

    def generations() -> None:
        for seed in range(args.generations):
            sample_dit(transformer, args.steps, label=seed, seed=seed)

    profiles = []
    times = interleaved_times(
        {
            "plain": generations,
            "calibrate": lambda: profiles.append(smoothcache.calibrate(transformer, generations, lookahead=3)),
        },
        rounds=args.rounds,
    )
    ratio = paired_ratio(times, "calibrate", "plain")

    derivations = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dit.profile.safetensors"
        profiles[-1].save(path)
        for name, kwargs in {
            "greedy alpha=0.2 (type)": {"alpha": 0.2},
            "greedy macs=0.6 (type, bisection)": {"macs": 0.6},
            "greedy macs=0.6 (block, bisection)": {"macs": 0.6, "granularity": "block"},
            "optimal macs=0.6 (block)": {"macs": 0.6, "granularity": "block", "method": "optimal"},
        }.items():
            start = time.perf_counter()
            smoothcache.ErrorProfile.load(path).schedule(**kwargs)
            derivations[name] = time.perf_counter() - start

    print_table(["variant", "median s"], [[name, median(values)] for name, values in times.items()])
    print()
    print_table(
        ["measure", "value", "goal"],
        [["calibration / plain generation", ratio, "<= 1.15"]]
        + [[f"load profile + {name}: seconds", seconds, "< 1"] for name, seconds in derivations.items()],
    )
    results = {
        "model": "DiTTransformer2DModel 8 layers, width 256, 32x32 latent, patch 2, CFG batch 2",
        "steps": args.steps,
        "generations_per_round": args.generations,
        "rounds": args.rounds,
        "median_seconds": {name: median(values) for name, values in times.items()},
        "calibration_over_plain": ratio,
        "schedule_from_saved_profile_seconds": derivations,
    }
    print(f"\nwrote {write_results('calibration_cost', results)}")


if __name__ == "__main__":
    main()
