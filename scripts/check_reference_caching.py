"""Does caching cost something visible on a trained FLUX or Wan reference? PSNR to uncached at a MAC budget.

The references were built so that at half the MACs even the best schedule leaves a visible error (goal:
below about 45 dB PSNR to uncached, where the digits DiT reaches 57 dB). This script measures that on a
pipeline folder, or on a training checkpoint (exported to a temporary folder first), with the public
API only: calibrate on a few prompts, probe runs of reuse, then on held-out prompts compare FORA's
evenly spaced plan (``method="uniform"``), the paper's greedy plan and the measured selection
(``select_schedule``, the library's best) at ``--macs``, components and whole blocks. A quick look, not
the frontier benchmark: few prompts, one seed set. Run from the repository root:

    python scripts/check_reference_caching.py flux [--pipeline DIR | --checkpoint WORK_DIR/transformer-checkpoint.safetensors]
    python scripts/check_reference_caching.py wan --checkpoint /work/train-runs/wan-digits/transformer-checkpoint.safetensors
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch
from reference_training import load_checkpoint, psnr

import smoothcache
from smoothcache.reference import flux_digits, wan_digits

REFERENCES = {"flux": flux_digits, "wan": wan_digits}


def pipeline_from_checkpoint(name: str, checkpoint: Path, folder: Path):
    """The pipeline of the training run's fixed parts (``parts/`` beside the checkpoint) with the
    checkpoint's EMA transformer, saved to ``folder`` and loaded back."""
    from diffusers import DiffusionPipeline, FluxTransformer2DModel, WanTransformer3DModel

    reference = REFERENCES[name]
    model_class = FluxTransformer2DModel if name == "flux" else WanTransformer3DModel
    transformer = model_class(**reference.transformer_config())
    step = load_checkpoint(checkpoint, {"ema": transformer})["step"]
    pipe = DiffusionPipeline.from_pretrained(checkpoint.parent / "parts")
    pipe.transformer = transformer.eval()
    pipe.save_pretrained(folder)
    print(f"checkpoint at step {step}", flush=True)
    return reference.load_pipeline(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", choices=sorted(REFERENCES))
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--pipeline", type=Path, help="a pipeline folder (default: the shipped one)")
    source.add_argument("--checkpoint", type=Path, help="a transformer checkpoint of a training run")
    parser.add_argument("--macs", type=float, default=0.5, help="fraction of the MACs kept")
    parser.add_argument("--prompts", type=int, default=8, help="held-out prompts scored")
    parser.add_argument("--calibration-prompts", type=int, default=4)
    parser.add_argument("--probes", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    reference = REFERENCES[args.reference]

    with tempfile.TemporaryDirectory() as scratch:
        if args.checkpoint is not None:
            pipe = pipeline_from_checkpoint(args.reference, args.checkpoint, Path(scratch))
        else:
            pipe = reference.load_pipeline(args.pipeline or reference.PIPELINE_DIR)
        calibration = reference.scene_prompts(reference.sample_scenes(args.calibration_prompts, torch.Generator().manual_seed(11), "test"))
        held_out = reference.scene_prompts(reference.sample_scenes(args.prompts, torch.Generator().manual_seed(12), "test"))

        def calibration_run():
            return reference.generate(pipe, calibration, seed=500)

        def evaluate():
            return reference.generate(pipe, held_out, seed=900)

        begin = time.perf_counter()
        uncached = evaluate()
        results: dict[str, float] = {}
        for unit in ("component", "block"):
            profile = smoothcache.calibrate(pipe, calibration_run, unit=unit)
            profile = smoothcache.probe(pipe, profile, calibration_run, probes=args.probes, run_lengths=2, fill="linear")
            plans = {
                "uniform (FORA)": profile.schedule(macs=args.macs, method="uniform"),
                "greedy (paper)": profile.schedule(macs=args.macs),
                "selected": smoothcache.select_schedule(pipe, profile, calibration_run, macs=args.macs),
            }
            for label, schedule in plans.items():
                with smoothcache.wrap(pipe, schedule=schedule):
                    cached = evaluate()
                key = f"{unit} {label} (macs {schedule.provenance.get('mac_fraction', float('nan')):.3f})"
                results[key] = psnr(cached, uncached)
                print(f"{key}: {results[key]:.1f} dB", flush=True)
        print(f"best at {args.macs:g} of the MACs: {max(results.values()):.1f} dB PSNR to uncached ({time.perf_counter() - begin:.0f}s)")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
