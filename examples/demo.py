"""Demo: accelerate a real diffusers DiTPipeline with two lines, offline, on CPU or GPU.

Builds a medium DiT pipeline with seeded random weights, saves it and loads it back with
``from_pretrained`` (the real loading path), then generates: uncached, wrapped with an all-compute
schedule (must be bit-identical) and wrapped with a schedule that reuses attention and feed-forward
on alternate steps. Prints computed/reused counts, MACs and the time ratio.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

import smoothcache
from smoothcache.reference.pipelines import dit_pipeline
from smoothcache_core.macs import count_macs

OUT = Path("out")
STEPS = 20


def main() -> None:
    from diffusers import DiTPipeline
    from diffusers.utils import logging as diffusers_logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    diffusers_logging.set_verbosity_error()
    folder = OUT / "dit-pipeline"
    if not (folder / "model_index.json").exists():
        dit_pipeline("medium", seed=0).save_pretrained(folder)
    pipe = DiTPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)

    def generate() -> tuple[torch.Tensor, float]:
        start = time.perf_counter()
        images = pipe(class_labels=[7], num_inference_steps=STEPS, generator=torch.manual_seed(0), output_type="pt").images
        return images, time.perf_counter() - start

    generate()  # warm-up
    reference, uncached_seconds = generate()

    with smoothcache.wrap(pipe.transformer, schedule={"attn1": [1] * STEPS, "ff": [1] * STEPS}) as handle:
        identical, _ = generate()
    assert torch.equal(identical, reference), "all-compute schedule changed the output"

    schedule = smoothcache.Schedule.fora(STEPS, 2, ["attn1", "ff"])
    with smoothcache.wrap(pipe.transformer, schedule=schedule) as handle:
        cached, cached_seconds = generate()
        stats = handle.stats()
    side = pipe.transformer.config.sample_size
    example = (torch.zeros(2, 4, side, side), torch.tensor([999, 999]), torch.tensor([7, 1000]))
    with torch.no_grad():
        count = count_macs(handle.components, lambda: pipe.transformer(example[0], timestep=example[1], class_labels=example[2]))
    macs = count.for_schedule(schedule.compile(handle.components), handle.components)

    difference = (cached - reference).abs().max().item()
    print(f"pipeline: {folder} ({STEPS} DDIM steps, CFG)")
    print(f"all-compute schedule: output bit-identical to the uncached pipeline: {torch.equal(identical, reference)}")
    print(f"alternate-step schedule: computed {stats['computed']}, reused {stats['reused']} component calls")
    print(f"MACs kept: {macs.fraction:.3f} (ideal speedup {macs.ideal_speedup:.2f}x)")
    print(f"time: uncached {uncached_seconds:.2f}s, cached {cached_seconds:.2f}s -> {uncached_seconds / cached_seconds:.2f}x")
    print(f"max pixel difference vs uncached (random weights, so only a sanity check): {difference:.4f}")


if __name__ == "__main__":
    main()
