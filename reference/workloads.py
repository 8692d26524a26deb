"""Ready-made workloads for the CLI and the demo: ``smoothcache calibrate smoothcache.reference.workloads:stdit3_tiny``.

Pipelines are returned as pipelines (the CLI turns them into workloads); research models without a
diffusers pipeline come with their reference sampler. Random weights: for speed and plumbing, not
for quality.
"""

from __future__ import annotations

from smoothcache.workloads import Workload

from . import pipelines


def dit_tiny():
    """A tiny ``DiTPipeline`` (DDIM, class-conditional, CFG)."""
    return pipelines.dit_pipeline("tiny", seed=0)


def dit_medium():
    """A medium ``DiTPipeline``: 8 layers, width 256, 32x32 latent."""
    return pipelines.dit_pipeline("medium", seed=0)


def stable_audio_tiny():
    """A tiny ``StableAudioPipeline`` (T5, Oobleck VAE, cosine DPM-Solver++)."""
    return pipelines.stable_audio_pipeline("tiny", seed=0)


def stdit3_tiny() -> Workload:
    """Open-Sora v1.2 STDiT3 (tiny) with its RFLOW sampler; outputs are latents ``[B, 4, T, H, W]``."""
    model = pipelines.stdit3("tiny", seed=0)
    return Workload(
        model, lambda seed, steps: pipelines.sample_stdit3(model, steps, seed=seed), "video",
        default_steps=30, solver="rflow", data_range=None, description="STDiT3 (tiny, random weights)",
    )


def mmdit_tiny() -> Workload:
    """Open-Sora 2.0 MMDiT (tiny) with its rectified-flow denoiser; outputs are packed latents, shown as images."""
    model = pipelines.mmdit("tiny", seed=0)

    def generate(seed: int, steps: int):
        packed = pipelines.sample_mmdit(model, steps, seed=seed)  # [B, tokens, 16]
        return packed.transpose(1, 2)[:, :, None, :]  # [B, 16, 1, tokens]: one row image per channel

    return Workload(model, generate, "image", default_steps=50, solver="rectified-flow", data_range=None, description="MMDiT (tiny, random weights)")
