"""Demo (``make demo``): the whole journey on a trained model, offline, in about two minutes on 2 CPU cores.

The model is the shipped digits DiT (a diffusers ``DiTTransformer2DModel`` trained on scikit-learn's
digits), sampled with DDIM, 50 steps, classifier-free guidance; a small CNN tells which digit a
sample is, so "still the same picture" is checked on content, not only on pixels.

1. ``smoothcache inspect``: the adapter, the cacheable components and their share of the MACs;
2. ``smoothcache calibrate``: the error profile of 4 generations (curves PNG), and the final-output
   error of skipping 1 and 2 steps from 12 probed steps, skipped steps extrapolating the last two
   computed values (``--fill linear``; 23 more generations);
3. ``smoothcache schedule``: the schedule that keeps half the MACs with the least probed error
   (``--method runs``, filling linearly as probed; JSON + heat-map PNG);
4. ``smoothcache compare``: cached vs uncached on new seeds (time, MACs, PSNR/SSIM, side by side);
5. the two lines in Python, and the classifier reading the cached and uncached digits.

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
    profile, schedule = OUT / "digits.profile.safetensors", OUT / "digits-schedule.json"
    journey = [
        ["inspect", MODEL],
        [
            "calibrate",
            MODEL,
            "--steps",
            str(STEPS),
            "--samples",
            "4",
            "--probes",
            "12",
            "--run-lengths",
            "2",
            "--fill",
            "linear",
            "-o",
            str(profile),
            "--plot",
            str(OUT / "digits-errors.png"),
        ],
        ["schedule", str(profile), "--macs", "0.5", "--method", "runs", "-o", str(schedule), "--plot", str(OUT / "digits-schedule.png")],
        ["compare", MODEL, "--schedule", str(schedule), "--seed", "100", "--samples", "2", "-o", str(OUT)],
    ]
    for arguments in journey:
        print(f"\n$ smoothcache {' '.join(arguments)}", flush=True)
        status = smoothcache_cli(arguments)
        if status:
            return status

    print("\n# the same in Python, scored by the digit classifier on 100 new digits:", flush=True)
    print(f'handle = smoothcache.wrap(model, schedule="{schedule}")')
    model, classifier = digits.load_digits_dit(), digits.load_digit_classifier()
    labels = [label for label in range(10) for _ in range(10)]
    uncached = digits.sample_digits(model, labels, STEPS, seed=1000)
    with smoothcache.wrap(model, schedule=str(schedule)) as handle:
        cached = digits.sample_digits(model, labels, STEPS, seed=1000)
        stats = handle.stats()
    print(
        f"classifier accuracy: uncached {digits.digit_accuracy(uncached, labels, classifier):.2f}, "
        f"cached {digits.digit_accuracy(cached, labels, classifier):.2f} "
        f"({stats['reused']} of {stats['computed'] + stats['reused']} component calls reused)"
    )
    print(f"\nPNGs in {OUT}/: digits-errors.png (error curves), digits-schedule.png (schedule), compare.png (side by side)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
