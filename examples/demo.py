"""Demo (``make demo``): the whole journey on a trained model, offline, in about two minutes on 2 CPU cores.

The model is the shipped digits DiT (a diffusers ``DiTTransformer2DModel`` trained on scikit-learn's
digits), sampled with DDIM, 50 steps, classifier-free guidance; a small CNN tells which digit a
sample is, so "still the same picture" is checked on content, not only on pixels.

1. ``smoothcache inspect``: the adapter, the cacheable components and their share of the MACs;
2. ``smoothcache calibrate``: the error profile of 4 generations (curves PNG) and, in one more pass
   over the same seeds, every step's sensitivity (each digit reuses at one step of its own);
3. ``smoothcache inspect`` of the profile: the noise levels it covers, so the grids it plans for;
4. ``smoothcache compare``: cached vs uncached on new seeds at half the MACs, planned for DDIM 50
   and then for DPM-Solver++ 20 (a sampler and step count never calibrated) from the same profile;
5. ``smoothcache schedule``: a schedule file for DDIM 30 (JSON + heat-map PNG), no model needed;
6. the two lines in Python, and the classifier reading the cached and uncached digits.

Each step is the command a user would type, run in this process; the commands are printed.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import smoothcache
from smoothcache.cli import main as smoothcache_cli
from smoothcache.reference import digits

OUT = Path("out")
MODEL = "smoothcache.reference.workloads:digits"
STEPS = 50


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    profile, schedule = OUT / "digits.profile.safetensors", OUT / "digits-ddim30.json"
    journey = [
        ["inspect", MODEL],
        ["calibrate", MODEL, "--steps", str(STEPS), "--samples", "4", "-o", str(profile), "--plot", str(OUT / "digits-errors.png")],
        ["inspect", str(profile)],
        ["compare", MODEL, "--profile", str(profile), "--macs", "0.5", "--seed", "100", "--samples", "2", "-o", str(OUT)],
        [
            "compare",
            MODEL,
            "--profile",
            str(profile),
            "--macs",
            "0.5",
            "--steps",
            "20",
            "--scheduler",
            "dpm",
            "--seed",
            "100",
            "--samples",
            "2",
            "-o",
            str(OUT / "dpm20"),
        ],
        ["schedule", str(profile), "--macs", "0.5", "--steps", "30", "-o", str(schedule), "--plot", str(OUT / "digits-schedule.png")],
    ]
    for arguments in journey:
        print(f"\n$ smoothcache {' '.join(arguments)}", flush=True)
        status = smoothcache_cli(arguments)
        if status:
            return status

    print("\n# the same in Python (a bare model is told its grid), scored by the digit classifier on 100 new digits:", flush=True)
    print(f'handle = smoothcache.wrap(model, profile="{profile}", macs=0.5)')
    print('handle.plan_for(digits.make_scheduler("ddim", 30).timesteps)')
    model, classifier = digits.load_digits_dit(), digits.load_digit_classifier()
    labels = [label for label in range(10) for _ in range(10)]
    uncached = digits.sample_digits(model, labels, 30, seed=1000)
    with smoothcache.wrap(model, profile=str(profile), macs=0.5) as handle:
        handle.plan_for(digits.make_scheduler("ddim", 30).timesteps.tolist())
        cached = digits.sample_digits(model, labels, 30, seed=1000)
        stats = handle.stats()
    print(
        f"classifier accuracy: uncached {digits.digit_accuracy(uncached, labels, classifier):.2f}, "
        f"cached {digits.digit_accuracy(cached, labels, classifier):.2f} "
        f"({stats['reused']} of {stats['computed'] + stats['reused']} component calls reused)"
    )
    print(
        f"\nPNGs in {OUT}/: digits-errors.png (error curves), compare.png and dpm20/compare.png (side by side), "
        "digits-schedule.png (the DDIM 30 schedule)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
