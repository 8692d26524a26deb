"""The whole GPU check in one call: smoothcache's wall-clock speed against the unwrapped model, the
MAC-ideal and the other caches, on the real configurations of DiT-XL/2, Stable Audio Open 1.0,
Open-Sora v1.2 and FLUX.1-dev, eager and regionally compiled; the engine's overhead at batch 1;
and the CUDA-only correctness checks (the GPU tests, CUDA graphs).

Run on the device (one H200; the budget is 8 minutes, give the command a timeout of 9 or 10)::

    python -m benchmarks.gpu --device cuda --out $OUT/gpu.json [--profile]

It needs the project importable (``pip install --no-deps -e .``) and diffusers; cache-dit for the
DBCache peer and torchsde for Stable Audio's own scheduler are optional (without them the peer is
recorded as unsupported and an ODE scheduler of the same family runs). It writes
``benchmarks/results/gpu.json`` (or ``--out``), rewritten after every part so that a killed run keeps
what finished, with ``--profile`` a torch.profiler trace of one cached DiT step beside it
(``<out stem>.trace.json``), and prints one table per part. ``--tiny`` runs the same code paths on
tiny configurations in well under a minute on a CPU (``tests/test_gpu_benchmark.py``); ``--cases``
reruns some cases only.

Method. Random weights at the real configurations: speed does not depend on the weights (so the
schedules are the published DiT-XL/2 ones, or calibrated on the random model for the others, and
the peers are tuned on it). bf16 on CUDA, fp32 on CPU. The variants of a part run interleaved in one
process (``benchmarks.common``), each one's first run excluded; ratios are medians of per-round
ratios to the unwrapped model. MAC fractions are counted, not assumed: one generation of every
variant under torch's flop counter, against the unwrapped model's; the MAC-ideal speedup is its
inverse and the share of the ideal is measured speedup / MAC-ideal. The peers (diffusers
FirstBlockCache and TaylorSeer, cache-dit DBCache) are tuned on their own knob to the MAC fraction of
the paper's α=0.18 schedule, and the fractions they reached are recorded. Compiled variants compile
every block (regional compilation, as diffusers' ``compile_repeated_blocks``); their MAC-ideal is the
eager variant's, and the compile time and graph count of each are recorded.

Time budget (``--budget-s``, 480 by default, counted from the start of ``main``). Parts run in
priority order: DiT-XL/2 batch 8 eager, batch 1, the GPU tests, Stable Audio and Open-Sora eager,
DiT-XL/2 compiled, the CUDA-graphs check, the profile, FLUX eager, then the other compiled parts. A
part whose estimate exceeds the time left is skipped with the reason; a compiled variant is skipped
alone when its graphs (one per block and decision pattern: each new pattern compiles, the other
blocks retrace) would not fit at the compile cost measured so far; the timed rounds are as many as
fit the part's estimate; and a timer stops a part that runs past the budget (recorded as
interrupted; the rest are skipped).

Goals (section ``goals``, each with its value and pass/fail; not evaluated on ``--tiny`` runs):
all-compute / unwrapped ≤ 1.01 at batch 8 and ≤ 1.03 at batch 1; the α=0.18 schedule reaches ≥ 0.95
of its MAC-ideal speedup, eager and compiled; at equal MACs smoothcache is at least as fast as every
peer (compared as shares of each one's own MAC-ideal speedup, which puts them at equal MACs).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch._dynamo.utils import counters

import smoothcache
from benchmarks.common import RESULTS, interleaved_times, machine, median, paired_ratio, print_table
from benchmarks.peers import PEERS, DBCache, FirstBlockCache, Peer, TaylorSeer
from smoothcache.reference.pipelines import denoise_stable_audio
from smoothcache_core.macs import flop_counter

logger = logging.getLogger("benchmarks.gpu")

ROOT = Path(__file__).resolve().parent.parent
#: The schedules published with SmoothCache 0.1.1, as the paper used them on DiT-XL/2.
PUBLISHED = ROOT / "tests" / "data" / "reference-schedules"
#: The published files name facebookresearch DiT's modules; diffusers' DiT calls them attn1 and ff.
DIFFUSERS_DIT_KEYS = {"attn": "attn1", "mlp": "ff"}

BASELINE = "unwrapped"
ALL_COMPUTE = "all-compute"
ALPHA = "smoothcache alpha=0.18"
FORA = "smoothcache fora-2"
LINEAR = "smoothcache alpha=0.18, linear fill"
#: The peers of the comparison, from benchmarks.peers, in the order they are reported.
PEER_TYPES = (FirstBlockCache, TaylorSeer, DBCache)

#: Seconds each part is expected to take at full size on an H200, and of that the timed rounds:
#: estimates from the models' FLOP counts, before anything was measured there. A part starts only if
#: its estimate is left; the rounds are as many as fit the second number (3 to --rounds).
ESTIMATES_S: dict[tuple[str, str], tuple[float, float]] = {
    ("dit_xl2_batch8", "eager"): (100, 35),
    ("dit_xl2_batch1", "eager"): (25, 15),
    ("correctness", "pytest"): (45, 0),
    ("stable_audio_open", "eager"): (45, 20),
    ("opensora_v12", "eager"): (45, 20),
    ("dit_xl2_batch8", "compiled"): (60, 20),
    ("correctness", "cuda_graphs"): (90, 0),
    ("profile", "trace"): (15, 0),
    ("flux1_dev", "eager"): (100, 25),
    ("stable_audio_open", "compiled"): (60, 15),
    ("opensora_v12", "compiled"): (60, 15),
    ("flux1_dev", "compiled"): (90, 20),
}
#: A tiny run's estimate for every part: it starts whenever a tenth of a second is left.
TINY_ESTIMATE_S = (0.1, 0.5)
#: Flop-counted generations spent tuning a peer with a continuous knob.
TUNING_TRIES = 5
#: Regional compilation makes one graph per block and decision pattern. Only the first block with a
#: pattern compiles for real (in up to two input layouts); the others hit inductor's caches and are
#: only retraced. Seconds for each, guessed for an H200 host until a compile measures the first.
COMPILE_S = {"inductor": 10.0, "eager": 0.3}
RETRACE_S = {"inductor": 0.2, "eager": 0.05}

DIT_XL_2 = {
    "num_attention_heads": 16,
    "attention_head_dim": 72,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 28,
    "sample_size": 32,
    "patch_size": 2,
    "num_embeds_ada_norm": 1000,
    "norm_type": "ada_norm_zero",
}
TINY_DIT = {**DIT_XL_2, "num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 2, "sample_size": 8}
#: stabilityai/stable-audio-open-1.0's transformer/config.json (diffusers' defaults for the class).
STABLE_AUDIO_OPEN = {
    "sample_size": 1024,
    "in_channels": 64,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "num_key_value_attention_heads": 12,
    "out_channels": 64,
    "cross_attention_dim": 768,
    "time_proj_dim": 256,
    "global_states_input_dim": 1536,
    "cross_attention_input_dim": 768,
}
TINY_STABLE_AUDIO = {
    "sample_size": 32,
    "in_channels": 4,
    "num_layers": 2,
    "attention_head_dim": 8,
    "num_attention_heads": 4,
    "num_key_value_attention_heads": 2,
    "out_channels": 4,
    "cross_attention_dim": 16,
    "time_proj_dim": 16,
    "global_states_input_dim": 32,
    "cross_attention_input_dim": 16,
}
#: black-forest-labs/FLUX.1-dev's transformer/config.json.
FLUX_1_DEV = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
TINY_FLUX = {
    **FLUX_1_DEV,
    "in_channels": 16,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 16,
    "axes_dims_rope": (4, 6, 6),
}

#: Turns a caching method on for the duration of a ``with`` (yielding its handle, if it has one).
Enable = Callable[[nn.Module], AbstractContextManager[Any]]


class OutOfTime(BaseException):
    """The time budget ran out while a part ran (a BaseException, so no library code swallows it)."""


class Budget:
    """The run's time limit: what is left, and a timer that interrupts a part running past it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    @contextlib.contextmanager
    def enforced(self) -> Iterator[None]:
        """Raise :class:`OutOfTime` in the main thread once the budget is spent (SIGALRM)."""

        def expire(_signum: int, _frame: Any) -> None:
            raise OutOfTime(f"the time budget of {self.seconds:.0f} s ran out")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, max(self.left(), 1e-3))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@dataclass
class Run:
    """What every part needs: the settings, the clock, and what earlier parts learnt."""

    device: torch.device
    dtype: torch.dtype
    tiny: bool
    max_rounds: int
    budget: Budget
    out: Path
    profile: bool
    compile_backend: str
    #: Seconds spent compiling for real, and how many such compiles: the measured cost of one.
    compile_seconds: float = 0.0
    compiles: int = 0
    #: Per case, the schedule an eager part calibrated and its variant name, for the compiled part.
    schedules: dict[str, tuple[str, smoothcache.Schedule]] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def estimate(self, case: str, part: str) -> tuple[float, float]:
        return TINY_ESTIMATE_S if self.tiny else ESTIMATES_S[(case, part)]

    def rounds_for(self, seconds_per_round: float, allotment_s: float) -> int:
        """As many rounds as fit the allotment, at least 3 (2 on a tiny run) and at most --rounds."""
        least = min(2 if self.tiny else 3, self.max_rounds)
        fitting = int(allotment_s / max(seconds_per_round, 1e-9))
        return max(least, min(self.max_rounds, fitting))

    def compile_cost(self, new: set[tuple[Any, ...]]) -> tuple[int, int, float]:
        """For (block, pattern) pairs not compiled yet: the graphs they make, the real compiles among
        them, and the seconds all that takes (a real compile at the cost measured so far)."""
        compiles = 2 * len({pair[1:] for pair in new})  # every new pattern, in up to two input layouts
        once = self.compile_seconds / self.compiles if self.compiles else COMPILE_S[self.compile_backend]
        return len(new) + compiles // 2, compiles, compiles * once + len(new) * RETRACE_S[self.compile_backend]

    def learn_compile(self, seconds: float, compiles: int, graphs: int) -> None:
        """Take in how long ``compiles`` real compiles and ``graphs`` graphs in all took."""
        if compiles:
            self.compile_seconds += max(seconds - graphs * RETRACE_S[self.compile_backend], 0.0)
            self.compiles += compiles


@dataclass(frozen=True)
class Workload:
    """A model configuration and its sampling loop: what one case generates with."""

    description: str
    factory: Callable[[], nn.Module]
    generate: Callable[[nn.Module], torch.Tensor]
    steps: int  # model evaluations per generation
    blocks: tuple[str, ...]  # the block lists compiled regionally


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(workload: Workload, run: Run, seed: int = 0) -> nn.Module:
    """The workload's model with seeded random weights, initialised on the device (fast even for FLUX's
    12 B parameters), then moved whole (buffers made from numpy start on the CPU) and cast."""
    torch.manual_seed(seed)
    with torch.device(run.device):
        model = workload.factory()
    return model.to(run.device, run.dtype).eval()


def placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


# --- workloads --------------------------------------------------------------------------------


def dit_workload(run: Run, batch: int, config: dict[str, Any] | None = None, steps: int | None = None) -> Workload:
    """diffusers' DiTTransformer2DModel, DDIM with classifier-free guidance as one batch (as DiTPipeline),
    ``batch`` images per generation, the VAE left out (caching does not touch it)."""
    from diffusers import DDIMScheduler, DiTTransformer2DModel

    config = config or (TINY_DIT if run.tiny else DIT_XL_2)
    steps = steps or (20 if run.tiny else 50)
    guidance = 4.0

    def generate(model: nn.Module) -> torch.Tensor:
        device, dtype = placement(model)
        scheduler = DDIMScheduler()
        scheduler.set_timesteps(steps)
        side = config["sample_size"]
        generator = torch.Generator(device).manual_seed(0)
        latents = torch.randn(batch, 4, side, side, generator=generator, device=device, dtype=dtype)
        classes = config["num_embeds_ada_norm"]
        labels = torch.cat([torch.arange(batch, device=device) % classes, torch.full((batch,), classes, device=device)])
        for t in scheduler.timesteps:
            out = model(torch.cat([latents, latents]), timestep=t.expand(2 * batch).to(device), class_labels=labels).sample
            cond, uncond = out[:, :4].chunk(2)
            latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents).prev_sample
        return latents

    side = config["sample_size"] * 8
    return Workload(
        f"DiTTransformer2DModel {config['num_layers']} layers, {config['num_attention_heads']} heads x "
        f"{config['attention_head_dim']}, patch {config['patch_size']}, {side}x{side} ({config['sample_size']}x"
        f"{config['sample_size']}x4 latent), batch {batch} with CFG (forward batch {2 * batch}), {steps} DDIM steps",
        lambda: DiTTransformer2DModel(**config),
        generate,
        steps,
        ("transformer_blocks",),
    )


def stable_audio_scheduler() -> tuple[Any, str]:
    """Stable Audio Open's scheduler (cosine DPM-Solver++ SDE, as StableAudioPipeline), or, where torchsde
    (its Brownian tree) is not installed, the ODE solver of the same family and sigmas: per step the
    model dominates either way, and the JSON names the one that ran."""
    from diffusers import CosineDPMSolverMultistepScheduler, EDMDPMSolverMultistepScheduler

    sigmas = {"sigma_min": 0.3, "sigma_max": 500, "sigma_data": 1.0, "sigma_schedule": "exponential", "solver_order": 2}
    common = {**sigmas, "prediction_type": "v_prediction", "rho": 7.0, "final_sigmas_type": "zero"}
    if importlib.util.find_spec("torchsde") is not None:
        return CosineDPMSolverMultistepScheduler(**common), "CosineDPMSolverMultistepScheduler"
    return EDMDPMSolverMultistepScheduler(**common), "EDMDPMSolverMultistepScheduler (torchsde missing)"


def stable_audio_workload(run: Run) -> Workload:
    """StableAudioDiTModel in StableAudioPipeline's loop (guidance as one batch [uncond, cond], scale 7)."""
    from diffusers import StableAudioDiTModel

    config = TINY_STABLE_AUDIO if run.tiny else STABLE_AUDIO_OPEN
    steps = 10 if run.tiny else 100
    tokens = 8 if run.tiny else 130  # 128 T5 tokens + the seconds_start and seconds_end tokens

    def generate(model: nn.Module) -> torch.Tensor:
        device, dtype = placement(model)
        scheduler, _ = stable_audio_scheduler()
        scheduler.set_timesteps(steps, device=device)
        generator = torch.Generator(device).manual_seed(0)
        latents = torch.randn(1, config["in_channels"], config["sample_size"], generator=generator, device=device, dtype=dtype)
        text = torch.randn(2, tokens, config["cross_attention_input_dim"], generator=generator, device=device, dtype=dtype)
        pooled = torch.randn(2, 1, config["global_states_input_dim"], generator=generator, device=device, dtype=dtype)
        return denoise_stable_audio(model, scheduler, latents * scheduler.init_noise_sigma, text, pooled, 7.0, generator)

    return Workload(
        f"StableAudioDiTModel {config['num_layers']} layers, {config['num_attention_heads']} heads x "
        f"{config['attention_head_dim']} ({config['num_key_value_attention_heads']} kv heads), "
        f"{config['sample_size']} latent frames, {tokens} conditioning tokens, CFG batch 2, {steps} steps of "
        f"{stable_audio_scheduler()[1]}",
        lambda: StableAudioDiTModel(**config),
        generate,
        steps,
        ("transformer_blocks",),
    )


def opensora_workload(run: Run) -> Workload:
    """Open-Sora v1.2 STDiT3 (our re-implementation) in its RFLOW loop: timesteps (1 - i/N) * 1000,
    guidance as one batch [cond, uncond] with the learnt null caption, scale 7."""
    from smoothcache.reference.opensora_v12 import STDiT3, STDiT3Config

    if run.tiny:
        config = STDiT3Config(depth=2, hidden_size=64, num_heads=4, caption_channels=32, model_max_length=10)
        frames, height, width, steps = 4, 8, 8, 10
    else:  # 240p (240x426), 2 s at 24 fps: 51 frames, 15 latent frames after the VAE's 17 -> 5
        config = STDiT3Config()
        frames, height, width, steps = 15, 30, 53, 30
    tokens, caption = config.model_max_length, config.caption_channels

    def generate(model: nn.Module) -> torch.Tensor:
        device, dtype = placement(model)
        generator = torch.Generator(device).manual_seed(0)
        z = torch.randn(1, 4, frames, height, width, generator=generator, device=device)
        prompt = torch.randn(1, 1, tokens, caption, generator=generator, device=device, dtype=dtype)
        null = model.y_embedder.y_embedding[None, None].expand(1, 1, tokens, caption)
        extra = {
            "y": torch.cat([prompt, null]),
            "mask": torch.ones(1, tokens, dtype=torch.long, device=device),
            "x_mask": torch.ones(2, frames, dtype=torch.bool, device=device),
            "fps": torch.full((1,), 24.0, device=device),
            "height": torch.full((1,), height * 8.0, device=device),
            "width": torch.full((1,), width * 8.0, device=device),
        }
        timesteps = [(1.0 - i / steps) * 1000.0 for i in range(steps)]
        for i, t in enumerate(timesteps):
            out = model(torch.cat([z, z]), torch.full((2,), t, device=device), **extra)
            cond, uncond = out.chunk(2, dim=1)[0].float().chunk(2, dim=0)
            dt = (t - timesteps[i + 1]) if i + 1 < steps else t
            z = z + (uncond + 7.0 * (cond - uncond)) * dt / 1000.0
        return z

    tokens_per_frame = -(-height // 2) * -(-width // 2)
    return Workload(
        f"STDiT3 depth {config.depth} (spatial + temporal), width {config.hidden_size}, {config.num_heads} heads, "
        f"{frames} latent frames x {height}x{width} ({frames * tokens_per_frame} tokens), {tokens} caption tokens, "
        f"CFG batch 2, {steps} RFLOW steps",
        lambda: STDiT3(config),
        generate,
        steps,
        ("spatial_blocks", "temporal_blocks"),
    )


def flux_workload(run: Run) -> Workload:
    """FluxTransformer2DModel with FLUX.1-dev's distilled guidance (3.5), batch 1, Euler flow matching."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    config = TINY_FLUX if run.tiny else FLUX_1_DEV
    side, text_tokens, steps = (8, 8, 6) if run.tiny else (64, 512, 28)  # 1024x1024: 128x128 latent, packed 2x2

    def generate(model: nn.Module) -> torch.Tensor:
        device, dtype = placement(model)
        generator = torch.Generator(device).manual_seed(0)
        latents = torch.randn(1, side * side, config["in_channels"], generator=generator, device=device, dtype=dtype)
        text = torch.randn(1, text_tokens, config["joint_attention_dim"], generator=generator, device=device, dtype=dtype)
        pooled = torch.randn(1, config["pooled_projection_dim"], generator=generator, device=device, dtype=dtype)
        rows, columns = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        image_ids = torch.stack([torch.zeros_like(rows), rows, columns], dim=-1).reshape(-1, 3).to(device, dtype)
        text_ids = torch.zeros(text_tokens, 3, device=device, dtype=dtype)
        guidance = torch.full((1,), 3.5, device=device, dtype=dtype)
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
        scheduler.set_timesteps(steps, device=device)
        for t in scheduler.timesteps:
            velocity = model(
                hidden_states=latents,
                encoder_hidden_states=text,
                pooled_projections=pooled,
                timestep=(t.expand(1) / 1000).to(dtype),
                img_ids=image_ids,
                txt_ids=text_ids,
                guidance=guidance,
                return_dict=False,
            )[0]
            latents = scheduler.step(velocity, t, latents).prev_sample
        return latents

    return Workload(
        f"FluxTransformer2DModel {config['num_layers']} double + {config['num_single_layers']} single blocks, "
        f"{config['num_attention_heads']} heads x {config['attention_head_dim']}, {side * side} image + "
        f"{text_tokens} text tokens, distilled guidance, batch 1, {steps} Euler steps",
        lambda: FluxTransformer2DModel(**config),
        generate,
        steps,
        ("transformer_blocks", "single_transformer_blocks"),
    )


# --- variants ---------------------------------------------------------------------------------


def unwrapped(_model: nn.Module) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def cached(schedule: smoothcache.Schedule | None, sync_free: bool = False) -> Enable:
    """smoothcache with ``schedule`` (``None``: the all-compute schedule, the engine's pure overhead)."""
    return lambda model: smoothcache.wrap(model, schedule=schedule, sync_free=sync_free)


def with_peer(peer: Peer, value: Any, steps: int) -> Enable:
    return lambda model: peer.apply(model, value, steps)


def variants_of(schedules: dict[str, smoothcache.Schedule]) -> dict[str, Enable]:
    """The unwrapped model (the baseline of every ratio), all-compute, and smoothcache with each schedule."""
    return {BASELINE: unwrapped, ALL_COMPUTE: cached(None), **{name: cached(schedule) for name, schedule in schedules.items()}}


def published(name: str, steps: int, fill: str = "reuse") -> smoothcache.Schedule:
    """A schedule published with SmoothCache 0.1.1 for DiT-XL/2, keyed for diffusers' DiT, resampled
    when the run has another number of steps (tiny runs)."""
    tables = json.loads((PUBLISHED / f"{name}.json").read_text())
    provenance = {"source": f"{name}.json, published with SmoothCache 0.1.1"}
    schedule = smoothcache.Schedule({DIFFUSERS_DIT_KEYS[key]: table for key, table in tables.items()}, provenance, fill)
    return schedule if schedule.steps == steps else schedule.resample(steps)


def dit_schedules(steps: int) -> dict[str, smoothcache.Schedule]:
    """The paper's DiT-XL/2 schedules, and the α=0.18 table with the linear fill (the same MACs)."""
    return {
        ALPHA: published("50-N-3-threshold-0.18", steps),
        FORA: published("50-N-2-fora", steps),
        LINEAR: published("50-N-3-threshold-0.18", steps, fill="linear"),
    }


# --- measuring --------------------------------------------------------------------------------


def run_once(model: nn.Module, enable: Enable, workload: Workload, device: torch.device) -> None:
    with enable(model):
        workload.generate(model)
        synchronize(device)


def probe(model: nn.Module, enable: Enable, workload: Workload, device: torch.device, count_macs: bool) -> dict[str, Any]:
    """One more generation, measured: peak device memory, the MACs executed (torch's flop counter;
    not under compile, where it would recompile), and for smoothcache its counts and the cache's peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    counter = flop_counter() if count_macs else contextlib.nullcontext()
    found: dict[str, Any] = {}
    with enable(model) as handle:
        hook = None
        if isinstance(handle, smoothcache.CacheHandle):
            peak = [0]

            def watch(_module: nn.Module, _args: Any, _output: Any) -> None:
                peak[0] = max(peak[0], handle.stats()["cache_bytes"])

            hook = model.register_forward_hook(watch)
        try:
            with counter:
                workload.generate(model)
                synchronize(device)
        finally:
            if hook is not None:
                hook.remove()
        if isinstance(handle, smoothcache.CacheHandle):
            stats = handle.stats()
            found["counts"] = {key: stats[key] for key in ("computed", "reused", "refreshed", "evaluations", "generations", "macs_skipped")}
            found["counts"]["components"] = len(handle.components)
            found["counts"]["planned_reused"] = sum(table.count(False) for table in handle.compiled.compute if table is not None)
            found["cache_bytes_peak"] = peak[0]
    found["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    found["macs"] = counter.get_total_flops() // 2 if count_macs else None
    return found


def measure(
    run: Run,
    model: nn.Module,
    workload: Workload,
    variants: dict[str, Enable],
    allotment_s: float,
    count_macs: bool,
    probed: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Time ``variants`` interleaved on one model (the first run of each excluded), then probe each
    once (``probed``: variants already probed). Ratios are to the unwrapped model, the MAC fractions
    to its counted MACs."""
    runners = {name: (lambda enable=enable: run_once(model, enable, workload, run.device)) for name, enable in variants.items()}
    per_round = 0.0
    for runner in runners.values():
        start = time.perf_counter()
        runner()
        per_round += time.perf_counter() - start
    rounds = run.rounds_for(per_round, allotment_s)
    times = interleaved_times(runners, rounds=rounds, warmup=0)
    rows: dict[str, dict[str, Any]] = {}
    for name, enable in variants.items():
        ratio = paired_ratio(times, name, BASELINE)
        rows[name] = {"median_s": median(times[name]), "time_ratio": ratio, "speedup": 1 / ratio}
        rows[name].update((probed or {}).get(name) or probe(model, enable, workload, run.device, count_macs))
    if count_macs:
        base = rows[BASELINE]["macs"]
        for row in rows.values():
            add_ideal(row, row["macs"] / base)
            if "counts" in row:
                row["mac_fraction_from_stats"] = 1 - row["counts"]["macs_skipped"] / base
    return {"rounds": rounds, "variants": rows}


def add_ideal(row: dict[str, Any], fraction: float) -> None:
    row["mac_fraction"] = fraction
    row["ideal_speedup"] = 1 / fraction
    row["share_of_ideal"] = row["speedup"] * fraction


def tune(run: Run, peer: Peer, model: nn.Module, workload: Workload, target: float, base_macs: int) -> dict[str, Any]:
    """The knob value whose counted MAC fraction is closest to ``target``. A continuous knob (a
    threshold: more skipping as it grows) is bisected on a log scale over the range of the peer's own
    sweep (the frontier's), widened upward since random weights may change more than trained ones; an
    integer knob (an interval) follows its sweep until the fraction crosses the target. Every try is
    one flop-counted generation, so the tries are few."""
    tried: list[tuple[Any, float]] = []

    def fraction(value: Any) -> float:
        macs = probe(model, with_peer(peer, value, workload.steps), workload, run.device, count_macs=True)["macs"]
        tried.append((value, macs / base_macs))
        return tried[-1][1]

    if all(isinstance(value, float) for value in peer.values):
        low, high = peer.values[0], 4 * peer.values[-1]
        for _ in range(TUNING_TRIES):
            middle = math.sqrt(low * high)
            if fraction(middle) > target:
                low = middle
            else:
                high = middle
    else:
        for value in peer.values:
            if fraction(value) <= target:
                break
    value, reached = min(tried, key=lambda point: abs(point[1] - target))
    return {"knob": peer.knob, "value": value, "mac_fraction": reached, "target": target, "tried": tried}


def decision_patterns(handle: Any) -> set[tuple[Any, ...]]:
    """The (block, decision pattern) pairs a generation meets: under regional compilation each is one
    graph (the unwrapped model and the all-compute gates compile once for all blocks)."""
    if not isinstance(handle, smoothcache.CacheHandle):
        return {(BASELINE,)}
    if not handle.compiled.steps:
        return {(ALL_COMPUTE,)}
    return {(block, pattern) for block, patterns in handle.block_patterns().items() for pattern in patterns}


def measure_compiled(
    run: Run,
    model: nn.Module,
    workload: Workload,
    variants: dict[str, Enable],
    allotment_s: float,
    eager: dict[str, Any] | None,
) -> dict[str, Any]:
    """Compile every block, then time and probe as eager. A variant's first run compiles: it starts
    only if its new graphs fit the budget at the compile cost measured so far; the MAC-ideal is the
    eager variant's (``eager``: the eager part's rows, when it ran)."""
    patterns = {}
    for name, enable in variants.items():
        with enable(model) as handle:
            patterns[name] = decision_patterns(handle)
    expected = len(set().union(*patterns.values()))
    limit = 2 * expected + 8  # twice: the first block's input may have another memory layout
    blocks = [block for attribute in workload.blocks for block in getattr(model, attribute)]
    compiled: dict[str, dict[str, Any]] = {}
    ready: dict[str, Enable] = {}
    seen: set[tuple[Any, ...]] = set()
    try:
        with torch._dynamo.config.patch(recompile_limit=limit, accumulated_recompile_limit=max(256, 2 * limit)):
            for block in blocks:
                block.compile(backend=run.compile_backend)
            for name, enable in variants.items():
                new = patterns[name] - seen
                graphs, compiles, estimate = run.compile_cost(new)
                if estimate > run.budget.left() - allotment_s / len(variants):
                    reason = f"its ~{graphs} new graphs would take about {estimate:.0f} s to compile, {run.budget.left():.0f} s left"
                    compiled[name] = {"status": "skipped", "reason": reason}
                    if name == BASELINE:
                        return {"status": "skipped", "reason": compiled[name]["reason"], "variants": compiled}
                    continue
                before, breaks = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
                start = time.perf_counter()
                try:
                    run_once(model, enable, workload, run.device)
                except Exception as error:  # a compile failure is a finding: record it, time the others
                    logger.error("compiling %s failed:\n%s", name, traceback.format_exc())
                    compiled[name] = {"status": "error", "error": f"{type(error).__name__}: {error}"[:3000]}
                    if name == BASELINE:
                        return {"status": "error", "error": compiled[name]["error"], "variants": compiled}
                    continue
                seconds = time.perf_counter() - start
                made = counters["stats"]["unique_graphs"] - before
                run.learn_compile(seconds, compiles, made)
                compiled[name] = {
                    "compile_s": seconds,
                    "graphs": made,
                    "expected_graphs": graphs,
                    "graph_breaks": sum(counters["graph_break"].values()) - breaks,
                }
                seen |= patterns[name]
                ready[name] = enable
            measured = measure(run, model, workload, ready, allotment_s, count_macs=False)
    finally:
        torch._dynamo.reset()
    for name, row in measured["variants"].items():
        row.update(compiled[name])
        if eager is not None and name in eager["variants"]:
            add_ideal(row, eager["variants"][name]["mac_fraction"])
    for name in variants:
        measured["variants"].setdefault(name, compiled[name])
    return {"status": "ran", "backend": run.compile_backend, "recompile_limit": limit, **measured}


def report(title: str, part: dict[str, Any]) -> None:
    """The part's table on stdout."""
    print(f"\n{title}")
    rows = []
    for name, row in part.get("variants", {}).items():
        if "median_s" not in row:
            rows.append([name, "skipped", "", "", "", "", "", ""])
            continue
        memory = row.get("peak_memory_bytes")
        rows.append(
            [
                name,
                row["median_s"],
                row["speedup"],
                row.get("mac_fraction", ""),
                row.get("ideal_speedup", ""),
                row.get("share_of_ideal", ""),
                "" if memory is None else f"{memory / 2**30:.2f}",
                f"{row['cache_bytes_peak'] / 2**20:.1f}" if "cache_bytes_peak" in row else "",
            ]
        )
    print_table(["variant", "median s", "speedup", "MAC fraction", "MAC-ideal", "share of ideal", "peak GiB", "cache MiB"], rows)


# --- parts ------------------------------------------------------------------------------------


def dit_batch8_eager(run: Run) -> dict[str, Any]:
    """Unwrapped, all-compute, the paper's schedules, the linear fill, and the peers tuned to α=0.18's MACs."""
    workload = dit_workload(run, batch=8)
    model = build(workload, run)
    schedules = dit_schedules(workload.steps)
    variants = variants_of(schedules)
    run_once(model, unwrapped, workload, run.device)  # warm the kernels before anything is counted
    probed = {name: probe(model, variants[name], workload, run.device, count_macs=True) for name in (BASELINE, ALPHA)}
    base = probed[BASELINE]["macs"]
    target = probed[ALPHA]["macs"] / base
    peers: dict[str, Any] = {}
    for peer in (p for p in PEERS if isinstance(p, PEER_TYPES)):
        reason = peer.unsupported(model)
        if reason is not None:
            peers[peer.name] = {"status": "skipped", "reason": reason}
            continue
        try:
            peers[peer.name] = tune(run, peer, model, workload, target, base)
        except Exception as error:  # a peer failing on this model is its finding, not the part's end
            logger.error("tuning %s failed:\n%s", peer.name, traceback.format_exc())
            peers[peer.name] = {"status": "error", "error": f"{type(error).__name__}: {error}"[:3000]}
            continue
        variants[peer.name] = with_peer(peer, peers[peer.name]["value"], workload.steps)
    measured = measure(run, model, workload, variants, run.estimate("dit_xl2_batch8", "eager")[1], True, probed)
    return {"status": "ran", "description": workload.description, "schedules": schedule_notes(schedules), "peers": peers, **measured}


def schedule_notes(schedules: dict[str, smoothcache.Schedule]) -> dict[str, Any]:
    return {name: {"fill": s.fill, "steps": s.steps, **dict(s.provenance)} for name, s in schedules.items()}


def dit_batch8_compiled(run: Run, eager: dict[str, Any] | None) -> dict[str, Any]:
    workload = dit_workload(run, batch=8)
    model = build(workload, run)
    variants = variants_of(dit_schedules(workload.steps))
    part = measure_compiled(run, model, workload, variants, run.estimate("dit_xl2_batch8", "compiled")[1], eager)
    return {"description": workload.description, **part}


def dit_batch1_eager(run: Run) -> dict[str, Any]:
    """Batch 1 is launch-bound: what the engine itself costs shows here first. The engine reads each
    evaluation's timestep on the host, which stops the CPU from running ahead of the GPU; the
    ``sync_free`` variants (steps counted instead) show what that read costs."""
    workload = dit_workload(run, batch=1)
    model = build(workload, run)
    fora = published("50-N-2-fora", workload.steps)
    variants = variants_of({FORA: fora})
    every_step = smoothcache.Schedule({key: [1] * workload.steps for key in DIFFUSERS_DIT_KEYS.values()})
    variants[f"{ALL_COMPUTE}, sync_free"] = cached(every_step, sync_free=True)
    variants[f"{FORA}, sync_free"] = cached(fora, sync_free=True)
    measured = measure(run, model, workload, variants, run.estimate("dit_xl2_batch1", "eager")[1], count_macs=True)
    return {"status": "ran", "description": workload.description, **measured}


def calibrated_eager(run: Run, case: str, workload: Workload, mac_target: float, paper: str) -> dict[str, Any]:
    """Unwrapped, all-compute and a schedule at the paper's MAC fraction, calibrated on one generation
    of the random model (the greedy scan at the α that meets the target)."""
    model = build(workload, run)
    profile = smoothcache.calibrate(model, lambda: workload.generate(model))
    schedule = profile.schedule(macs=mac_target)
    name = f"smoothcache macs={mac_target:.2f}"
    run.schedules[case] = name, schedule
    variants = variants_of({name: schedule})
    measured = measure(run, model, workload, variants, run.estimate(case, "eager")[1], count_macs=True)
    notes = {
        "target_mac_fraction": mac_target,
        "paper": paper,
        "alpha": schedule.provenance.get("alpha"),
        "planned_mac_fraction": schedule.provenance.get("mac_fraction"),
    }
    return {"status": "ran", "description": workload.description, "schedule": notes, **measured}


def calibrated_compiled(run: Run, case: str, workload: Workload, eager: dict[str, Any] | None) -> dict[str, Any]:
    if run.tiny and not run.cuda:
        return {"status": "skipped", "reason": "skipped: tiny CPU run (regional compilation is exercised on the DiT case)"}
    if case not in run.schedules:
        return {"status": "skipped", "reason": "the eager part, which calibrates the schedule, did not run"}
    name, schedule = run.schedules[case]
    model = build(workload, run)
    part = measure_compiled(run, model, workload, variants_of({name: schedule}), run.estimate(case, "compiled")[1], eager)
    return {"description": workload.description, **part}


def gpu_tests(run: Run) -> dict[str, Any]:
    """The CUDA tests of tests/test_gpu_discipline.py (they skip on CPU), in a subprocess."""
    if not run.cuda:
        return {"status": "skipped", "reason": "needs CUDA: the CUDA tests of tests/test_gpu_discipline.py skip without it"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu_discipline.py"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max(run.budget.left(), 1.0))
    lines = (done.stdout + done.stderr).strip().splitlines()
    return {
        "status": "ran",
        "command": " ".join(command[1:]),
        "passed": done.returncode == 0,
        "returncode": done.returncode,
        "summary": lines[-1] if lines else "",
        "output_tail": "\n".join(lines[-40:]),
        "seconds": time.perf_counter() - start,
    }


def cuda_graphs(run: Run) -> dict[str, Any]:
    """A skipping schedule under ``mode="reduce-overhead"`` (CUDA graphs) against eager, per block and
    whole model: a cached value that a later graph replay overwrites shows as a difference well above
    the one between compiled and eager all-compute (bf16 rounding alone)."""
    if not run.cuda:
        return {"status": "skipped", "reason": "needs CUDA (CUDA graphs)"}
    steps = 8
    workload = dit_workload(run, batch=2, config={**DIT_XL_2, "num_layers": 2}, steps=steps)
    schedule = smoothcache.Schedule.fora(steps, 2, ["attn1", "ff"])
    found = {mode: compare_cuda_graphs(run, workload, schedule, mode) for mode in ("regional", "whole_model")}
    return {"status": "ran", "description": f"DiT-XL/2 blocks, 2 layers: {workload.description}; FORA n=2", **found}


def compare_cuda_graphs(run: Run, workload: Workload, schedule: smoothcache.Schedule, mode: str) -> dict[str, Any]:
    """Three generations each (cudagraph trees warm up, record, then replay), all-compute and cached."""
    model = build(workload, run)
    eager = {}
    for name, chosen in ((ALL_COMPUTE, None), ("cached", schedule)):
        with smoothcache.wrap(model, schedule=chosen):
            eager[name] = workload.generate(model).float()
    diffs: dict[str, list[float]] = {}
    try:
        with torch._dynamo.config.patch(recompile_limit=64, accumulated_recompile_limit=256):
            if mode == "regional":
                for block in model.transformer_blocks:
                    block.compile(mode="reduce-overhead")
                target = model
            else:
                target = torch.compile(model, mode="reduce-overhead")
            for name, chosen in ((ALL_COMPUTE, None), ("cached", schedule)):
                with smoothcache.wrap(target, schedule=chosen):
                    outputs = [workload.generate(target).float() for _ in range(3)]
                diffs[name] = [(output - eager[name]).abs().max().item() for output in outputs]
    except Exception as error:  # the finding itself: record what CUDA graphs raised
        return {"error": f"{type(error).__name__}: {error}"[:3000], "diffs_before_error": diffs}
    finally:
        torch._dynamo.reset()
    floor, worst = max(diffs[ALL_COMPUTE]), max(diffs["cached"])
    tolerance = max(4 * floor, 1e-2 * eager["cached"].abs().max().item())
    return {
        "max_abs_diff": worst,
        "per_generation_max_abs_diff": diffs["cached"],
        "all_compute_max_abs_diff": floor,
        "tolerance": tolerance,
        "equal_within_bf16_tolerance": worst <= tolerance,
    }


def profile_trace(run: Run) -> dict[str, Any]:
    """A torch.profiler trace of one DiT-XL/2 evaluation (batch 8) at the α=0.18 schedule's first reuse step."""
    if not run.profile:
        return {"status": "skipped", "reason": "not requested (--profile)"}
    workload = dit_workload(run, batch=8)
    model = build(workload, run)
    schedule = dit_schedules(workload.steps)[ALPHA]
    step = min(table.index(0) for table in schedule.tables.values())
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if run.cuda else [])
    profiler = torch.profiler.profile(activities=activities)
    evaluation = [0]

    def before(_module: nn.Module, _args: Any) -> None:
        if evaluation[0] == step:
            synchronize(run.device)
            profiler.start()

    def after(_module: nn.Module, _args: Any, _output: Any) -> None:
        if evaluation[0] == step:
            synchronize(run.device)
            profiler.stop()
        evaluation[0] += 1

    with smoothcache.wrap(model, schedule=schedule):
        workload.generate(model)  # warm-up
        hooks = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]
        try:
            workload.generate(model)
        finally:
            for hook in hooks:
                hook.remove()
    trace = run.out.with_name(f"{run.out.stem}.trace.json")
    profiler.export_chrome_trace(str(trace))
    device_time = "self_device_time_total" if run.cuda else "self_cpu_time_total"
    events = sorted(profiler.key_averages(), key=lambda event: getattr(event, device_time), reverse=True)[:20]
    top = [
        {"op": e.key, "calls": e.count, "self_cpu_us": e.self_cpu_time_total, "self_device_us": e.self_device_time_total} for e in events
    ]
    print(f"\nprofile: {workload.description}, step {step} (reuse)")
    rows = [[op["op"][:60], op["calls"], op["self_cpu_us"], op["self_device_us"]] for op in top]
    print_table(["op", "calls", "self CPU us", "self device us"], rows)
    return {"status": "ran", "description": workload.description, "step": step, "trace": trace.name, "top_ops": top}


# --- the plan ---------------------------------------------------------------------------------

#: Cases, as the JSON names them.
CASES = ("dit_xl2_batch8", "stable_audio_open", "opensora_v12", "flux1_dev", "dit_xl2_batch1", "correctness", "profile")
#: Stable Audio Open and Open-Sora at the paper's larger speedup (MAC fraction = 1 / speedup), FLUX at half.
MAC_TARGETS = {
    "stable_audio_open": (1 / 1.52, "alpha=0.30 -> 1.52x (paper, 100 DPM++ 3M SDE steps)"),
    "opensora_v12": (1 / 1.09, "alpha=0.03 -> 1.09x (paper, 30 RFLOW steps)"),
    "flux1_dev": (0.5, "half the MACs"),
}
WORKLOADS: dict[str, Callable[[Run], Workload]] = {
    "stable_audio_open": stable_audio_workload,
    "opensora_v12": opensora_workload,
    "flux1_dev": flux_workload,
}


def plan(run: Run, results: dict[str, Any]) -> list[tuple[str, str, Callable[[], dict[str, Any]]]]:
    """Every part, in priority order: what the goals need first, optional and slow parts last."""

    def eager_of(case: str) -> dict[str, Any] | None:
        part = results["cases"][case].get("eager", {})
        return part if part.get("status") == "ran" else None

    def eager(case: str) -> Callable[[], dict[str, Any]]:
        return lambda: calibrated_eager(run, case, WORKLOADS[case](run), *MAC_TARGETS[case])

    def compiled(case: str) -> Callable[[], dict[str, Any]]:
        return lambda: calibrated_compiled(run, case, WORKLOADS[case](run), eager_of(case))

    return [
        ("dit_xl2_batch8", "eager", lambda: dit_batch8_eager(run)),
        ("dit_xl2_batch1", "eager", lambda: dit_batch1_eager(run)),
        ("correctness", "pytest", lambda: gpu_tests(run)),
        ("stable_audio_open", "eager", eager("stable_audio_open")),
        ("opensora_v12", "eager", eager("opensora_v12")),
        ("dit_xl2_batch8", "compiled", lambda: dit_batch8_compiled(run, eager_of("dit_xl2_batch8"))),
        ("correctness", "cuda_graphs", lambda: cuda_graphs(run)),
        ("profile", "trace", lambda: profile_trace(run)),
        ("flux1_dev", "eager", eager("flux1_dev")),
        ("stable_audio_open", "compiled", compiled("stable_audio_open")),
        ("opensora_v12", "compiled", compiled("opensora_v12")),
        ("flux1_dev", "compiled", compiled("flux1_dev")),
    ]


def execute(run: Run, results: dict[str, Any], selected: set[str]) -> None:
    """Run the plan's parts in order within the budget, recording each one's result or why it did not run."""
    stopped: str | None = None
    for case, part, function in plan(run, results):
        record = results["cases"][case]
        estimate = run.estimate(case, part)[0]
        if case not in selected:
            record[part] = {"status": "skipped", "reason": "case not selected (--cases)"}
        elif stopped is not None:
            record[part] = {"status": "skipped", "reason": stopped}
        elif run.budget.left() < estimate:
            record[part] = {"status": "skipped", "reason": f"time budget: about {estimate:.0f} s needed, {run.budget.left():.0f} s left"}
        else:
            logger.info("%s / %s (%.0f s of the budget left)", case, part, run.budget.left())
            start = time.perf_counter()
            try:
                with run.budget.enforced():
                    record[part] = function()
            except OutOfTime as error:
                stopped = f"the time budget ran out during {case} / {part}"
                record[part] = {"status": "interrupted", "reason": str(error)}
            except Exception as error:  # one part failing must not lose the others on a one-shot device run
                logger.error("%s / %s failed:\n%s", case, part, traceback.format_exc())
                record[part] = {"status": "error", "error": f"{type(error).__name__}: {error}"[:3000]}
            record[part]["seconds"] = time.perf_counter() - start
            if record[part]["status"] == "ran" and "variants" in record[part]:
                report(f"{case} / {part}: {record[part].get('description', '')}", record[part])
            gc.collect()
            if run.cuda:
                torch.cuda.empty_cache()
        results["elapsed_s"] = run.budget.elapsed()
        results["goals"] = goals(results)
        write(run.out, results)


def variant(results: dict[str, Any], case: str, part: str, name: str) -> dict[str, Any] | None:
    row = results["cases"][case].get(part, {}).get("variants", {}).get(name)
    return row if row and "median_s" in row else None


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """Each goal of the GPU check with its measured value and pass/fail (null when not measured, and
    on tiny runs, whose numbers say nothing about a GPU)."""
    evaluated = not results["tiny"]
    items: dict[str, dict[str, Any]] = {}

    def goal(name: str, value: float | None, relation: str, threshold: float, **extra: Any) -> None:
        met = None
        if evaluated and value is not None:
            met = value <= threshold if relation == "<=" else value >= threshold
        items[name] = {"goal": f"{relation} {threshold}", "value": value, "pass": met, **extra}

    for case, threshold in (("dit_xl2_batch8", 1.01), ("dit_xl2_batch1", 1.03)):
        row = variant(results, case, "eager", ALL_COMPUTE)
        sync_free = variant(results, case, "eager", f"{ALL_COMPUTE}, sync_free")  # measured at batch 1
        extra = {"sync_free_value": sync_free["time_ratio"]} if sync_free else {}
        goal(f"{case}: all-compute / unwrapped (eager)", row and row["time_ratio"], "<=", threshold, **extra)
    for part in ("eager", "compiled"):
        row = variant(results, "dit_xl2_batch8", part, ALPHA)
        goal(f"dit_xl2_batch8: alpha=0.18 share of its MAC-ideal speedup ({part})", row and row.get("share_of_ideal"), ">=", 0.95)
    ours = variant(results, "dit_xl2_batch8", "eager", ALPHA)
    for peer in (p for p in PEERS if isinstance(p, PEER_TYPES)):
        theirs = variant(results, "dit_xl2_batch8", "eager", peer.name)
        value = ours["share_of_ideal"] / theirs["share_of_ideal"] if ours and theirs else None
        goal(
            f"dit_xl2_batch8: alpha=0.18 vs {peer.name} at equal MACs (share of MAC-ideal, ours / theirs)",
            value,
            ">=",
            1.0,
            our_speedup=ours and ours["speedup"],
            their_speedup=theirs and theirs["speedup"],
            our_mac_fraction=ours and ours["mac_fraction"],
            their_mac_fraction=theirs and theirs["mac_fraction"],
        )
    return {"evaluated": evaluated, "items": items}


def write(path: Path, results: dict[str, Any]) -> None:
    """Rewrite the JSON whole (a temporary file, then a rename): a killed run leaves the last complete one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(results, indent=1, default=str) + "\n")
    os.replace(temporary, path)


def versions() -> dict[str, str | None]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": version("diffusers"),
        "cache-dit": version("cache-dit"),
        "smoothcache": smoothcache.__version__,
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny configurations: the same code paths, on a CPU in under a minute")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget of the whole run (default 480)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    parser.add_argument("--profile", action="store_true", help="also write a torch.profiler trace of one cached DiT step")
    parser.add_argument("--rounds", type=int, default=None, help="most timed rounds per part (default 10, tiny 2)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    threads = torch.get_num_threads()
    if args.tiny and device.type == "cpu":
        # tiny ops gain nothing from threads, and on a shared machine threads waiting for a busy core
        # make them 10-100x slower
        torch.set_num_threads(1)
    try:
        return measure_all(args, device)
    finally:
        torch.set_num_threads(threads)


def measure_all(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    run = Run(
        device=device,
        dtype=torch.bfloat16 if device.type == "cuda" and not args.tiny else torch.float32,
        tiny=args.tiny,
        max_rounds=args.rounds or (2 if args.tiny else 10),
        budget=Budget(args.budget_s),
        out=args.out,
        profile=args.profile,
        # dynamo alone on a tiny CPU run: the same regional compilation, gates and recompiles, in seconds
        compile_backend="eager" if args.tiny and device.type == "cpu" else "inductor",
    )
    results: dict[str, Any] = {
        "machine": machine(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if run.cuda else machine()["processor"],
        "versions": versions(),
        "tiny": run.tiny,
        "dtype": str(run.dtype).removeprefix("torch."),
        "budget_s": args.budget_s,
        "compile_backend": run.compile_backend,
        "cases": {case: {} for case in CASES},
    }
    with torch.no_grad():
        execute(run, results, set(args.cases))
    print_table(
        ["goal", "value", "pass"],
        [[name, "" if item["value"] is None else item["value"], item["pass"]] for name, item in results["goals"]["items"].items()],
    )
    print(f"\nwrote {run.out} ({results['elapsed_s']:.0f} s)")
    return results


if __name__ == "__main__":
    main()
