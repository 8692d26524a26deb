"""Demo (``make demo``): the whole journey on an embedded model, offline, in a couple of minutes on CPU.

1. build a DiT pipeline (seeded weights) and save it to out/, the folder a user would download;
2. ``smoothcache calibrate`` it (error profile + curves PNG);
3. ``smoothcache schedule`` a schedule for a target speedup (JSON + heat-map PNG);
4. ``smoothcache compare`` cached vs uncached on new seeds (time, MACs, PSNR/SSIM, side-by-side PNG).

Each step is the command a user would type, run in this process; the commands are printed.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from smoothcache.cli import main as smoothcache
from smoothcache.reference.pipelines import dit_pipeline

OUT = Path("out")
STEPS = "20"


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    model = OUT / "dit-pipeline"
    if not (model / "model_index.json").exists():
        print(f"building a DiT pipeline (8 layers, width 256, 32x32 latent, seeded weights) into {model}/")
        dit_pipeline("medium", seed=0).save_pretrained(model)
    journey = [
        ["inspect", str(model)],
        ["calibrate", str(model), "--steps", STEPS, "--samples", "4", "--labels", "7",
         "-o", str(OUT / "dit.profile.safetensors"), "--plot", str(OUT / "dit-errors.png")],
        ["schedule", str(OUT / "dit.profile.safetensors"), "--speedup", "1.6",
         "-o", str(OUT / "dit-schedule.json"), "--plot", str(OUT / "dit-schedule.png")],
        ["compare", str(model), "--schedule", str(OUT / "dit-schedule.json"), "--labels", "7", "--samples", "3", "-o", str(OUT)],
    ]
    for arguments in journey:
        print(f"\n$ smoothcache {' '.join(arguments)}", flush=True)
        status = smoothcache(arguments)
        if status:
            return status
    print(f"\nPNGs in {OUT}/: dit-errors.png (error curves), dit-schedule.png (schedule), compare.png (side by side)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
