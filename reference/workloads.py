"""Ready-made workloads for the CLI and the demo: ``smoothcache calibrate smoothcache.reference.workloads:stdit3_tiny``.

Pipelines are returned as pipelines (the CLI turns them into workloads); research models without a
diffusers pipeline come with their reference sampler. ``dit_tiny`` ... ``mmdit_tiny`` have random
weights (for speed and plumbing, not quality); ``digits``, ``tones`` and ``moving_digits`` are the
trained reference models, whose outputs can be judged on content.
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
        model,
        lambda seed, steps: pipelines.sample_stdit3(model, steps, seed=seed),
        "video",
        default_steps=30,
        solver="rflow",
        data_range=None,
        description="STDiT3 (tiny, random weights)",
    )


def mmdit_tiny() -> Workload:
    """Open-Sora 2.0 MMDiT (tiny) with its rectified-flow denoiser; outputs are packed latents, shown as images."""
    model = pipelines.mmdit("tiny", seed=0)

    def generate(seed: int, steps: int):
        packed = pipelines.sample_mmdit(model, steps, seed=seed)  # [B, tokens, 16]
        return packed.transpose(1, 2)[:, :, None, :]  # [B, 16, 1, tokens]: one row image per channel

    return Workload(
        model, generate, "image", default_steps=50, solver="rectified-flow", data_range=None, description="MMDiT (tiny, random weights)"
    )


def _solver_switch(current: dict[str, str], choices: tuple[str, ...]):
    def set_solver(name: str) -> str:
        if name not in choices:
            raise ValueError(f"unknown scheduler {name!r} for this workload; choose one of {list(choices)}")
        current["name"] = name
        return name

    return set_solver


def digits() -> Workload:
    """The trained digits DiT (``DiTTransformer2DModel``, 16x16 pixels): one digit of each class per
    generation, DDIM (default) or ``--scheduler dpm``, classifier-free guidance 3."""
    from . import digits as reference

    model = reference.load_digits_dit()
    solver = {"name": "ddim"}

    def generate(seed: int, steps: int):
        return reference.sample_digits(model, list(range(reference.NUM_CLASSES)), steps, scheduler=solver["name"], seed=seed)

    return Workload(
        model,
        generate,
        "image",
        default_steps=50,
        solver="ddim",
        description="digits DiT (trained, 16x16 pixels)",
        set_solver=_solver_switch(solver, reference.SCHEDULERS),
        scheduler=lambda steps: reference.make_scheduler(solver["name"], steps),
    )


def tones() -> Workload:
    """The trained tones Stable Audio DiT: one sound of each class per generation, cosine DPM-Solver++."""
    from . import tones as reference

    model = reference.load_tones_dit()

    def generate(seed: int, steps: int):
        return reference.sample_tones(model, list(range(len(reference.CLASSES))), steps, seed=seed)

    return Workload(
        model,
        generate,
        "audio",
        default_steps=50,
        solver="CosineDPMSolverMultistepScheduler",
        sample_rate=reference.SAMPLE_RATE,
        description="tones Stable Audio DiT (trained, 8 kHz waveform)",
    )


def moving_digits() -> Workload:
    """The trained moving-digits STDiT3: one 8-frame video of each class per generation, RFLOW."""
    from . import moving_digits as reference

    model, class_table = reference.load_moving_digits_stdit3()

    def generate(seed: int, steps: int):
        return reference.sample_moving_digits(model, class_table, list(range(10)), steps, seed=seed)

    return Workload(model, generate, "video", default_steps=30, solver="rflow", description="moving digits STDiT3 (trained)")
