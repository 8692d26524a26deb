"""Workloads: a denoiser and how to generate with it, so the CLI can calibrate, generate and compare.

A diffusers pipeline becomes a workload automatically (class-conditional DiT, Stable Audio, and
text-to-image pipelines that take ``prompt``); research code returns a :class:`Workload` from a
``package.module:factory`` entry (see ``smoothcache.reference.workloads``).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from smoothcache_core import SmoothCacheError

#: ``--scheduler`` names and the diffusers scheduler classes they select.
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "cosine-dpm": "CosineDPMSolverMultistepScheduler",
}


class WorkloadError(SmoothCacheError, ValueError):
    """The model cannot be loaded or run as asked."""


@dataclass
class Workload:
    """What the CLI needs: the model to wrap and ``generate(seed, steps)``.

    ``generate`` returns images ``[B, C, H, W]``, video ``[B, C, T, H, W]`` or audio
    ``[B, channels, samples]``. ``data_range`` is the value range of images and video (1.0 for [0, 1];
    None: take it from the uncached output, e.g. for latents). ``set_solver`` (optional) switches the
    sampler by ``--scheduler`` name.
    """

    model: nn.Module
    generate: Callable[[int, int], torch.Tensor]
    modality: str
    default_steps: int = 50
    solver: str | None = None
    sample_rate: int | None = None
    data_range: float | None = 1.0
    description: str = ""
    set_solver: Callable[[str], str] | None = field(default=None, repr=False)
    #: The diffusers pipeline behind it, if any (moved to ``--device`` by the CLI).
    pipeline: Any = field(default=None, repr=False)


def _pipeline_solver_switch(pipe: Any) -> Callable[[str], str]:
    def set_solver(name: str) -> str:
        if name not in SCHEDULERS:
            raise WorkloadError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
        import diffusers

        pipe.scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(pipe.scheduler.config)
        return SCHEDULERS[name]

    return set_solver


def from_pipeline(pipe: Any, prompt: str | None = None, labels: list[int] | None = None) -> Workload:
    """A workload for a diffusers pipeline: DiT (class labels), Stable Audio, or one that takes ``prompt``."""
    transformer = getattr(pipe, "transformer", None)
    if not isinstance(transformer, nn.Module):
        raise WorkloadError(f"{type(pipe).__name__} has no transformer; smoothcache accelerates DiT pipelines")
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    kind = type(pipe).__name__

    if kind == "DiTPipeline":
        classes = labels or [0]

        def generate(seed: int, steps: int) -> torch.Tensor:
            generator = torch.Generator().manual_seed(seed)
            return pipe(class_labels=classes, num_inference_steps=steps, generator=generator, output_type="pt").images

        modality, rate = "image", None
    elif kind == "StableAudioPipeline":
        text = prompt or "a dog barking in the rain"

        def generate(seed: int, steps: int) -> torch.Tensor:
            generator = torch.Generator().manual_seed(seed)
            return pipe(text, num_inference_steps=steps, generator=generator).audios

        modality, rate = "audio", int(pipe.vae.sampling_rate)
    else:
        text = prompt or "a photograph of an astronaut riding a horse"

        def generate(seed: int, steps: int) -> torch.Tensor:
            generator = torch.Generator().manual_seed(seed)
            return pipe(text, num_inference_steps=steps, generator=generator, output_type="pt").images

        modality, rate = "image", None
    return Workload(
        transformer, generate, modality, solver=type(pipe.scheduler).__name__, sample_rate=rate, description=kind,
        set_solver=_pipeline_solver_switch(pipe), pipeline=pipe,
    )


def _load_entry(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise WorkloadError(f"cannot import {module_name!r} for MODEL {spec!r}: {error}") from error
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise WorkloadError(f"{module_name!r} has no callable {attribute!r} (MODEL {spec!r})")
    return factory()


def load(model: str, prompt: str | None = None, labels: list[int] | None = None) -> Workload | nn.Module:
    """Resolve the CLI's MODEL: ``package.module:factory``, a local pipeline folder, or a hub id.

    A factory may return a Workload, a pipeline or a bare model (which can be inspected only).
    """
    if ":" in model and not os.path.exists(model):
        loaded = _load_entry(model)
    else:
        from diffusers import DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
        path = Path(model).expanduser()
        if model.startswith((".", "/", "~")) and not path.exists():  # a path, not an "org/name" hub id
            raise WorkloadError(f"MODEL {model!r} does not exist; pass a pipeline folder, package.module:factory or a hub id")
        if path.exists() and not (path / "model_index.json").exists():
            raise WorkloadError(f"{model!r} is a folder without model_index.json; pass a diffusers pipeline folder")
        try:
            loaded = DiffusionPipeline.from_pretrained(path if path.exists() else model)
        except Exception as error:  # diffusers raises many types; the user needs one line
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise WorkloadError(
                f"cannot load MODEL {model!r} ({first}); pass a local pipeline folder or package.module:factory"
            ) from error
    if isinstance(loaded, Workload) or (isinstance(loaded, nn.Module) and not hasattr(loaded, "transformer")):
        return loaded
    return from_pipeline(loaded, prompt=prompt, labels=labels)
